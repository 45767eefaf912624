//! What a person sees when `s3mm` cannot do its job: the whole message, one
//! line naming the bucket or flag and what to do, never SDK internals.
//! Nothing here leaves 127.0.0.1: instance metadata is off, and the
//! endpoints are a local-s3 or a port nobody listens on.

use std::net::TcpListener;
use std::process::{Command, Output};

fn s3mm(args: &[&str], env: &[(&str, &str)], home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3mm"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied())
        .output()
        .expect("s3mm runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A port on 127.0.0.1 that refuses connections: bound, then let go.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_says_where_they_were_looked_for_and_how_to_give_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = local_s3::LocalS3::start(dir.path().join("s3")).await.expect("local-s3");
    let endpoint = server.endpoint();
    let out = s3mm(&["merge", "s3://aaa/b/", "s3://ccc/d/", "--endpoint-url", &endpoint], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "s3mm: listing s3://aaa/b/ failed: no AWS credentials found (looked in the environment, the shared \
         config and credentials files, web identity, the container and instance metadata): set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile with AWS_PROFILE or --profile\n"
    );
    assert!(out.stdout.is_empty());
    assert!(server.counters().values().all(|n| *n == 0), "no request reached S3: {:?}", server.counters());
}

#[test]
fn a_bad_bucket_in_a_url_is_named_as_a_bucket_not_as_a_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = s3mm(&["merge", "s3://a/b/", "s3://ccc/d/"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: invalid value 's3://a/b/' for '<SOURCE>': bucket \"a\" is not a valid S3 bucket name \
         (3-63 characters: lowercase letters, digits, '-' and '.')\n\nFor more information, try '--help'.\n"
    );
}

#[test]
fn an_unreachable_endpoint_says_which_setting_to_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    // One attempt: with the default ten, the same message comes after the backoff.
    let env = [("AWS_ACCESS_KEY_ID", "someone"), ("AWS_SECRET_ACCESS_KEY", "secret"), ("AWS_MAX_ATTEMPTS", "1")];
    for command in [["merge", "s3://aaa/b/", "s3://ccc/d/"], ["move", "s3://aaa/b/", "s3://ccc/d/"]] {
        let out = s3mm(&[&command[..], &["--endpoint-url", &endpoint]].concat(), &env, dir.path());
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "s3mm: listing s3://aaa/b/ failed: the S3 endpoint refused the connection: check the endpoint \
             (--endpoint-url, AWS_ENDPOINT_URL) and that its server is running\n",
            "{command:?}"
        );
    }
}

#[test]
fn default_run_ids_differ_even_within_one_second() {
    let ids: std::collections::BTreeSet<String> = (0..100).map(|_| s3mm_cli::default_run_id()).collect();
    assert_eq!(ids.len(), 100);
    for id in &ids {
        let (prefix, random) = id.rsplit_once('-').expect("two dashes");
        assert!(prefix.starts_with("merge-") && prefix[6..].bytes().all(|b| b.is_ascii_digit()), "{id}");
        assert!(random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}
