//! Scale-out to object storage: job-array shards (`--shard auto/N`) writing straight to a
//! store, shard leases (a held index exits 3 and writes nothing; a dead holder's index is
//! taken over once its lease expires and resumes from the store), and `seal`.
//!
//! The S3 test runs against moto's S3 server (`moto_server` from PyPI, `.ci/run` installs it)
//! started by the test on 127.0.0.1 and killed at the end; without it the test prints a loud
//! NOTE and returns, unless `AGENTGEN_REQUIRE_MOTO=1` (set by `.ci/run`) makes it fail. The
//! seal checks run on `file://` URLs (the same code, the local store).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentgen_datasets::SampleRow;

use crate::opsafety::Stub;
use crate::util::{bin, ok, rows_by_id, stderr};

const ARGS: [&str; 8] = ["--tasks", "12", "--seed", "5", "--concurrency", "1", "--max-turns", "2"];

/// moto's S3 server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Our own child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Option<Moto> {
        // `moto_server` on PATH, else the module (pip may put scripts off PATH).
        let runs = |cmd: &mut Command| {
            cmd.arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let launcher: Vec<&str> = if runs(&mut Command::new("moto_server")) {
            vec!["moto_server"]
        } else if runs(Command::new("python3").args(["-m", "moto.server"])) {
            vec!["python3", "-m", "moto.server"]
        } else {
            let msg = "moto's S3 server (pip install 'moto[server]') is not installed: the S3 \
                       scale-out test cannot run";
            assert!(std::env::var_os("AGENTGEN_REQUIRE_MOTO").is_none(), "{msg}");
            eprintln!("\n\n***** NOTE: SKIPPED: {msg} *****\n");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(launcher[0])
            .args(&launcher[1..])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto { child, port };
        wait_for("moto_server to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Some(moto)
    }

    /// A plain HTTP request to the server (moto accepts unsigned bucket calls).
    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
        (code, body)
    }

    /// Object keys under `prefix` in `bucket`.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (code, body) = self.http("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"));
        assert_eq!(code, 200, "{body}");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect();
        keys.sort();
        keys
    }

    /// The variables a client of this server needs (what a user sets for a real bucket).
    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    fn env(&self, cmd: &mut Command) {
        for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3"] {
            cmd.env_remove(k);
        }
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
    }
}

/// Poll `cond` every 50 ms; panic with `what` after a generous bound (a hang, not a timing
/// assertion).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(120), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `generate --shard auto/4` of index `index` as a child, with the job array's variable set;
/// the stub's policy, or the reference policy without one.
fn shard_cmd(
    moto: Option<&Moto>,
    stub: Option<&Stub>,
    url: &str,
    index: u32,
    var: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["generate", "--quiet"]);
    if let Some(stub) = stub {
        cmd.args(["--policy", "http", "--endpoint", &stub.url()]);
    }
    // The reference policy needs its turns; the stub answers in one.
    let args: &[&str] = if stub.is_some() { &ARGS } else { &ARGS[..4] };
    cmd.args(["--out", url, "--shard", "auto/4", "--flush-secs", "1", "--lease-secs", "5"])
        .args(args)
        .args(extra)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env(var, index.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(m) = moto {
        m.env(&mut cmd);
    }
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run agentgen")
}

/// Rows of every shard folder, by sample id.
fn union(dirs: &[PathBuf]) -> BTreeMap<String, SampleRow> {
    let mut all = BTreeMap::new();
    for d in dirs {
        for (id, row) in rows_by_id(d) {
            assert!(all.insert(id, row).is_none(), "a sample id in two shards");
        }
    }
    all
}

/// The dataset at `url` as local shard folders (through the library's fetch, which checks
/// every part against its manifest).
fn fetch(moto: Option<&Moto>, url: &str, dest: &Path) -> Vec<PathBuf> {
    let vars = moto.map(Moto::vars).unwrap_or_default();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let store = agentgen_store::Store::open_with(url, &vars).expect("open store");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(agentgen_store::fetch_dataset(&store, dest)).expect("fetch dataset")
}

fn seal(moto: Option<&Moto>, url: &str, shards: &str) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["seal", url, "--shards", shards]);
    if let Some(m) = moto {
        m.env(&mut cmd);
    }
    output(cmd)
}

#[test]
fn a_job_array_on_s3_survives_a_killed_and_a_doubled_shard_and_seals_equal_to_one_run() {
    let Some(moto) = Moto::start() else { return };
    let (code, body) = moto.http("PUT", "/agentgen-test");
    assert_eq!(code, 200, "create bucket: {body}");
    let url = "s3://agentgen-test/job";
    let dir = tempfile::tempdir().expect("tmp");
    let open = Stub::start();

    // Shard 0 (Kubernetes) and shard 3 (Slurm, array starting at 1) run through.
    ok(&output(shard_cmd(Some(&moto), Some(&open), url, 0, "JOB_COMPLETION_INDEX", &[])));
    let mut slurm = shard_cmd(Some(&moto), Some(&open), url, 4, "SLURM_ARRAY_TASK_ID", &[]);
    slurm.env("SLURM_ARRAY_TASK_MIN", "1");
    ok(&output(slurm));

    // Shard 1 is killed after its first part reached the store.
    let gated = Stub::gated(1);
    let mut first = shard_cmd(Some(&moto), Some(&gated), url, 1, "JOB_COMPLETION_INDEX", &[])
        .spawn()
        .expect("spawn shard 1");
    wait_for("shard 1's first part and manifest in the store", || {
        let keys = moto.keys("agentgen-test", "job/");
        keys.iter().any(|k| k.contains("-00001-"))
            && keys.iter().any(|k| k == "job/_shards/00001/manifest.json")
    });
    let _ = first.kill(); // our own child: kill -9
    let _ = first.wait();
    // Its lease is still live: a retry right away exits 3 and writes nothing.
    let before = moto.keys("agentgen-test", "job/");
    let early = output(shard_cmd(Some(&moto), Some(&open), url, 1, "JOB_COMPLETION_INDEX", &[]));
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(stderr(&early).contains("held by pid"), "{}", stderr(&early));
    assert_eq!(moto.keys("agentgen-test", "job/"), before, "a refused retry wrote nothing");
    // Once the lease has expired, a retry takes the shard over and redoes only what is missing.
    let mut retried = None;
    wait_for("the dead holder's lease to expire", || {
        let o = output(shard_cmd(Some(&moto), Some(&open), url, 1, "JOB_COMPLETION_INDEX", &[]));
        match o.status.code() {
            Some(3) => false,
            _ => {
                retried = Some(o);
                true
            }
        }
    });
    ok(&retried.expect("a retry ran"));

    // Shard 2 is started twice: the second exits 3 at once and writes nothing.
    let held = Stub::gated(1);
    let running = shard_cmd(Some(&moto), Some(&held), url, 2, "JOB_COMPLETION_INDEX", &[])
        .spawn()
        .expect("spawn shard 2");
    wait_for("shard 2's first part in the store, its second request held", || {
        let keys = moto.keys("agentgen-test", "job/");
        held.count() >= 2
            && keys.iter().any(|k| k.contains("-00002-"))
            && keys.iter().any(|k| k == "job/_shards/00002/manifest.json")
    });
    let before = moto.keys("agentgen-test", "job/");
    let twice = output(shard_cmd(Some(&moto), Some(&held), url, 2, "JOB_COMPLETION_INDEX", &[]));
    assert_eq!(twice.status.code(), Some(3), "{}", stderr(&twice));
    assert_eq!(stderr(&twice).trim().lines().count(), 1, "one line: {}", stderr(&twice));
    assert_eq!(moto.keys("agentgen-test", "job/"), before, "the second process wrote nothing");
    held.open();
    let o = running.wait_with_output().expect("wait shard 2");
    ok(&o);

    // Seal, then the sealed dataset equals one machine's run, row for row.
    let sealed = seal(Some(&moto), url, "4");
    ok(&sealed);
    assert!(stderr(&sealed).contains("sealed"), "{}", stderr(&sealed));
    assert!(moto.keys("agentgen-test", "job/").contains(&"job/_SUCCESS".to_owned()));
    let shards = fetch(Some(&moto), url, &dir.path().join("fetched"));
    assert_eq!(shards.len(), 4);
    let m1 = agentgen_datasets::Manifest::read(&shards[1]).expect("shard 1 manifest");
    assert!(m1.counts.resumed >= 1, "the retry resumed the finished task(s): {:?}", m1.counts);
    let whole = dir.path().join("whole");
    let mut one = Command::new(bin());
    one.args(["generate", "--quiet", "--policy", "http", "--endpoint", &open.url()])
        .args(["--out", whole.to_str().expect("utf-8"), "--flush-secs", "1"])
        .args(ARGS);
    ok(&output(one));
    let (a, b) = (union(&shards), rows_by_id(&whole));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "the sealed shards hold exactly one machine's rows");
    // inspect reads it straight from the store.
    let mut inspect = Command::new(bin());
    inspect.args(["inspect", url]);
    moto.env(&mut inspect);
    ok(&output(inspect));
}

#[test]
fn seal_refuses_a_missing_shard_a_truncated_part_and_a_part_of_another_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("store");
    let url = format!("file://{}", root.display());
    for i in 0..2 {
        let mut cmd = shard_cmd(None, None, &url, i, "JOB_COMPLETION_INDEX", &[]);
        cmd.args(["--rows-per-file", "2"]);
        // Two shards of four: `--shard auto/4` in shard_cmd, so seal must say 2 and 3 are
        // missing; the parts checks below use these two.
        ok(&output(cmd));
    }
    let o = seal(None, &url, "4");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for want in ["shard 2: missing", "shard 3: missing"] {
        assert!(stderr(&o).contains(want), "names {want}: {}", stderr(&o));
    }
    assert!(!root.join("_SUCCESS").exists());

    // The remaining shards, then a part of another run planted under data/.
    for i in 2..4 {
        ok(&output(shard_cmd(None, None, &url, i, "JOB_COMPLETION_INDEX", &[])));
    }
    let data = root.join("data");
    let mut parts: Vec<PathBuf> =
        std::fs::read_dir(&data).expect("data").map(|e| e.expect("entry").path()).collect();
    parts.sort();
    let victim = parts
        .iter()
        .find(|p| p.to_string_lossy().contains("train-00000-"))
        .cloned()
        .unwrap_or_else(|| parts[0].clone());
    let planted = data.join("train-00001-00042.parquet");
    std::fs::copy(&victim, &planted).expect("plant");
    let o = seal(None, &url, "4");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("train-00001-00042.parquet: no shard manifest records it"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&planted).expect("unplant");

    // A truncated part.
    let bytes = std::fs::read(&victim).expect("read part");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).expect("truncate");
    let o = seal(None, &url, "4");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let name = victim.file_name().expect("name").to_string_lossy().into_owned();
    assert!(stderr(&o).contains(&name) && stderr(&o).contains("truncated"), "{}", stderr(&o));
    std::fs::write(&victim, &bytes).expect("restore");

    // Whole again: sealed once, create-only; a second seal says so.
    let o = seal(None, &url, "4");
    ok(&o);
    let success: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("_SUCCESS")).expect("_SUCCESS"))
            .expect("json");
    assert_eq!(success["shards"], 4);
    assert_eq!(
        success["rows"]["train"].as_u64().unwrap_or(0)
            + success["rows"]["rejected"].as_u64().unwrap_or(0),
        12
    );
    let again = seal(None, &url, "4");
    ok(&again);
    assert!(stderr(&again).contains("already sealed"), "{}", stderr(&again));
    // validate and report read the store URL too.
    let mut v = Command::new(bin());
    v.args(["validate", &url]);
    ok(&output(v));
    let html = dir.path().join("r.html");
    let mut r = Command::new(bin());
    r.args(["report", &url, "--out", html.to_str().expect("utf-8")]);
    ok(&output(r));
    assert!(html.exists());
}

#[test]
fn shard_auto_without_a_job_index_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let o = output({
        let mut c = Command::new(bin());
        c.args(["generate", "--quiet", "--tasks", "4", "--shard", "auto/4", "--out"])
            .arg(&out)
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID");
        c
    });
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("JOB_COMPLETION_INDEX"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing written");
}

#[test]
fn the_job_array_recipes_are_well_formed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut text = String::new();
    for f in ["slurm/agentgen-array.sbatch", "slurm/agentgen-seal.sbatch"] {
        let st = Command::new("bash").arg("-n").arg(root.join(f)).status().expect("bash -n");
        assert!(st.success(), "{f} has a syntax error");
        text += &std::fs::read_to_string(root.join(f)).expect("read");
    }
    let jobs = ["k8s/agentgen-indexed-job.yaml", "k8s/agentgen-seal-job.yaml"];
    let o = Command::new("python3")
        .arg(root.join("check_k8s.py"))
        .args(jobs.iter().map(|j| root.join(j)))
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for j in jobs {
        text += &std::fs::read_to_string(root.join(j)).expect("read");
    }
    // The recipes run the commands the tests above run.
    for want in ["--shard", "auto/", "generate", "seal", "--shards"] {
        assert!(text.contains(want), "the recipes use {want}");
    }
}
