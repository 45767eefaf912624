//! `local-s3`: serves a directory over the S3 API until SIGTERM or SIGINT.
//!
//! The first line on stdout is `endpoint=http://127.0.0.1:PORT`, so a parent
//! process can read where to connect; on shutdown one JSON line with the
//! request and fault counters follows. Logs go to stderr (`RUST_LOG`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use local_s3::{DEFAULT_ACCESS_KEY, DEFAULT_MIN_PART_SIZE, DEFAULT_SECRET_KEY, FaultKind, LocalS3, Options};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(version, about = "An S3-compatible server on a local directory, with latency and fault injection")]
struct Args {
    /// Directory holding the buckets; created if missing, reused if present.
    #[arg(long)]
    root: PathBuf,

    /// Address to listen on. Keep 127.0.0.1 unless a container on a Docker
    /// bridge must reach the server (then 0.0.0.0 or the bridge's gateway).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,

    /// Port; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,

    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = DEFAULT_ACCESS_KEY)]
    access_key: String,

    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = DEFAULT_SECRET_KEY, hide_env_values = true)]
    secret_key: String,

    /// Delay added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Random extra delay of up to this many milliseconds per request.
    #[arg(long, default_value_t = 0)]
    latency_jitter_ms: u64,

    /// Fraction of requests (0.0 to 1.0) that get a random fault.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fault_rate: f64,

    /// Kinds random faults are drawn from.
    #[arg(long, value_delimiter = ',', default_value = "SlowDown,InternalError,DropConnection,CopyError200")]
    fault_kinds: Vec<FaultKind>,

    /// Seed of the fault and jitter random generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Minimum size in bytes of every multipart part but the last.
    #[arg(long, default_value_t = DEFAULT_MIN_PART_SIZE)]
    min_part_size: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) { Ok(rate) } else { Err(format!("{rate} is not between 0.0 and 1.0")) }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // s3s logs every 4xx answer at error level; that is normal
                // traffic for a test server, so it is off unless asked for.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,s3s=off")),
        )
        .init();

    let mut options = Options::new(&args.root);
    options.host = args.host;
    options.port = args.port;
    options.access_key = args.access_key;
    options.secret_key = args.secret_key;
    options.latency = Duration::from_millis(args.latency_ms);
    options.latency_jitter = Duration::from_millis(args.latency_jitter_ms);
    options.fault_rate = args.fault_rate;
    options.fault_kinds = args.fault_kinds;
    options.seed = args.seed;
    options.min_part_size = args.min_part_size;

    let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;

    let server = LocalS3::start_with(options)
        .await
        .with_context(|| format!("cannot start local-s3 on {}", args.root.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "endpoint={}", server.endpoint()).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }

    let summary = serde_json::json!({
        "requests": server.counters(),
        "faults": server.faults_injected(),
    });
    server.shutdown().await;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{summary}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    Ok(())
}
