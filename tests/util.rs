//! Helpers for driving the built binary.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Path of the built `agentgen` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agentgen"))
}

/// The fixtures carried in the repository (`fixtures/`, materialized by `agentgen-testdata`).
pub fn fixtures() -> PathBuf {
    agentgen_testdata::dir().to_path_buf()
}

/// Run `agentgen args...` with `stdin` piped in; returns the finished process output.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentgen");
    if let Some(mut s) = child.stdin.take() {
        // A command may exit before reading all of stdin; that is its business.
        let _ = s.write_all(stdin);
    }
    child.wait_with_output().expect("wait for agentgen")
}
