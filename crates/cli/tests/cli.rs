//! The `s3mm` binary end to end against local-s3 over HTTP: each command,
//! and the bad arguments a user types, with the bytes checked in S3.

use local_s3::LocalS3;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

struct Server {
    s3: LocalS3,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = LocalS3::start(dir.path()).await.expect("local-s3");
    for bucket in ["b-in", "b-out"] {
        s3.create_bucket(bucket).expect("bucket");
    }
    Server { s3, _dir: dir }
}

fn s3mm(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3mm"))
        .args(args)
        .args(["--endpoint-url", &server.s3.endpoint()])
        .env("AWS_ACCESS_KEY_ID", server.s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.s3.secret_key())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("s3mm runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not JSON ({err}): {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_writes_what_a_step_functions_run_writes() {
    let server = server().await;
    for i in 0..120 {
        server.s3.put_object("b-in", &format!("csvs/f {i:03}.csv"), format!("id,v\n{i},x\n").as_bytes()).expect("put");
    }
    let args = [
        "merge",
        "s3://b-in/csvs/",
        "s3://b-out/merged/",
        "--batch-size",
        "50",
        "--run-id",
        "t1",
        "--single-output",
        "--json",
    ];
    let output = s3mm(&server, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = json(&output);
    assert_eq!(report["summary"]["rows"], 120);
    assert_eq!(report["summary"]["outputs"], 3);
    for key in ["merged/t1/_manifests/batches.json", "merged/t1/_results/batch-00002.json", "merged/t1/report.json"] {
        assert!(server.s3.object("b-out", key).is_some(), "{key}");
    }
    let merged = server.s3.object("b-out", "merged/t1/merged.csv").expect("merged.csv").data;
    let expected: String = std::iter::once("id,v\n".to_owned()).chain((0..120).map(|i| format!("{i},x\n"))).collect();
    assert_eq!(String::from_utf8_lossy(&merged), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_sweeps_a_prefix() {
    let server = server().await;
    for key in ["in/a.csv", "in/b c.csv", "in/sub/ç.csv", "other/x.csv"] {
        server.s3.put_object("b-in", key, key.as_bytes()).expect("put");
    }
    let output = s3mm(&server, &["move", "s3://b-in/in/", "s3://b-out/archive/", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json(&output)["moved"], 3);
    assert_eq!(server.s3.keys("b-in"), vec!["other/x.csv".to_owned()]);
    assert_eq!(server.s3.object("b-out", "archive/sub/ç.csv").expect("moved").data.as_ref(), b"in/sub/\xc3\xa7.csv");

    let output = s3mm(&server, &["move", "s3://b-in/other/", "s3://b-out/copies/", "--copy-only"]);
    assert!(output.status.success());
    assert!(server.s3.object("b-in", "other/x.csv").is_some() && server.s3.object("b-out", "copies/x.csv").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_get_clear_errors() {
    let server = server().await;
    let cases: &[(&[&str], i32, &str)] = &[
        (&["merge", "b-in/csvs", "s3://b-out/m/"], 2, "b-in/csvs"),
        (&["merge", "s3://Bad_Bucket/x", "s3://b-out/m/"], 2, "Bad_Bucket"),
        (&["merge", "s3://no-such-bucket/x/", "s3://b-out/m/"], 2, "no-such-bucket"),
        (&["merge", "s3://b-in/empty/", "s3://b-out/m/"], 2, "s3://b-in/empty/"),
        (&["merge", "s3://b-in/x/", "s3://b-out/m/", "--batch-size", "0"], 2, "batch-size"),
        (&["move", "s3://b-in/x/", "s3://b-out/m/", "--concurrency", "lots"], 2, "concurrency"),
        (&["serve", "--fault-rate", "3"], 2, "fault-rate"),
    ];
    for (args, code, needle) in cases {
        let output = s3mm(&server, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?} should name {needle}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let server = server().await;
    let output = s3mm(&server, &["demo", "--files", "300", "--batch-size", "100", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = json(&output);
    assert_eq!(summary["files"], 300);
    assert_eq!(summary["moved"], 300);
    assert_eq!(summary["rows"], 300);
    assert_eq!(summary["outputs"], 3);
    assert_eq!(summary["requests"]["CopyObject"], 300);
    assert!(summary["aws_cost_move"]["total_dollars"].as_f64().expect("cost") > 0.0);
}

#[test]
fn cost_prints_a_dated_estimate() {
    let output = Command::new(env!("CARGO_BIN_EXE_s3mm"))
        .args(["cost", "--objects-per-day", "800000", "--merge-files", "300000", "--json"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let estimate: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(estimate["mover_month"]["prices_date"], "2026-11-01");
    let copy = estimate["mover_month"]["lines"][0]["dollars"].as_f64().expect("dollars");
    assert!((copy - 120.0).abs() < 1e-6, "24M COPY requests cost $120, got {copy}");
    // Every mode per 1,000 objects, each from a measured duration.
    let modes = estimate["mover_per_1000_objects"].as_object().expect("modes");
    assert_eq!(modes.keys().collect::<Vec<_>>(), ["direct", "sqs_batch_10", "sqs_batch_100"]);
    let item = |mode: &str, prefix: &str| {
        modes[mode]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["item"].as_str().is_some_and(|i| i.starts_with(prefix)))
            .cloned()
    };
    assert_eq!(item("direct", "Lambda mover requests").expect("direct")["quantity"], 1000.0);
    assert_eq!(item("sqs_batch_100", "Lambda mover requests").expect("sqs")["quantity"], 10.0);
    assert!(item("direct", "SQS").is_none());
    assert_eq!(item("sqs_batch_10", "SQS").expect("sqs")["quantity"], 1200.0);
    assert!(estimate["durations"]["source"].as_str().is_some_and(|s| s.contains("runtime emulator")));
}

#[test]
fn cost_of_sqs_delivery_and_an_unmeasured_batch_size() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_s3mm")).arg("cost").args(args).output().expect("runs");
    let output = run(&["--delivery", "sqs", "--mover-batch-size", "100", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let estimate: Value = serde_json::from_slice(&output.stdout).expect("json");
    let lines = estimate["mover_month"]["lines"].as_array().expect("lines");
    let requests = lines.iter().find(|l| l["item"] == "Lambda mover requests").expect("requests");
    assert_eq!(requests["quantity"], 240_000.0, "24M objects in batches of 100");

    let output = run(&["--delivery", "sqs", "--mover-batch-size", "7"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--mover-batch-size 7: no measured duration for 7 objects per invocation; measured: [1, 10, 100]"
        ),
        "{stderr}"
    );
}

#[test]
fn serve_prints_its_endpoint_first_and_counters_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3mm"))
        .args(["serve", "--port", "0", "--root", dir.path().to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("line");
    assert!(first.starts_with("endpoint=http://127.0.0.1:"), "{first}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_line(&mut rest).expect("counters");
    assert!(child.wait().expect("exit").success());
    let counters: Value = serde_json::from_str(&rest).expect("counters JSON");
    assert!(counters.get("requests").is_some(), "{rest}");
}

/// The README's two shaping commands, word for word (the helper adds the
/// endpoint), and an incremental run's refusal of what is too recent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaped_and_incremental_merges_as_the_readme_shows() {
    let server = server().await;
    for i in 0..40 {
        server.s3.put_object("b-in", &format!("csvs/{i:03}.csv"), format!("id,v\n{i},x\n").as_bytes()).expect("put");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let shaped = "s3mm merge s3://b-in/csvs/ s3://b-out/merged/ --target-bytes 134217728 --compression gzip";
    assert!(readme.contains(shaped), "the README shows: {shaped}");
    let incremental = "s3mm merge s3://b-in/csvs/ s3://b-out/merged/ --incremental";
    assert!(readme.contains(incremental), "the README shows: {incremental}");

    let args: Vec<&str> = shaped.split_whitespace().skip(1).chain(["--run-id", "gz", "--json"]).collect();
    let output = s3mm(&server, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let gz = server.s3.object("b-out", "merged/gz/merged-00000.csv.gz").expect("gzip output").data;
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);

    // Just uploaded, so within the default 60 s settle time: left for later.
    let args: Vec<&str> = incremental.split_whitespace().skip(1).chain(["--run-id", "inc-1", "--json"]).collect();
    let output = s3mm(&server, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json(&output)["summary"]["total_files"], 0);
    let report: Value =
        serde_json::from_slice(&server.s3.object("b-out", "merged/inc-1/report.json").expect("report").data)
            .expect("report json");
    assert_eq!(report["incremental"]["deferred_files"], 40);
    assert_eq!(report["incremental"]["state_key"], "merged/_incremental/b-in/csvs/state.json");
}

/// `s3mm backfill` writes the CSV manifest S3 Batch Operations reads: one
/// `bucket,key` row per object under the prefix, keys URL-encoded so that
/// decoding `+` as a space or not gives the same key; and prints the
/// create-job command naming the manifest's ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_writes_a_manifest_batch_operations_reads_back_to_the_objects() {
    let server = server().await;
    let mut keys: Vec<String> = ["a.csv", "b c.csv", "plus+sign.csv", "pct%41.csv", "comma,quote\".csv", "ç/日本.csv"]
        .iter()
        .map(|k| format!("incoming/{k}"))
        .collect();
    keys.push(format!("incoming/{}", "k".repeat(1024 - "incoming/".len())));
    for key in &keys {
        server.s3.put_object("b-in", key, b"x").expect("put");
    }
    server.s3.put_object("b-in", "elsewhere/not-me.csv", b"x").expect("put");
    let role = "arn:aws:iam::123456789012:role/s3mm-BatchOperationsRole-1";
    let function = "arn:aws:lambda:us-east-1:123456789012:function:s3mm-mover";
    let args = [
        "backfill",
        "s3://b-in/incoming/",
        "--manifest",
        "s3://b-out/s3mm-backfill/manifest 1.csv",
        "--report",
        "s3://b-out/s3mm-backfill/reports/",
        "--role-arn",
        role,
        "--function-arn",
        function,
        "--json",
    ];
    let output = s3mm(&server, &args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan = json(&output);
    assert_eq!(plan["objects"], keys.len());

    let manifest = server.s3.object("b-out", "s3mm-backfill/manifest 1.csv").expect("manifest").data;
    let text = String::from_utf8(manifest.to_vec()).expect("UTF-8");
    let mut listed = Vec::new();
    for row in text.lines() {
        let (bucket, encoded) = row.split_once(',').expect("bucket,key");
        assert_eq!(bucket, "b-in");
        // No field separator, quote, space or `+` left: every CSV reader and
        // both URL decoders read the same key.
        assert!(!encoded.contains([',', '"', ' ', '+']), "{row}");
        listed.push(s3mm_core::keys::decode_event_key(encoded).expect("decodes"));
    }
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected, "the manifest lists exactly the objects under the prefix, in key order");

    let etag = plan["manifest"]["etag"].as_str().expect("etag");
    let stored = server.s3.object("b-out", "s3mm-backfill/manifest 1.csv").expect("manifest").etag;
    assert_eq!(etag, stored.trim_matches('"'));
    let command = plan["command"].as_str().expect("command");
    for part in [
        "aws s3control create-job --account-id 123456789012",
        &format!("\"FunctionArn\":\"{function}\""),
        "\"InvocationSchemaVersion\":\"2.0\"",
        "\"ObjectArn\":\"arn:aws:s3:::b-out/s3mm-backfill/manifest 1.csv\"",
        &format!("\"ETag\":\"{etag}\""),
        "\"Fields\":[\"Bucket\",\"Key\"],\"Format\":\"S3BatchOperations_CSV_20180820\"",
        "\"Bucket\":\"arn:aws:s3:::b-out\"",
        "\"Prefix\":\"s3mm-backfill/reports\"",
        &format!("--role-arn {role}"),
        &format!("--client-request-token s3mm-backfill-{etag} --no-confirmation-required"),
    ] {
        assert!(command.contains(part), "{part} missing from:\n{command}");
    }

    // With --stack the ARNs and the account are read at run time.
    let output = s3mm(
        &server,
        &[
            "backfill",
            "s3://b-in/incoming/",
            "--manifest",
            "s3://b-out/m.csv",
            "--report",
            "s3://b-out/r/",
            "--stack",
            "s3mm",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FUNCTION_ARN=\"$(aws cloudformation describe-stacks --stack-name s3mm"), "{text}");
    assert!(text.contains("OutputKey=='BatchOperationsRoleArn'"), "{text}");
    assert!(text.contains("--account-id \"$ACCOUNT_ID\""), "{text}");
    assert!(text.contains("\"FunctionArn\":\"'\"$FUNCTION_ARN\"'\""), "{text}");

    // Neither a stack nor ARNs: refused before anything is listed or written.
    let output = s3mm(
        &server,
        &["backfill", "s3://b-in/incoming/", "--manifest", "s3://b-out/x.csv", "--report", "s3://b-out/r/"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--stack NAME"));
    assert!(server.s3.object("b-out", "x.csv").is_none());
    // A manifest URL that names a folder.
    let output = s3mm(
        &server,
        &[
            "backfill",
            "s3://b-in/incoming/",
            "--manifest",
            "s3://b-out/m/",
            "--report",
            "s3://b-out/r/",
            "--stack",
            "s",
        ],
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("names no object"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// docs/deploy.md shows `s3mm cost`'s per-1,000-objects table: it must be
/// what the command prints.
#[test]
fn the_delivery_mode_costs_in_the_docs_are_the_commands_output() {
    let output = Command::new(env!("CARGO_BIN_EXE_s3mm")).arg("cost").output().expect("runs");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let table = |text: &str| -> Option<String> {
        let start = text.find("mover per 1,000 objects, by delivery mode:")?;
        let rest = &text[start..];
        Some(
            rest.lines()
                .take_while(|l| !l.is_empty() && *l != "..." && !l.starts_with("durations"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md")).expect("docs");
    let printed = table(&text).expect("the command prints the table");
    assert_eq!(printed.lines().count(), 4, "{printed}");
    assert_eq!(table(&docs).as_deref(), Some(printed.as_str()), "docs/deploy.md's table differs from `s3mm cost`");
}
