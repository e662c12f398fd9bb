//! Helpers for driving the built binary.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Path of the built `agentgen` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agentgen"))
}

/// The fixtures carried in the repository (`fixtures/`, materialized by `agentgen-testdata`).
pub fn fixtures() -> PathBuf {
    agentgen_testdata::dir().to_path_buf()
}

/// Start `agentgen args...` with stdin, stdout and stderr piped.
pub fn spawn_piped(args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentgen")
}

/// Run `agentgen args...` with `stdin` piped in; returns the finished process output.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn_piped(args);
    if let Some(mut s) = child.stdin.take() {
        // A command may exit before reading all of stdin; that is its business.
        let _ = s.write_all(stdin);
    }
    child.wait_with_output().expect("wait for agentgen")
}

/// A finished command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert that a finished command succeeded, showing its exit code, stdout and stderr if not.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every row of a dataset folder by sample id, with the timing column blanked (so two runs
/// compare row for row); a sample id seen twice fails the test.
pub fn rows_by_id(dir: &Path) -> std::collections::BTreeMap<String, agentgen_datasets::SampleRow> {
    let mut out = std::collections::BTreeMap::new();
    for part in agentgen_datasets::list_parts(dir).expect("list parts") {
        for mut r in agentgen_datasets::read_rows(&part.path).expect("read rows") {
            r.timings_ms = String::new();
            assert!(out.insert(r.sample_id.clone(), r).is_none(), "duplicate sample id");
        }
    }
    out
}

/// Write `rows` as shard `shard`/`count` of a dataset at `dir` through the library writer, with a
/// manifest (counts, tokens and files from the finished parts; `edit` sets the rest) and a card.
pub fn craft_dataset(
    dir: &Path,
    shard: u32,
    count: u32,
    rows: Vec<agentgen_datasets::SampleRow>,
    edit: impl FnOnce(&mut agentgen_datasets::Manifest),
) {
    use agentgen_datasets::{
        DatasetWriter, Manifest, WriterOptions, scan_dataset, write_dataset_card,
    };
    let opts = WriterOptions { shard_index: shard, shard_count: count, ..Default::default() };
    let mut w = DatasetWriter::try_new(dir, opts).unwrap();
    for r in rows {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    let stats = scan_dataset(dir).unwrap();
    let mut m = Manifest::new();
    m.shard_index = shard;
    m.shard_count = count;
    m.counts = stats.counts;
    m.tokens = stats.tokens;
    m.files = stats.files;
    edit(&mut m);
    m.write(dir).unwrap();
    write_dataset_card(dir, &m, "agentgen generate").unwrap();
}
