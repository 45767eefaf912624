//! The `local-s3` binary: endpoint line first, counters on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_local-s3");

#[tokio::test]
async fn prints_the_endpoint_first_and_counters_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--root"])
        .arg(dir.path())
        .args(["--access-key", "bin-ak", "--secret-key", "bin-sk"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first))
        .await
        .expect("endpoint line within 30 s")
        .unwrap();
    let endpoint =
        first.trim_end().strip_prefix("endpoint=").unwrap_or_else(|| panic!("first line was {first:?}")).to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let client = common::client_with(&endpoint, "bin-ak", "bin-sk", RetryConfig::disabled());
    client.create_bucket().bucket("bkt").send().await.unwrap();
    client.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"hello")).send().await.unwrap();
    let got = client.get_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"hello");

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_to_string(&mut rest))
        .await
        .expect("exit within 30 s")
        .unwrap();
    let exit = child.wait().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let summary: serde_json::Value = serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{rest:?}: {e}"));
    assert_eq!(summary["requests"]["CreateBucket"], 1);
    assert_eq!(summary["requests"]["PutObject"], 1);
    assert_eq!(summary["requests"]["GetObject"], 1);
    assert_eq!(summary["faults"], serde_json::json!({}));
    // The data is on disk for the next run.
    assert!(std::fs::read_dir(dir.path().join("bkt")).unwrap().next().is_some());
}

#[tokio::test]
async fn bad_arguments_and_roots_fail_with_a_message() {
    let out = Command::new(BIN).args(["--root", "/tmp/x", "--fault-rate", "2"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fault-rate"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let root = file.join("root");
    let mut child =
        Command::new(BIN).arg("--root").arg(&root).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    let exit = child.wait().await.unwrap();
    assert!(!exit.success());
    assert!(stderr.contains(&root.display().to_string()), "{stderr}");
}

/// `--host 0.0.0.0` (for containers on a Docker bridge) still prints an
/// endpoint this machine can use, and serves on it; a bad address is named.
#[tokio::test]
async fn host_all_addresses_prints_a_loopback_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(dir.path())
        .args(["--host", "0.0.0.0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let endpoint = first.strip_prefix("endpoint=").unwrap().to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{first}");
    let client = common::client_with(
        &endpoint,
        local_s3::DEFAULT_ACCESS_KEY,
        local_s3::DEFAULT_SECRET_KEY,
        RetryConfig::standard(),
    );
    client.create_bucket().bucket("bkt").send().await.unwrap();
    client.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let got = client.get_object().bucket("bkt").key("k").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"v");
    child.kill().await.unwrap();

    let out = Command::new(BIN).args(["--root", "/tmp/x", "--host", "localhost"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost"));
}
