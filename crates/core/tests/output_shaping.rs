//! Output shaping against local-s3: gzip outputs that independent readers
//! (gzip(1), Python's gzip + csv, pandas, DuckDB) read back to exactly the
//! plain run's rows, and batches cut by the summed sizes of their files.

use futures::{StreamExt, stream};
use s3mm_core::direct::Direct;
use s3mm_core::merge::{
    BatchItem, Compression, Manifest, MergeError, MergeRequest, MergeTask, Report, aggregate, generate_batches,
    merge_batch,
};
use s3mm_test_support::S3Fixture;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

fn input(run_id: &str, extra: Value) -> Value {
    let mut input = json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out",
        "dest_prefix": "out/", "batch_size": 1000, "run_id": run_id, "single_output": true});
    if let (Some(map), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    input
}

struct Run {
    items: Vec<BatchItem>,
    report: Report,
}

async fn run(f: &S3Fixture, input: Value) -> Run {
    let request = MergeRequest::from_input(&input, 1000, "fallback").expect("valid input");
    let generated = generate_batches(&f.client, &request, 8).await.expect("generated");
    let items: Vec<BatchItem> =
        serde_json::from_slice(&f.server.object("b-out", &generated.batches_key).expect("batches.json").data)
            .expect("items");
    let tasks: Vec<MergeTask> = items.iter().map(|b| generated.merge_task(b.clone())).collect();
    let direct = Direct::new(&f.client);
    let merged: Vec<_> =
        stream::iter(&tasks).map(|t| merge_batch(&f.client, &direct, t, 16)).buffer_unordered(8).collect().await;
    for result in merged {
        result.expect("batch merged");
    }
    let summary = aggregate(&f.client, &generated.aggregate_task()).await.expect("aggregated");
    let report = serde_json::from_slice(&f.server.object("b-out", &summary.report_key).expect("report").data)
        .expect("report json");
    Run { items, report }
}

fn object(f: &S3Fixture, key: &str) -> Vec<u8> {
    f.server.object("b-out", key).unwrap_or_else(|| panic!("{key} written")).data.to_vec()
}

/// Files a real export holds: quoted commas, quotes and newlines, CRLF,
/// Unicode, a BOM, a missing final newline, empty and header-only files.
fn seed_varied(f: &S3Fixture, n: usize) {
    for i in 0..n {
        let body = match i % 7 {
            0 => format!("id,name,note\r\n{i},\"Smith, J\",\"says \"\"hi\"\"\"\r\n"),
            1 => format!("id,name,note\n{i},café 日本,\"line one\nline two\"\n"),
            2 => format!("\u{feff}id,name,note\n{i},bom,x\n"),
            3 => format!("id,name,note\n{i},no newline,x"),
            4 => "id,name,note\n".to_owned(),
            5 => String::new(),
            _ => format!("id,name,note\n{i},plain,{}\n", "x".repeat(i % 300)),
        };
        f.server.put_object("b-in", &format!("csvs/{i:05}.csv"), body.as_bytes()).expect("put");
    }
}

/// Runs a program with `stdin` and returns its stdout, failing the test on
/// any error: the reader under test is the program, not this code.
fn pipe(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{program} runs: {err}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("writer").expect("stdin written");
    assert!(out.status.success(), "{program} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Python's own gzip and csv modules: the rows, as JSON.
const PY_ROWS: &str = "import csv, gzip, io, json, sys
data = sys.stdin.buffer.read()
if data[:2] == b'\\x1f\\x8b':
    data = gzip.decompress(data)
print(json.dumps(list(csv.reader(io.StringIO(data.decode('utf-8'), newline='')))))";

fn python_rows(body: &[u8]) -> Value {
    serde_json::from_slice(&pipe("python3", &["-c", PY_ROWS], body)).expect("rows as JSON")
}

#[tokio::test]
async fn gzip_outputs_read_back_to_exactly_the_plain_runs_rows() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    seed_varied(&f, 2_345);
    let plain = run(&f, input("plain", json!({}))).await;
    let gzip = run(&f, input("gzip", json!({"compression": "gzip"}))).await;

    assert_eq!(gzip.report.options.compression, Compression::Gzip);
    assert_eq!(plain.report.options.compression, Compression::None);
    assert_eq!(gzip.items.len(), 3);
    for (p, g) in plain.items.iter().zip(&gzip.items) {
        assert!(g.output_key.ends_with(&format!("merged-{:05}.csv.gz", g.batch_id)), "{}", g.output_key);
        let manifest: Manifest = serde_json::from_slice(&object(&f, &g.manifest_key)).expect("manifest");
        assert_eq!(manifest.options.compression, Compression::Gzip, "the manifest says how to write");
        let stored = f.server.object("b-out", &g.output_key).expect("gzip output");
        assert_eq!(stored.content_type.as_deref(), Some("application/gzip"));
        let plain_csv = object(&f, &p.output_key);
        assert_eq!(pipe("gzip", &["-dc"], &stored.data), plain_csv, "gzip -d gives the plain output byte for byte");
    }
    let merged_gz = gzip.report.merged_key.clone().expect("single output");
    assert!(merged_gz.ends_with("gzip/merged.csv.gz"), "{merged_gz}");
    let merged = object(&f, plain.report.merged_key.as_deref().expect("plain single output"));
    let merged_gz = object(&f, &merged_gz);
    assert_eq!(pipe("gzip", &["-dc"], &merged_gz), merged);
    let rows = python_rows(&merged_gz);
    assert_eq!(rows, python_rows(&merged), "Python reads the same rows from both");
    // Header once, then every data row: 7 shapes, of which 2 add no row.
    let expected_rows = 2_345 - (2_345 / 7 + usize::from(2_345 % 7 > 4)) - (2_345 / 7 + usize::from(2_345 % 7 > 5));
    assert_eq!(rows.as_array().map(Vec::len), Some(1 + expected_rows));
    assert_eq!(gzip.report.rows, plain.report.rows);
    assert!(gzip.report.bytes < plain.report.bytes, "compressed: {} vs {}", gzip.report.bytes, plain.report.bytes);
}

/// pandas and DuckDB, each reading the gzip file as an analytics job
/// would (by its own decompression and CSV parsing, every field as text),
/// print the rows as JSON: `{"pandas": [...], "duckdb": [...]}`.
const READERS_ROWS: &str = r#"import duckdb, io, json, os, sys, tempfile
import pandas as pd
data = sys.stdin.buffer.read()
frame = pd.read_csv(io.BytesIO(data), compression='gzip', header=None, dtype=str, keep_default_na=False, encoding='utf-8')
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'merged.csv.gz')
    with open(path, 'wb') as f:
        f.write(data)
    sql = "select * from read_csv('" + path + "', header=false, all_varchar=true, delim=',', quote='\"', escape='\"', compression='gzip')"
    rows = duckdb.sql(sql).fetchall()
print(json.dumps({'pandas': frame.values.tolist(), 'duckdb': [['' if v is None else v for v in row] for row in rows]}))"#;

/// The Python of `.venv-readers` (pandas and duckdb, pinned in
/// scripts/tools.sh), or `S3MM_READERS_PYTHON`.
fn readers_python() -> String {
    let python = std::env::var("S3MM_READERS_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv-readers/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} not found: scripts/test.sh installs pandas and duckdb into .venv-readers"
    );
    python
}

#[tokio::test]
#[ignore = "needs pandas and duckdb (.venv-readers, which scripts/test.sh installs); CI runs it"]
async fn gzip_outputs_read_back_in_pandas_and_duckdb_to_the_plain_runs_rows() {
    let python = readers_python();
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    seed_varied(&f, 700);
    let plain = run(&f, input("plain", json!({}))).await;
    let gzip = run(&f, input("gzip", json!({"compression": "gzip"}))).await;
    let merged = object(&f, plain.report.merged_key.as_deref().expect("plain single output"));
    let merged_gz = object(&f, gzip.report.merged_key.as_deref().expect("gzip single output"));
    let expected = python_rows(&merged);
    assert!(expected.as_array().is_some_and(|rows| rows.len() > 500), "the plain run has its rows");
    let read: Value = serde_json::from_slice(&pipe(&python, &["-c", READERS_ROWS], &merged_gz)).expect("readers' JSON");
    assert_eq!(read["pandas"], expected, "pandas reads the plain run's rows from the gzip output");
    assert_eq!(read["duckdb"], expected, "DuckDB reads the plain run's rows from the gzip output");
}

#[tokio::test]
async fn target_bytes_cut_batches_by_their_files_sizes() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let mut sizes = Vec::new();
    for i in 0..600u64 {
        // 20 to 1,500 bytes, and one file larger than the target.
        let pad = if i == 321 { 30_000 } else { (i * 7_919) % 1_480 };
        let body = format!("id,pad\n{i},{}\n", "p".repeat(usize::try_from(pad).unwrap_or(0)));
        sizes.push(body.len() as u64);
        f.server.put_object("b-in", &format!("csvs/{i:05}.csv"), body.as_bytes()).expect("put");
    }
    let target = 20_000u64;
    let plain = run(&f, input("whole", json!({}))).await;
    let shaped = run(&f, input("shaped", json!({"target_bytes": target}))).await;
    assert_eq!(shaped.report.options.target_bytes, Some(target));

    let total: u64 = sizes.iter().sum();
    assert_eq!(shaped.items.iter().map(|i| i.source_bytes).sum::<u64>(), total, "every byte listed once");
    assert!(shaped.items.len() as u64 >= total.div_ceil(target), "{} batches", shaped.items.len());
    let mut rows = String::new();
    for item in &shaped.items {
        let out = object(&f, &item.output_key);
        if item.file_count > 1 {
            assert!(item.source_bytes <= target, "batch {} holds {} bytes", item.batch_id, item.source_bytes);
            assert!(out.len() as u64 <= target, "output {} is {} bytes", item.output_key, out.len());
        } else {
            assert!(item.source_bytes > target || item.batch_id == shaped.items.len() as u64 - 1);
        }
        let out = String::from_utf8(out).expect("utf-8");
        rows.push_str(out.strip_prefix("id,pad\n").expect("header first"));
    }
    // Where a batch closed, the next file would have passed the target.
    let mut position = 0usize;
    for item in &shaped.items[..shaped.items.len() - 1] {
        position += item.file_count;
        assert!(item.source_bytes + sizes[position] > target, "batch {} closed early", item.batch_id);
    }
    let whole = String::from_utf8(object(&f, &plain.items[0].output_key)).expect("utf-8");
    assert_eq!(format!("id,pad\n{rows}"), whole, "the same rows in the same order");
}

#[tokio::test]
async fn bad_shaping_options_name_the_field() {
    for (extra, field, message) in [
        (json!({"target_bytes": 0}), "target_bytes", "must be a whole number of bytes of at least 1, got 0"),
        (json!({"target_bytes": "1MB"}), "target_bytes", "must be a whole number of bytes of at least 1, got \"1MB\""),
        (json!({"target_bytes": -5}), "target_bytes", "must be a whole number of bytes of at least 1, got -5"),
        (json!({"compression": "zstd"}), "compression", "must be \"none\" or \"gzip\", got \"zstd\""),
        (json!({"compression": true}), "compression", "must be a string, got true"),
    ] {
        let err = MergeRequest::from_input(&input("r", extra.clone()), 1000, "x").expect_err("refused");
        assert!(
            matches!(&err, MergeError::InvalidInput { field: f, reason } if *f == field && reason == message),
            "{extra}: {err}"
        );
    }
}
