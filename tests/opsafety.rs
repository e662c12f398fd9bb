//! End-to-end tests of operational safety: one owner per output folder, exact resume after
//! `kill -9` (of our own child only), `--flush-secs`, SIGTERM, write errors, foreign folders,
//! symlinked temp files, config mismatch on `--resume`, parts no manifest records.
//!
//! The slow policy is a stub OpenAI-compatible server on 127.0.0.1 in this process: it answers
//! every completion with the same short text, and can hold requests back after the first N
//! (a "gate") until the test opens it, so a run can be caught mid-way without timing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use agentgen_datasets::{list_parts, read_rows};

use crate::util::{bin, ok, rows_by_id, run, spawn_piped};

/// The stub's completion: a final answer with no tool call (a rejected, deterministic row).
const ANSWER: &str =
    "I will not use tools.</think>Done.<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>";
pub const MODEL: &str = "deepseek-ai/DeepSeek-V3.2";

#[derive(Default)]
struct Gate {
    /// Status of every completion (200 = the fixed answer).
    status: u16,
    /// Completions answered without waiting; later ones wait until `open`.
    free: Option<u64>,
    open: bool,
}

/// A stub OpenAI-compatible server (`/v1/models`, `/v1/completions`).
pub struct Stub {
    pub addr: String,
    pub completions: Arc<AtomicU64>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl Stub {
    /// Answers everything at once.
    pub fn start() -> Stub {
        Stub::with_gate(None)
    }

    /// Answers every completion with HTTP `status` (a broken set-up).
    pub fn failing(status: u16) -> Stub {
        let s = Stub::with_gate(None);
        if let Ok(mut g) = s.gate.0.lock() {
            g.status = status;
        }
        s
    }

    /// Answers the first `free` completions, then holds every later one until [`open`].
    pub fn gated(free: u64) -> Stub {
        Stub::with_gate(Some(free))
    }

    fn with_gate(free: Option<u64>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let completions = Arc::new(AtomicU64::new(0));
        let gate = Arc::new((Mutex::new(Gate { status: 200, free, open: false }), Condvar::new()));
        let (c, g) = (Arc::clone(&completions), Arc::clone(&gate));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (c, g) = (Arc::clone(&c), Arc::clone(&g));
                std::thread::spawn(move || serve_conn(conn, &c, &g));
            }
        });
        Stub { addr, completions, gate }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Let every held and later request through.
    pub fn open(&self) {
        let (m, cv) = &*self.gate;
        if let Ok(mut g) = m.lock() {
            g.open = true;
        }
        cv.notify_all();
    }

    pub fn count(&self) -> u64 {
        self.completions.load(Ordering::SeqCst)
    }
}

fn serve_conn(conn: TcpStream, count: &AtomicU64, gate: &(Mutex<Gate>, Condvar)) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (code, body) = if request_line.starts_with("GET /v1/models") {
            (200, serde_json::json!({"object": "list", "data": [{"id": MODEL, "object": "model"}]}))
        } else {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let (m, cv) = gate;
            let mut g = m.lock().expect("gate");
            while g.free.is_some_and(|f| n > f) && !g.open {
                g = cv.wait(g).expect("gate");
            }
            let status = g.status;
            drop(g);
            if status == 200 {
                (200, serde_json::json!({"choices": [{"text": ANSWER, "finish_reason": "stop"}]}))
            } else {
                (status, serde_json::json!({"error": {"message": "no such model", "type": "x"}}))
            }
        };
        let text = body.to_string();
        let resp = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// `generate --policy http --endpoint STUB --out OUT --quiet ARGS...` as a child process.
fn spawn_generate(stub: &Stub, out: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .args(["generate", "--quiet", "--policy", "http", "--endpoint", &stub.url()])
        .args(["--out", out.to_str().expect("utf-8")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentgen")
}

fn generate_http(stub: &Stub, out: &Path, args: &[&str]) -> Output {
    spawn_generate(stub, out, args).wait_with_output().expect("wait")
}

fn generate_ref(out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["generate", "--quiet", "--out", out.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    run(&all, b"")
}

/// Poll `cond` every 20 ms; panic with `what` after a generous bound (a hang, not a timing
/// assertion: the condition is expected within a second or two).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(120), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(child: &mut Child) {
    // Our own child only.
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
}

fn stderr_of(child: Child) -> (Option<i32>, String) {
    let o = child.wait_with_output().expect("wait");
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const HTTP_ARGS: [&str; 8] =
    ["--tasks", "12", "--seed", "5", "--concurrency", "1", "--max-turns", "2"];

#[test]
fn a_second_process_on_a_folder_in_use_exits_3_naming_the_holder() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let stub = Stub::gated(2);
    let mut first = spawn_generate(&stub, &out, &HTTP_ARGS);
    wait_for("the first run to hold requests", || stub.count() >= 3);
    let second = generate_http(&stub, &out, &HTTP_ARGS);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "names the holder: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Also with --resume (a job-array retry while the first still runs).
    let third = generate_http(&stub, &out, &[&HTTP_ARGS[..], &["--resume"]].concat());
    assert_eq!(third.status.code(), Some(3), "{}", String::from_utf8_lossy(&third.stderr));
    // kill -9 leaves no stale lock: a resume takes the folder and finishes it.
    kill9(&mut first);
    stub.open();
    ok(&generate_http(&stub, &out, &[&HTTP_ARGS[..], &["--resume"]].concat()));
    let whole = dir.path().join("whole");
    ok(&generate_http(&stub, &whole, &HTTP_ARGS));
    assert_eq!(rows_by_id(&out), rows_by_id(&whole));
}

#[test]
fn flush_secs_closes_parts_so_kill_9_and_resume_give_the_uninterrupted_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let (killed, whole) = (dir.path().join("killed"), dir.path().join("whole"));
    let stub = Stub::gated(5);
    let args = [&HTTP_ARGS[..], &["--flush-secs", "1"]].concat();
    let mut child = spawn_generate(&stub, &killed, &args);
    // The run is held at its sixth rollout; its five rows must reach a finished part.
    wait_for("a part closed by --flush-secs", || list_parts(&killed).is_ok_and(|p| !p.is_empty()));
    let held: u64 = list_parts(&killed)
        .expect("parts")
        .iter()
        .map(|p| read_rows(&p.path).expect("finished part reads").len() as u64)
        .sum();
    assert!((1..=5).contains(&held), "{held} rows in finished parts");
    kill9(&mut child);
    stub.open();
    ok(&generate_http(&stub, &killed, &[&args[..], &["--resume"]].concat()));
    ok(&generate_http(&stub, &whole, &args));
    let (a, b) = (rows_by_id(&killed), rows_by_id(&whole));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b);
}

#[test]
fn sigterm_stops_like_sigint_and_keeps_every_finished_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let (term, whole) = (dir.path().join("term"), dir.path().join("whole"));
    let stub = Stub::gated(3);
    let child = spawn_generate(&stub, &term, &HTTP_ARGS);
    wait_for("the run to hold its fourth request", || stub.count() >= 4);
    signal(&child, "-TERM");
    // The in-flight rollout finishes once its request is answered.
    std::thread::sleep(Duration::from_millis(200));
    stub.open();
    let (code, err) = stderr_of(child);
    assert_eq!(code, Some(130), "{err}");
    let n = rows_by_id(&term).len();
    assert!((4..12).contains(&n), "{n} rows kept");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(term.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["runtime"]["interrupted"], "true");
    ok(&generate_http(&stub, &term, &[&HTTP_ARGS[..], &["--resume"]].concat()));
    ok(&generate_http(&stub, &whole, &HTTP_ARGS));
    assert_eq!(rows_by_id(&term), rows_by_id(&whole));
}

#[test]
fn a_write_error_stops_the_run_at_once_naming_the_file_and_os_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let stub = Stub::start();
    // Files may not grow past 256 KiB (RLIMIT_FSIZE; SIGXFSZ ignored so writes fail with
    // EFBIG, as on a full disk). Works as root, needs no mount.
    let script = format!(
        "trap '' XFSZ; ulimit -f 512 || exit 99; exec '{}' generate --quiet --policy http \
         --endpoint {} --out '{}' --tasks 4000 --concurrency 4 --max-turns 2 --seed 1",
        bin().display(),
        stub.url(),
        out.display()
    );
    let o = Command::new("sh").args(["-c", &script]).output().expect("sh");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(99), "the shell refused ulimit -f");
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(".parquet.tmp"), "names the file: {err}");
    assert!(err.contains("os error 27"), "names the OS error (EFBIG): {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let done = stub.count();
    assert!(done < 3000, "{done} of 4000 rollouts ran after the disk was full");
}

#[test]
fn resume_with_another_config_is_refused_naming_the_fields() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    ok(&generate_ref(&out, &["--tasks", "10", "--seed", "1"]));
    let before = rows_by_id(&out);
    let o = generate_ref(&out, &["--tasks", "30", "--seed", "2", "--resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("seed") && err.contains("tasks"), "names the fields: {err}");
    assert!(!err.contains("families"), "only the differing fields: {err}");
    let o = generate_ref(&out, &["--tasks", "10", "--seed", "1", "--families", "trip", "--resume"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("families"));
    assert_eq!(rows_by_id(&out), before, "nothing written");
    // The same configuration resumes (nothing left to do).
    ok(&generate_ref(&out, &["--tasks", "10", "--seed", "1", "--resume"]));
    assert_eq!(rows_by_id(&out), before);
}

#[test]
fn a_foreign_folder_is_refused_and_left_untouched_even_with_overwrite() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("mine");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("README.md"), "my notes").expect("write");
    std::fs::write(out.join("thesis.tex"), "chapter 1").expect("write");
    for extra in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
        let o = generate_ref(&out, &[&["--tasks", "3"][..], extra].concat());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["README.md", "thesis.tex"], "{extra:?}: folder untouched");
    }
    assert_eq!(std::fs::read_to_string(out.join("README.md")).expect("read"), "my notes");
}

#[test]
fn overwrite_replaces_an_agentgen_dataset() {
    let dir = tempfile::tempdir().expect("tmp");
    let (out, fresh) = (dir.path().join("ds"), dir.path().join("fresh"));
    ok(&generate_ref(&out, &["--tasks", "20", "--seed", "1"]));
    let o = generate_ref(&out, &["--tasks", "6", "--seed", "2"]);
    assert_eq!(o.status.code(), Some(2), "refused without --resume or --overwrite");
    ok(&generate_ref(&out, &["--tasks", "6", "--seed", "2", "--overwrite"]));
    ok(&generate_ref(&fresh, &["--tasks", "6", "--seed", "2"]));
    assert_eq!(rows_by_id(&out), rows_by_id(&fresh));
}

#[cfg(unix)]
#[test]
fn temp_files_are_never_opened_through_a_symlink() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").expect("write");
    std::fs::create_dir_all(out.join("data")).expect("mkdir");
    for planted in [
        "manifest.json.tmp",
        "README.md.tmp",
        "data/train-00000-00000.parquet.tmp",
        "data/rejected-00000-00000.parquet.tmp",
    ] {
        std::os::unix::fs::symlink(&victim, out.join(planted)).expect("symlink");
    }
    ok(&generate_ref(&out, &["--tasks", "5"]));
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
    assert_eq!(rows_by_id(&out).len(), 5);
}

#[test]
fn resume_trusts_only_the_parts_the_manifest_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let (out, other) = (dir.path().join("ds"), dir.path().join("other"));
    let args = ["--tasks", "12", "--seed", "4", "--rows-per-file", "5"];
    ok(&generate_ref(&out, &args));
    let before = rows_by_id(&out);
    // A part from another run, named as if this run had written it.
    ok(&generate_ref(&other, &["--tasks", "3", "--seed", "9"]));
    let stray = list_parts(&other).expect("parts")[0].path.clone();
    let planted: PathBuf = out.join("data/train-00000-00042.parquet");
    std::fs::copy(&stray, &planted).expect("copy");
    ok(&generate_ref(&out, &[&args[..], &["--resume"]].concat()));
    assert_eq!(rows_by_id(&out), before, "the stray part's rows are not in the dataset");
    assert!(!planted.exists(), "moved aside");
    // A recorded part that changed on disk is refused.
    let first = list_parts(&out).expect("parts")[0].path.clone();
    let mut bytes = std::fs::read(&first).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first, &bytes).expect("write");
    let o = generate_ref(&out, &[&args[..], &["--resume"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SHA-256"));
}

#[test]
fn a_failing_endpoint_stops_the_run_with_the_first_error_and_a_summary() {
    let dir = tempfile::tempdir().expect("tmp");
    let stub = Stub::failing(404);
    let out = dir.path().join("many");
    let o = generate_http(&stub, &out, &["--tasks", "400", "--concurrency", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("policy.http_4xx") && err.contains("status 404"), "first error: {err}");
    assert!(err.contains("total"), "the summary is printed even with --quiet: {err}");
    let n = stub.count();
    assert!((50..400).contains(&n), "stopped after the first 50 rollouts, not at the end: {n}");
    // A small run whose every row is a policy failure fails too.
    let small = dir.path().join("small");
    let o = generate_http(&stub, &small, &["--tasks", "5"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    // The rate is a flag.
    let o = generate_http(
        &stub,
        &dir.path().join("lax"),
        &["--tasks", "60", "--concurrency", "2", "--max-policy-error-rate", "1"],
    );
    assert_eq!(o.status.code(), Some(3), "still every row failed");
    assert!(String::from_utf8_lossy(&o.stderr).contains("every one of the 60"));
}

#[test]
fn the_summary_says_where_the_files_went() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let o = generate_ref(&out, &["--tasks", "4"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}/data", out.display())), "{err}");
    assert!(err.contains("manifest.json"), "{err}");
}

// ------------------------------------------------------------------------------ validate

fn dataset_part(dir: &Path, tasks: &str) -> PathBuf {
    let out = dir.join("src");
    ok(&generate_ref(&out, &["--tasks", tasks, "--families", "trip,calendar"]));
    list_parts(&out)
        .expect("parts")
        .into_iter()
        .find(|p| p.path.to_string_lossy().contains("train-"))
        .expect("train part")
        .path
}

fn validate(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    let o = run(&all, b"");
    (
        o.status.code(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

#[test]
fn validate_decodes_every_column_and_catches_a_corrupt_text_column() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().expect("tmp");
    let part = dataset_part(dir.path(), "40");
    let (code, out) = validate(&[part.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{out}");
    // Flip 200 bytes inside the `text` column chunk of the first row group.
    let reader =
        SerializedFileReader::new(std::fs::File::open(&part).expect("open")).expect("parquet");
    let rg = reader.metadata().row_group(0);
    let text = (0..rg.num_columns())
        .map(|i| rg.column(i))
        .find(|c| c.column_path().string() == "text")
        .expect("text column");
    let (start, len) = text.byte_range();
    let mut bytes = std::fs::read(&part).expect("read");
    let mid = (start + len / 2) as usize;
    for b in &mut bytes[mid..mid + 200] {
        *b ^= 0x5a;
    }
    let bad = dir.path().join("flipped.parquet");
    std::fs::write(&bad, &bytes).expect("write");
    let (code, out) = validate(&[bad.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "a corrupt page is unreadable input: {out}");
}

#[test]
fn validate_checks_text_against_the_messages_and_the_token_columns() {
    use agentgen_datasets::{DatasetWriter, WriterOptions};
    let dir = tempfile::tempdir().expect("tmp");
    let part = dataset_part(dir.path(), "20");
    let mut rows = read_rows(&part).expect("rows");
    rows[0].text.push_str("tampered");
    let n = rows[1].loss_mask.len();
    rows[1].loss_mask.truncate(n - 1);
    rows[2].loss_mask[0] = 7;
    let out = dir.path().join("tampered");
    let mut w = DatasetWriter::try_new(&out, WriterOptions::default()).expect("writer");
    for r in rows {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    let (code, report) = validate(&[out.to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains(":0: format.text_mismatch"), "{report}");
    assert!(report.contains(":1: format.bad_columns"), "{report}");
    assert!(report.contains(":2: format.bad_columns"), "{report}");
    assert!(report.contains("3 invalid"), "{report}");
}

#[test]
fn validate_refuses_a_dictionary_bomb_with_flat_memory() {
    use arrow::array::{DictionaryArray, StringArray};
    use arrow::datatypes::Int32Type;
    use parquet::arrow::{ArrowWriter, arrow_writer::ArrowWriterOptions};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().expect("tmp");
    let bomb = dir.path().join("bomb.parquet");
    // One 4 MiB value, referenced by 1,024 rows through run-length dictionary indices: a few
    // KiB on disk, 4 GiB once expanded.
    let value = "x".repeat(4 << 20);
    let dict = DictionaryArray::<Int32Type>::try_new(
        arrow::array::Int32Array::from(vec![0; 1024]),
        Arc::new(StringArray::from(vec![value.as_str()])),
    )
    .expect("dictionary");
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "messages",
        Arc::new(dict) as arrow::array::ArrayRef,
    )])
    .expect("batch");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(19).expect("level")))
        .set_dictionary_enabled(true)
        .build();
    // No embedded Arrow schema: readers see a plain utf8 column, as pyarrow writes it.
    let opts = ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true);
    let file = std::fs::File::create(&bomb).expect("create");
    let mut w = ArrowWriter::try_new_with_options(file, batch.schema(), opts).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let size = std::fs::metadata(&bomb).expect("stat").len();
    assert!(size < 64 << 10, "the bomb is small on disk: {size}");
    // 3 GiB of address space: expanding a batch would need more.
    let script = format!(
        "ulimit -v 3000000 || exit 99; exec '{}' validate '{}'",
        bin().display(),
        bomb.display()
    );
    let o = Command::new("sh").args(["-c", &script]).output().expect("sh");
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_ne!(o.status.code(), Some(99), "the shell refused ulimit -v");
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("dictionary bomb"), "{text}");
}

// ------------------------------------------------------------------------------ small items

#[test]
fn a_closed_stdout_pipe_exits_quietly() {
    let text = "word ".repeat(200_000);
    for args in [&["codec", "tokenize"][..], &["codec", "encode"][..]] {
        let input = if args[1] == "encode" {
            serde_json::json!({"messages": [{"role": "user", "content": text}]}).to_string()
        } else {
            text.clone()
        };
        let mut child = spawn_piped(args);
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).expect("first bytes");
        drop(stdout);
        let o = child.wait_with_output().expect("wait");
        let _ = writer.join();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn model_init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ckpt");
    let out_s = out.to_str().expect("utf-8");
    let init = |extra: &[&str]| {
        let mut a = vec!["model", "init", "--preset", "tiny", "--vocab", "300", "--out", out_s];
        a.extend_from_slice(extra);
        run(&a, b"")
    };
    ok(&init(&["--seed", "1"]));
    let before = std::fs::read(out.join("model.safetensors")).expect("weights");
    let o = init(&["--seed", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(out.join("model.safetensors")).expect("weights"), before);
    ok(&init(&["--seed", "2", "--force"]));
    assert_ne!(std::fs::read(out.join("model.safetensors")).expect("weights"), before);
}

#[test]
fn inspect_reports_missing_shards() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
    ok(&generate_ref(&s0, &["--tasks", "8", "--shard", "0/2"]));
    ok(&generate_ref(&s1, &["--tasks", "8", "--shard", "1/2"]));
    let o = run(&["inspect", s0.to_str().expect("utf-8")], b"");
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("1/2 missing"), "{text}");
    let o = run(&["inspect", s0.to_str().expect("utf-8"), s1.to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_task_file_with_a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().expect("tmp");
    let list = dir.path().join("tasks.txt");
    let o = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--families",
            "trip",
            "--tasks",
            "2",
            "--samples-per-task",
            "1",
            "--quiet",
            "--jsonl",
            "-",
        ],
        b"",
    );
    ok(&o);
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["task_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2, "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::write(&list, format!("\u{feff}{}\n", ids.join("\n"))).expect("write");
    let out = dir.path().join("ds");
    let o = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--samples-per-task",
            "1",
            "--quiet",
            "--task-file",
            list.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ],
        b"",
    );
    ok(&o);
    assert_eq!(rows_by_id(&out).len(), 2);
}

#[test]
fn rollout_jsonl_streams_rows_as_they_finish() {
    let dir = tempfile::tempdir().expect("tmp");
    let stub = Stub::gated(3);
    let mut child = Command::new(bin())
        .args(["rollout", "--quiet", "--policy", "http", "--endpoint", &stub.url()])
        .args(["--tasks", "6", "--samples-per-task", "1", "--concurrency", "1", "--max-turns", "2"])
        .args(["--out", dir.path().join("ds").to_str().expect("utf-8"), "--jsonl", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Three rows arrive while the fourth rollout is still held by the endpoint.
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("a streamed row");
        got.push(line);
    }
    // The fourth rollout cannot finish before the gate opens: the rows came while it ran.
    assert!(child.try_wait().expect("try_wait").is_none(), "still running");
    stub.open();
    let status = child.wait().expect("wait");
    let _ = reader.join();
    got.extend(rx.try_iter());
    assert!(status.success());
    assert_eq!(got.len(), 6);
    for l in &got {
        let v: serde_json::Value = serde_json::from_str(l).expect("json line");
        assert!(v["split"].is_string() && v["sample_id"].is_string());
    }
}

#[test]
fn logs_are_plain_when_stderr_is_not_a_terminal_and_tantivy_stays_quiet() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let o = Command::new(bin())
        .args([
            "generate",
            "--tasks",
            "20",
            "--families",
            "search",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains('\u{1b}'), "no ANSI escapes in a pipe: {err}");
    assert!(!err.lines().any(|l| l.contains("INFO") && l.contains("tantivy")), "{err}");
}

#[test]
fn serve_and_rollout_agree_on_the_default_model_name() {
    let model = crate::util::fixtures().join("model/tiny-f32");
    let mut child = Command::new(bin())
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut addr = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(a) = line.split("listening on http://").nth(1) {
            addr = a.trim().to_owned();
            break;
        }
        line.clear();
    }
    assert!(!addr.is_empty(), "serve did not start");
    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(s, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let _ = child.kill();
    let _ = child.wait();
    let help = run(&["rollout", "--help"], b"");
    let help = String::from_utf8_lossy(&help.stdout);
    // Without --api-model, rollout's /v1/models preflight takes the server's only model, so
    // the two agree by construction; serve lists exactly one model, the shared default name.
    assert!(help.contains("default: the server's only model"), "{help}");
    assert!(resp.contains(&format!("\"id\":\"{MODEL}\"")), "{resp}");
    assert_eq!(resp.matches("\"id\":").count(), 1, "{resp}");
}

#[test]
fn serve_warns_when_exposed_without_a_key() {
    let model = crate::util::fixtures().join("model/tiny-f32");
    let mut child = Command::new(bin())
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--model"])
        .arg(&model)
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        if line.contains("listening on") {
            break;
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("warning") && seen.contains("API key"), "{seen}");
}
