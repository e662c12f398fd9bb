//! End-to-end tests of `agentgen validate`.

use crate::util::run;

const EOS: &str = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>";

fn good_line() -> String {
    serde_json::json!({
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "reasoning_content": "use the tool", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "content": "{\"temp\": 3}"},
            {"role": "assistant", "reasoning_content": "done", "content": "3 degrees"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false}}}]
    })
    .to_string()
}

#[test]
fn exit_codes_on_crafted_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("good.jsonl"), format!("{}\n{}\n", good_line(), good_line())).expect("write");
    let o = run(&["validate", p("good.jsonl").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));

    // DSML markup inside content, a schema violation, a line that is not JSON.
    let dsml = good_line().replace("3 degrees", "3 </\u{ff5c}DSML\u{ff5c}function_calls>");
    let schema =
        good_line().replace("{\\\"city\\\": \\\"Paris\\\"}", "{\\\"town\\\": \\\"Paris\\\"}");
    std::fs::write(p("bad.jsonl"), format!("{}\n{dsml}\n{schema}\nnot json\n", good_line()))
        .expect("write");
    let json = p("report.json");
    let o = run(
        &[
            "validate",
            p("bad.jsonl").to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    // JSONL rows are named by line number, counted from 1 (line 1 is the good one).
    assert!(stdout.contains("bad.jsonl:2: format."), "{stdout}");
    assert!(stdout.contains("bad.jsonl:3: schema."), "{stdout}");
    assert!(stdout.contains("bad.jsonl:4: format.bad_row"), "{stdout}");
    assert!(!stdout.contains("bad.jsonl:1:"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("report json");
    assert_eq!(report["invalid_rows"], 3);

    // Not Parquet at all / truncated Parquet: unreadable, exit 2 (and 2 beats 1).
    std::fs::write(p("junk.parquet"), b"PAR1 this is not parquet").expect("write");
    let o = run(&["validate", p("junk.parquet").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));
    let o = run(
        &[
            "validate",
            p("bad.jsonl").to_str().expect("utf-8"),
            p("junk.parquet").to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    let ds = p("ds");
    let g =
        run(&["generate", "--out", ds.to_str().expect("utf-8"), "--quiet", "--tasks", "6"], b"");
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let part = std::fs::read_dir(ds.join("data"))
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("train-"))
        .expect("a train part");
    let bytes = std::fs::read(&part).expect("read part");
    std::fs::write(p("trunc.parquet"), &bytes[..bytes.len() / 2]).expect("write");
    let o = run(&["validate", p("trunc.parquet").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));

    // Raw completions.
    std::fs::write(p("ok.txt"), format!("think</think>hello{EOS}")).expect("write");
    std::fs::write(p("bad.txt"), "think</think>\n\n<\u{ff5c}DSML\u{ff5c}function_calls>\n")
        .expect("write");
    let o = run(&["validate", "--completions", p("ok.txt").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["validate", "--completions", p("bad.txt").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("format.unclosed_call"));

    // Bad usage.
    let o = run(&["validate", "--split", "nope", p("good.jsonl").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));
}

/// A dataset of `tasks` reference-policy tasks (trip, calendar) whose train rows are tampered
/// with at positions on both sides of the readers' batch boundaries, one kind of fault each
/// (some rows with several), plus one row whose tool arguments are re-serialised compactly (it
/// encodes to the same text, but the parse gives the arguments back in another spelling).
fn tampered_dataset(dir: &std::path::Path) -> std::path::PathBuf {
    write_rows(
        tampered_rows(dir),
        &dir.join("tampered"),
        agentgen_datasets::WriterOptions::default(),
    )
}

/// `rows` written as a dataset at `out` with `opts`.
fn write_rows(
    rows: Vec<agentgen_datasets::SampleRow>,
    out: &std::path::Path,
    opts: agentgen_datasets::WriterOptions,
) -> std::path::PathBuf {
    let mut w = agentgen_datasets::DatasetWriter::try_new(out, opts).expect("writer");
    for r in rows {
        w.write(r).expect("write");
    }
    w.finish().expect("finish");
    out.to_path_buf()
}

/// The rows of [`tampered_dataset`].
fn tampered_rows(dir: &std::path::Path) -> Vec<agentgen_datasets::SampleRow> {
    use agentgen_datasets::{list_parts, read_rows};
    let src = dir.join("src");
    let o = run(
        &["generate", "--tasks", "300", "--families", "trip,calendar", "--quiet", "--out"]
            .into_iter()
            .chain([src.to_str().expect("utf-8")])
            .collect::<Vec<_>>(),
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let part = list_parts(&src)
        .expect("parts")
        .into_iter()
        .find(|p| p.path.to_string_lossy().contains("train-"))
        .expect("train part");
    let mut rows = read_rows(&part.path).expect("rows");
    assert!(rows.len() > 260, "enough rows to cross batch boundaries: {}", rows.len());
    let with_calls = |r: &agentgen_datasets::SampleRow| {
        r.messages.iter().position(|m| !m.tool_calls.is_empty()).expect("a call")
    };
    rows[3].text.push_str("tampered");
    rows[127].loss_mask[0] = 5;
    rows[127].logprobs = Some(vec![None; 3]);
    rows[128].thinking_mode = "fast".into();
    let m = with_calls(&rows[200]);
    rows[200].messages[m].tool_calls[0].arguments = r#"{"nope": 1}"#.into();
    let m = with_calls(&rows[210]);
    for c in &mut rows[210].messages[m].tool_calls {
        let v: serde_json::Value = serde_json::from_str(&c.arguments).expect("json args");
        c.arguments = v.to_string();
    }
    let last = rows[220].messages.len() - 1;
    rows[220].messages[last].content = Some("x</\u{ff5c}DSML\u{ff5c}function_calls>".into());
    rows[230].tools = "not json".into();
    rows[240].tools = "[]".into();
    let last = rows[250].messages.len() - 1;
    rows[250].messages[last].reasoning_content = None;
    rows[250].messages[last].tool_calls.clear();
    rows
}

/// What `validate` printed and wrote on the tampered dataset, run with `bin`, paths replaced
/// by `<DIR>`.
fn tampered_report(bin: &std::path::Path, dir: &std::path::Path) -> (Option<i32>, String) {
    let data = dir.join("tampered");
    let json = dir.join("report.json");
    let o = std::process::Command::new(bin)
        .args(["validate", "--json"])
        .args([&json, &data])
        .output()
        .expect("run validate");
    let report = std::fs::read_to_string(&json).expect("json report");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), report);
    (o.status.code(), text.replace(&data.display().to_string(), "<DIR>"))
}

/// The report on a dataset with known invalid rows is exactly the one the row-by-row checker
/// gave before it was made fast: same issues, same order, same summary and JSON. With
/// `AGENTGEN_BASELINE_BIN` set (an older build) the two binaries are also compared directly.
#[test]
fn validate_report_on_tampered_rows_is_unchanged() {
    let dir = tempfile::tempdir().expect("tmp");
    tampered_dataset(dir.path());
    let (code, report) = tampered_report(&crate::util::bin(), dir.path());
    if let Some(base) = std::env::var_os("AGENTGEN_BASELINE_BIN") {
        let (base_code, base_report) = tampered_report(std::path::Path::new(&base), dir.path());
        assert_eq!((code, &report), (base_code, &base_report));
    }
    assert_eq!(code, Some(1), "{report}");
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/validate_tampered_report.txt");
    let expected = std::fs::read_to_string(golden).expect("golden report");
    assert_eq!(report, expected, "\n--- actual ---\n{report}");
}

/// Row groups are decoded on several threads and their rows checked in parallel: the report
/// is the same, in the same order, when the same rows come in many small row groups (37 rows
/// each, so groups and batches end at other rows than in one group) as in one.
#[test]
fn validate_report_does_not_depend_on_row_groups() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = tampered_rows(dir.path());
    let small = dir.path().join("small");
    let opts = agentgen_datasets::WriterOptions {
        row_group_rows: 37,
        ..agentgen_datasets::WriterOptions::default()
    };
    write_rows(rows, &small.join("tampered"), opts);
    let groups = agentgen_datasets::list_parts(&small.join("tampered"))
        .expect("parts")
        .iter()
        .map(|p| agentgen_datasets::file_info(&p.path).expect("info").row_groups)
        .max();
    assert!(groups.is_some_and(|g| g > 5), "many row groups: {groups:?}");
    let (code, report) = tampered_report(&crate::util::bin(), &small);
    assert_eq!(code, Some(1), "{report}");
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/validate_tampered_report.txt");
    let expected = std::fs::read_to_string(golden).expect("golden report");
    assert_eq!(report, expected, "\n--- actual ---\n{report}");
}

/// A plain-encoded page that decompresses far beyond any row (here 80 MiB of one byte, 10 KiB on
/// disk) is refused from its page header, before it is decompressed: exit 2, naming the file,
/// the row group and the column. (Before the page guard it was decompressed and decoded, and
/// the row reported as invalid JSON.)
#[test]
fn validate_refuses_an_oversized_plain_page_before_decoding_it() {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("plain.parquet");
    let big = "x".repeat(80 << 20);
    let a: ArrayRef = std::sync::Arc::new(StringArray::from(vec![big.as_str()]));
    drop(big);
    let batch = RecordBatch::try_from_iter([("messages", a)]).expect("batch");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
        .set_dictionary_enabled(false)
        .build();
    let file = std::fs::File::create(&path).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    drop(batch);
    let size = std::fs::metadata(&path).expect("stat").len();
    assert!(size < 1 << 20, "small on disk: {size}");
    let o = run(&["validate", path.to_str().expect("utf-8")], b"");
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains(&path.display().to_string()), "{out}");
    assert!(out.contains("row group 0") && out.contains("column `messages`"), "{out}");
    assert!(out.contains("compression bomb"), "{out}");
}

/// Files are checked several at once (as many as fit the decoder budget): a folder of many
/// small parts, with a JSONL file and an unreadable file among the inputs, gives on 8 threads
/// exactly the lines, in the same order, that checking each input alone on one thread gives,
/// and the summary adds them up.
#[test]
fn validate_checks_files_side_by_side_and_reports_them_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = tampered_rows(dir.path());
    let parts = dir.path().join("parts");
    let opts = agentgen_datasets::WriterOptions {
        rows_per_file: 23,
        row_group_rows: 9,
        ..agentgen_datasets::WriterOptions::default()
    };
    write_rows(rows, &parts, opts);
    let files: Vec<_> = agentgen_datasets::list_parts(&parts)
        .expect("parts")
        .into_iter()
        .filter(|p| p.path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("train-")))
        .collect();
    assert!(files.len() > 10, "many parts: {}", files.len());
    let jsonl = dir.path().join("bad.jsonl");
    let dsml = good_line().replace("3 degrees", "3 </\u{ff5c}DSML\u{ff5c}function_calls>");
    std::fs::write(&jsonl, format!("{}\n{dsml}\n", good_line())).expect("write");
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"PAR1 this is not parquet").expect("write");
    let inputs = [parts.clone(), jsonl.clone(), junk.clone(), parts.join("data")];

    let validate = |threads: &str, paths: &[std::path::PathBuf]| {
        let o = std::process::Command::new(crate::util::bin())
            .arg("validate")
            .args(paths)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .expect("run validate");
        // The progress bar is drawn only on a terminal: nothing on a piped stderr.
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "stderr of validate {paths:?}");
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, all) = validate("8", &inputs);
    assert_eq!(code, Some(2), "{all}");
    // One input (one file, or one part of the folder) at a time, on one thread.
    let mut expected = String::new();
    for round in 0..2 {
        for p in &files {
            let (_, out) = validate("1", std::slice::from_ref(&p.path));
            expected.extend(
                out.lines().filter(|l| !l.contains(" rows, ")).map(|l| l.to_owned() + "\n"),
            );
        }
        if round == 0 {
            for p in [&jsonl, &junk] {
                let (_, out) = validate("1", std::slice::from_ref(p));
                expected.extend(
                    out.lines().filter(|l| !l.contains(" rows, ")).map(|l| l.to_owned() + "\n"),
                );
            }
        }
    }
    let (body, summary) = all.trim_end().rsplit_once('\n').expect("a summary line");
    assert_eq!(format!("{body}\n"), expected);
    assert!(expected.contains("tampered") || expected.contains("format."), "{expected}");
    let files_checked = 2 * files.len() + 2;
    let train_rows: u64 =
        files.iter().map(|p| agentgen_datasets::file_info(&p.path).expect("footer").rows).sum();
    let rows_checked = 2 * train_rows + 2;
    assert!(
        summary.starts_with(&format!("{files_checked} files, {rows_checked} rows, ")),
        "{summary}"
    );
    assert!(summary.ends_with("some files unreadable"), "{summary}");
}

/// On a terminal the progress bar is drawn and lifted for each file's lines: every issue line,
/// the summary and the exit code come through and nothing blocks (asking the bar anything while
/// it is lifted deadlocks: it holds its own lock). Run under a pseudo-terminal from Python's
/// standard library, with a deadline.
#[test]
fn validate_on_a_terminal_prints_every_line_and_finishes() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n".repeat(300)).expect("write");
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, format!("{}\n", good_line()).repeat(50)).expect("write");
    let script = "import pty, sys\nst = pty.spawn(sys.argv[1:])\n\
                  sys.exit(st >> 8 if st & 0xff == 0 else 99)";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(crate::util::bin())
        .args(["validate"])
        .args([&bad, &good, &bad])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the tests need it)");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate on a terminal did not finish in 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert_eq!(status.code(), Some(1), "{out}");
    for row in [1, 150, 300] {
        assert_eq!(out.matches(&format!("bad.jsonl:{row}: format.bad_row")).count(), 2, "{out}");
    }
    assert!(out.contains("3 files, 650 rows, 50 valid, 600 invalid"), "{out}");
}
