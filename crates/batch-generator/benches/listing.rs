//! The batch-generator's listing at scale: serial against parallel, for
//! flat sequential keys, random UUIDs and date folders, on local-s3 with
//! S3's tens of milliseconds per request (LATENCY_MS, default 20).
//!
//! For each shape, KEYS objects (default 1,000,000) and SMALL_KEYS (default
//! 100,000) in another bucket are stored; then `generate_batches` runs in a
//! child process (so its peak RSS is its own, not the server's) over each:
//! parallel at KEYS and SMALL_KEYS, serial at KEYS. The parallel run at
//! KEYS and at SMALL_KEYS is repeated (LISTING_REPEAT, default 3): the
//! run of median time is reported, with every run's time and peak RSS
//! beside it, and the table shows the median peak RSS. It prints a table and
//! writes the figures as JSON to bench/results/listing-<date>.json.
//!
//! `cargo bench -p batch-generator --bench listing`
//! (SHAPES=random,dated picks shapes; LIST_CONCURRENCY=N sets the calls in
//! flight, default 32; LIST_ONLY=1 times the listing without the manifests;
//! LISTING_DATA=DIR keeps the stored objects in DIR/<shape> and reuses them
//! in later runs; LISTING_PERF=DIR records the first parallel 1M run with `perf
//! record` into DIR/<bucket>-<run>.data, and the server beside it in
//! DIR/<bucket>-<run>-server.data; LISTING_OUT=FILE writes the results
//! there instead, a relative FILE from the workspace root;
//! LISTING_SKIP_SERIAL=1 leaves out the serial run, for trying changes to
//! the parallel one.)

use futures::TryStreamExt;
use local_s3::{LocalS3, Options};
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use s3mm_core::merge::{MergeRequest, generate_batches};
use s3mm_test_support::shapes;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "S3MM_LISTING_BENCH_CHILD";
/// DWARF call graphs: neither the standard library nor the dependencies
/// keep frame pointers, and without them a profile cannot say who called
/// memcmp or malloc. Sampled at 997 Hz to keep the files to ~100 MB.
const PERF_RECORD: &[&str] = &["record", "-q", "-F", "997", "--call-graph", "dwarf,16384"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process, from the kernel's own count.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:").and_then(|v| v.trim().strip_suffix(" kB")))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used so far, from
/// /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; fields are counted after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The child: one `generate_batches` run, as the Lambda runs it (a
/// current-thread runtime, the default client, the same allocator
/// setting), reporting on stdout.
fn child(spec: &str) {
    batch_generator::keep_large_blocks_off_the_heap();
    let spec: Value = serde_json::from_str(spec).expect("child spec");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let out = runtime.block_on(async {
        let settings = ClientSettings::default();
        let client = client_for_endpoint(
            spec["endpoint"].as_str().expect("endpoint"),
            spec["access_key"].as_str().expect("key"),
            spec["secret_key"].as_str().expect("secret"),
            &settings,
        );
        let input = json!({"source_bucket": spec["bucket"], "source_prefix": "csvs/", "dest_bucket": "b-out",
            "dest_prefix": "merged/", "run_id": spec["run_id"]});
        let request = MergeRequest::from_input(&input, 1000, "bench").expect("input");
        let concurrency = usize::try_from(spec["list_concurrency"].as_u64().expect("concurrency")).expect("usize");
        let started = Instant::now();
        if std::env::var("LIST_ONLY").is_ok_and(|v| v == "1") {
            let options = s3mm_core::ListOptions::default();
            let listed =
                s3mm_core::list_objects_parallel(&client, &request.source_bucket, "csvs/", options, concurrency)
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
                    .expect("listed");
            return json!({"seconds": started.elapsed().as_secs_f64(), "files": listed, "batches": 0});
        }
        let generated = generate_batches(&client, &request, concurrency).await.expect("batches");
        json!({"seconds": started.elapsed().as_secs_f64(), "files": generated.total_files,
               "batches": generated.total_batches})
    });
    let mut out = out;
    out["peak_rss_mib"] = json!(peak_rss_kib() as f64 / 1024.0);
    out["cpu_seconds"] = json!(cpu_seconds());
    println!("{out}");
}

/// `profile`: record this run with perf when LISTING_PERF asks for it.
fn run_child(server: &LocalS3, bucket: &str, run_id: &str, list_concurrency: u64, profile: bool) -> Value {
    let spec = json!({"endpoint": server.endpoint(), "access_key": server.access_key(),
        "secret_key": server.secret_key(), "bucket": bucket, "run_id": run_id, "list_concurrency": list_concurrency});
    let exe = std::env::current_exe().expect("bench executable");
    let before = server.counters().get("ListObjectsV2").copied().unwrap_or(0);
    let listed_before = server.objects_listed();
    // This process is local-s3 while the child runs: its CPU is the server's.
    let server_cpu_before = cpu_seconds();
    let perf_dir = std::env::var_os("LISTING_PERF")
        .filter(|_| profile && run_id.ends_with("-parallel"))
        .map(std::path::PathBuf::from);
    let mut command = match &perf_dir {
        Some(dir) => {
            let mut perf = Command::new("perf");
            perf.args(PERF_RECORD).arg("-o").arg(dir.join(format!("{bucket}-{run_id}.data"))).arg("--").arg(exe);
            perf
        }
        None => Command::new(exe),
    };
    // With LISTING_PERF the server side (this process) is recorded too, so
    // the two profiles of one run can be read side by side.
    let server_perf = perf_dir.as_ref().and_then(|dir| {
        Command::new("perf")
            .args(PERF_RECORD)
            .args(["-p", &std::process::id().to_string(), "-o"])
            .arg(dir.join(format!("{bucket}-{run_id}-server.data")))
            .spawn()
            .ok()
    });
    let output = command.env(CHILD, spec.to_string()).output();
    let server_cpu = cpu_seconds() - server_cpu_before;
    // Stopped before anything below may panic: a recording left running
    // would outlive the bench.
    if let Some(mut perf) = server_perf {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
    let output = output.expect("child runs");
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut result: Value = serde_json::from_slice(&output.stdout).expect("child's JSON");
    let calls = server.counters().get("ListObjectsV2").copied().unwrap_or(0) - before;
    result["list_calls"] = json!(calls);
    // Keys the server sent, counting a key sent twice twice.
    result["objects_listed"] = json!(server.objects_listed() - listed_before);
    result["server_cpu_seconds"] = json!((server_cpu * 100.0).round() / 100.0);
    result
}

fn seed(server: &LocalS3, bucket: &str, keys: &[String]) {
    server.create_bucket(bucket).expect("bucket");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    std::thread::scope(|scope| {
        for part in keys.chunks(keys.len().div_ceil(threads).max(1)) {
            scope.spawn(move || {
                for (i, key) in part.iter().enumerate() {
                    server.put_object(bucket, key, format!("id,v\n{i},x\n").as_bytes()).expect("seed");
                }
            });
        }
    });
}

/// The run of median time among `n`, with every run's seconds and peak RSS
/// beside it and the median peak RSS (`median_rss_mib`): on a shared
/// 2-core machine one parallel listing can be 10% off the next, and its
/// peak RSS a few MiB.
fn median_of(n: u64, mut run: impl FnMut(u64) -> Value) -> Value {
    let mut runs: Vec<Value> = (0..n).map(&mut run).collect();
    let field = |v: &Value, name: &str| v[name].as_f64().unwrap_or(f64::NAN);
    let mut rss: Vec<f64> = runs.iter().map(|v| field(v, "peak_rss_mib")).collect();
    rss.sort_by(f64::total_cmp);
    runs.sort_by(|a, b| field(a, "seconds").total_cmp(&field(b, "seconds")));
    let all: Vec<f64> = runs.iter().map(|v| field(v, "seconds")).collect();
    let mut median = runs.swap_remove(runs.len() / 2);
    median["runs_seconds"] = json!(all);
    median["runs_peak_rss_mib"] = json!(rss);
    median["median_rss_mib"] = json!(rss[rss.len() / 2]);
    median
}

/// The commit measured, marked `-dirty` when the tree had changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() { head } else { format!("{head}-dirty") }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// This process is local-s3, standing in for S3, whose CPU is not the
/// client's; here it shares two cores with the batch-generator, so its cost
/// shows in the parallel time. Each page it sends frees thousands of small
/// blocks, and with glibc's fast bins they are later walked one by one to
/// be sorted (21% of its CPU in a profile). Without fast bins they merge
/// as they are freed: its CPU for the parallel 1M listing fell from 2.9 s
/// to 2.3 s and the listing's time from 4.6 s to 3.9 s.
fn stand_in_for_s3_cheaply() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, before the server's
    // threads exist; a value it refuses leaves the default.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    stand_in_for_s3_cheaply();
    let keys = env_u64("KEYS", 1_000_000);
    let small = env_u64("SMALL_KEYS", 100_000);
    let latency = env_u64("LATENCY_MS", 20);
    let concurrency = env_u64("LIST_CONCURRENCY", 32);
    let repeat = env_u64("LISTING_REPEAT", 3).max(1);
    let wanted = std::env::var("SHAPES").unwrap_or_else(|_| shapes::ALL.join(","));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    println!(
        "{:<11} {:>9} {:>10} {:>10} {:>7} {:>11} {:>11} {:>11} {:>9} {:>11} {:>11}",
        "shape",
        "keys",
        "serial s",
        "parallel s",
        "ratio",
        "serial calls",
        "par. calls",
        "RSS MiB",
        "RSS small",
        "client CPU",
        "server CPU"
    );
    for shape in wanted.split(',').filter(|s| !s.is_empty()) {
        let temp = tempfile::tempdir().expect("temp dir");
        let kept = std::env::var("LISTING_DATA").ok().map(|dir| std::path::Path::new(&dir).join(shape));
        let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned());
        let seeded = dir.join(format!(".seeded-{keys}-{small}"));
        let server = runtime.block_on(LocalS3::start_with(Options::new(&dir))).expect("local-s3");
        if !seeded.exists() {
            server.create_bucket("b-out").expect("bucket");
            let seeding = Instant::now();
            seed(&server, "big", &shapes::keys(shape, keys));
            seed(&server, "small", &shapes::keys(shape, small));
            eprintln!("{shape}: stored {} objects in {:.0} s", keys + small, seeding.elapsed().as_secs_f64());
            if kept.is_some() {
                std::fs::write(&seeded, b"").expect("seeded marker");
            }
        }
        server.faults().set_latency(Duration::from_millis(latency), Duration::ZERO);
        let parallel = median_of(repeat, |i| {
            // Only the first repeat is profiled: each would write over the
            // last one's recording.
            run_child(&server, "big", &format!("{shape}-parallel"), concurrency, i == 0)
        });
        let parallel_small =
            median_of(repeat, |_| run_child(&server, "small", &format!("{shape}-small"), concurrency, false));
        let serial = if std::env::var("LISTING_SKIP_SERIAL").is_ok_and(|v| v == "1") {
            json!({"files": keys, "seconds": null})
        } else {
            run_child(&server, "big", &format!("{shape}-serial"), 1, false)
        };
        for (result, expected) in [(&parallel, keys), (&parallel_small, small), (&serial, keys)] {
            assert_eq!(result["files"].as_u64(), Some(expected), "{shape}: every key listed once: {result}");
        }
        let seconds = |v: &Value| v["seconds"].as_f64().unwrap_or(f64::NAN);
        let ratio = seconds(&serial) / seconds(&parallel);
        println!(
            "{:<11} {:>9} {:>10.2} {:>10.2} {:>6.1}× {:>11} {:>11} {:>11.1} {:>9.1} {:>10.2}s {:>10.2}s",
            shape,
            keys,
            seconds(&serial),
            seconds(&parallel),
            ratio,
            serial["list_calls"],
            parallel["list_calls"],
            parallel["median_rss_mib"].as_f64().unwrap_or(f64::NAN),
            parallel_small["median_rss_mib"].as_f64().unwrap_or(f64::NAN),
            parallel["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            parallel["server_cpu_seconds"].as_f64().unwrap_or(f64::NAN),
        );
        rows.push(json!({"shape": shape, "keys": keys, "small_keys": small, "serial": serial,
            "parallel": parallel, "parallel_small": parallel_small, "speedup": ratio}));
        runtime.block_on(server.shutdown());
    }
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let report = json!({"bench": "listing", "date": date, "commit": commit(), "machine": machine(),
        "latency_ms": latency, "list_concurrency": concurrency, "rows": rows});
    // Cargo runs a bench in its package's folder: a relative LISTING_OUT
    // is taken from the workspace root, where the README's commands run.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).expect("bench/results");
    let path =
        std::env::var("LISTING_OUT").map_or_else(|_| dir.join(format!("listing-{date}.json")), |out| root.join(out));
    let json = serde_json::to_string_pretty(&report).expect("json");
    if let Err(err) = std::fs::write(&path, &json) {
        panic!("cannot write the results to {}: {err}\n{json}", path.display());
    }
    println!("results: {}", path.display());
}
