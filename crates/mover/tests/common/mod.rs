//! Helpers for the tests that run the built binaries as processes.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// A binary of another workspace package, built beside this test by
/// `cargo test --workspace` (`target/<profile>/`).
pub fn target_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} not built; run cargo build --workspace first", path.display());
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub fn start_local_s3(root: &Path) -> (Killed, String) {
    let mut child = Command::new(target_binary("local-s3"))
        .args(["--root", root.to_str().expect("utf-8 path"), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("local-s3 starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).expect("endpoint line");
    let endpoint = first.trim().strip_prefix("endpoint=").expect("endpoint= line").to_owned();
    (Killed(child), endpoint)
}

pub fn cargo_lambda() -> Command {
    let mut command = Command::new("cargo");
    command.arg("lambda").current_dir(workspace_root());
    command
}
