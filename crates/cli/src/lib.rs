//! The `s3mm` command: the same jobs the Lambdas do, from a shell, against
//! any S3 endpoint — `merge` a prefix of CSVs, `move` (sweep) a prefix with
//! the mover's rules, `backfill` a prefix through S3 Batch Operations — plus
//! `demo`, the whole system on a local S3 with no AWS account, `serve`, that
//! local S3 for manual use, and `cost`, what the jobs cost on AWS from a dated
//! price table.

pub mod backfill;
pub mod demo;
pub mod pipeline;
pub mod s3url;

use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressDrawTarget};
use s3mm_core::client::{ClientSettings, load_client_for};
use s3mm_core::cost::{self, Architecture, Delivery, Estimate, MoverAssumptions};
use s3url::{S3ObjectUrl, S3Url};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "s3mm", version, about = "Move and merge S3 objects, fast and without losing one")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print one JSON document instead of text and progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// S3-compatible endpoint (path-style addressing is then used).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS profile to use.
    #[arg(long, global = true, env = "AWS_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system on a local S3: upload, move, merge, summary.
    Demo {
        /// How many one-row CSV files to upload, move and merge.
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
        files: u64,
        /// Latency the local S3 adds to every request (S3 is ~20 ms).
        #[arg(long, default_value_t = 0, value_name = "MS")]
        latency_ms: u64,
        /// Keep the local S3's data in DIR (a fresh directory) instead of a temporary one.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Files per merge batch.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
    },
    /// Merge every CSV under a prefix into a few CSVs, as the state machine does.
    Merge {
        /// s3://bucket/prefix/ to merge.
        source: S3Url,
        /// s3://bucket/prefix/ to write the run under.
        dest: S3Url,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Batches merged at once (the state machine's Map runs 50).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
        concurrency: u64,
        /// Fetches in flight per batch.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
        fetch_concurrency: u64,
        /// ListObjectsV2 calls in flight while listing the source (1 lists serially).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
        list_concurrency: u64,
        /// Also cut batches so their files' summed sizes stay within this many bytes.
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        target_bytes: Option<u64>,
        /// Encoding of the outputs: none (merged-NNNNN.csv) or gzip (merged-NNNNN.csv.gz).
        #[arg(long, default_value = "none", value_parser = ["none", "gzip"])]
        compression: String,
        /// Merge only the files no earlier incremental run of this source and destination merged.
        #[arg(long)]
        incremental: bool,
        /// With --incremental: files modified this recently are left to a later run.
        #[arg(long, value_name = "SECONDS", requires = "incremental", value_parser = clap::value_parser!(u64).range(0..=86_400))]
        settle_seconds: Option<u64>,
        /// With --incremental: take over the lock a run that is no longer running still holds.
        #[arg(long, value_name = "RUN_ID", requires = "incremental")]
        takeover: Option<String>,
        /// Also write one merged.csv of every output.
        #[arg(long)]
        single_output: bool,
        /// Delete the merged sources once the report is written.
        #[arg(long)]
        delete_sources: bool,
        /// Name of the run (default: merge-<unix time>-<8 random hex digits>).
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Move every existing object under a prefix with the mover's rules.
    Move {
        /// s3://bucket/prefix/ to move from.
        source: S3Url,
        /// s3://bucket/prefix/ to move to.
        dest: S3Url,
        /// Copy without deleting the sources.
        #[arg(long)]
        copy_only: bool,
        /// Objects moved at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
    },
    /// Write an S3 Batch Operations manifest of every object under a prefix and
    /// print the create-job command that moves them with the deployed mover.
    Backfill {
        /// s3://bucket/prefix/ whose objects to move (the mover's source bucket).
        source: S3Url,
        /// s3://bucket/key.csv to write the manifest to (under the stack's BackfillLocation).
        #[arg(long, value_name = "S3_URL")]
        manifest: S3ObjectUrl,
        /// s3://bucket/prefix/ for the job's completion report (under the stack's BackfillLocation).
        #[arg(long, value_name = "S3_URL")]
        report: S3Url,
        /// The stack `sam deploy` made: the command reads the mover's and the role's ARNs from its outputs.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        /// The mover's ARN (instead of --stack).
        #[arg(long, value_name = "ARN")]
        function_arn: Option<String>,
        /// The Batch Operations role's ARN (instead of --stack; output BatchOperationsRoleArn).
        #[arg(long, value_name = "ARN")]
        role_arn: Option<String>,
        /// The account the job runs in (default: the role's, or the caller's with --stack).
        #[arg(long, value_name = "ID")]
        account_id: Option<String>,
        /// ListObjectsV2 calls in flight while listing the source.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
        list_concurrency: u64,
    },
    /// Serve the local S3 (for manual use, scripts and cargo lambda).
    Serve {
        #[arg(long, default_value = "./s3mm-local-s3")]
        root: PathBuf,
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 0, value_name = "MS")]
        latency_ms: u64,
        /// Fraction of requests answered with an injected fault (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
    },
    /// Estimate what the mover costs per month and a merge costs per run.
    Cost {
        #[arg(long, default_value_t = 800_000)]
        objects_per_day: u64,
        #[arg(long, default_value_t = 300_000)]
        merge_files: u64,
        #[arg(long, default_value_t = 1000)]
        batch_size: u64,
        /// Lambda architecture: arm64 or x86_64.
        #[arg(long, default_value = "arm64", value_parser = ["arm64", "x86_64"])]
        architecture: String,
        /// How events reach the mover (the stack's DeliveryMode): direct or sqs.
        #[arg(long, default_value = "direct", value_parser = ["direct", "sqs"])]
        delivery: String,
        /// With --delivery sqs: objects per mover invocation (a measured size: 10 or 100).
        #[arg(long, default_value_t = 10)]
        mover_batch_size: u32,
    },
}

/// What a command ended with: its report, and whether anything failed.
pub struct Finished {
    pub json: serde_json::Value,
    pub text: String,
    pub failed: bool,
}

fn progress(global: &Global) -> MultiProgress {
    if global.json { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) } else { MultiProgress::new() }
}

fn estimate_text(title: &str, estimate: &Estimate) -> String {
    let mut text = format!("{title} (prices of {}, {}):\n", estimate.prices_date, estimate.region);
    for line in &estimate.lines {
        text.push_str(&format!(
            "  {:<58} {:>14.0} {:<11} ${:>10.4}\n",
            line.item, line.quantity, line.unit, line.dollars
        ));
    }
    text.push_str(&format!("  {:<58} {:>26} ${:>10.4}\n", "total", "", estimate.total_dollars));
    text
}

fn requests_text(requests: &std::collections::BTreeMap<String, u64>) -> String {
    requests.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
}

pub async fn run(cli: Cli) -> anyhow::Result<Finished> {
    let global = &cli.global;
    match cli.command {
        Command::Demo { files, latency_ms, keep, batch_size } => {
            let options = demo::DemoOptions {
                files: usize::try_from(files)?,
                latency_ms,
                keep,
                batch_size: usize::try_from(batch_size)?,
            };
            let s = demo::run(&options, &progress(global)).await?;
            let text = format!(
                "s3mm demo: {} files uploaded and moved, then merged\n\
                 \x20 moved      {} objects in {:.2} s (uploads and moves overlap)\n\
                 \x20 merged     {} files -> {} rows in {} outputs ({} batches, {} skipped) in {:.2} s = {:.0} files/s\n\
                 \x20 wall time  {:.2} s\n\
                 \x20 requests   {}\n\
                 \x20 report     {}\n{}{}",
                s.files,
                s.moved,
                s.upload_and_move_seconds,
                s.files,
                s.rows,
                s.outputs,
                s.batches,
                s.skipped_files,
                s.merge_seconds,
                s.merge_files_per_second,
                s.wall_seconds,
                requests_text(&s.requests),
                s.report,
                estimate_text("moving these files on AWS", &s.aws_cost_move),
                estimate_text("merging them on AWS", &s.aws_cost_merge),
            );
            let failed = s.failed_batches > 0;
            Ok(Finished { json: serde_json::to_value(&s)?, text, failed })
        }
        Command::Merge {
            source,
            dest,
            batch_size,
            concurrency,
            fetch_concurrency,
            list_concurrency,
            target_bytes,
            compression,
            incremental,
            settle_seconds,
            takeover,
            single_output,
            delete_sources,
            run_id,
        } => {
            let client =
                load_client_for(&ClientSettings::from_env(), global.profile.as_deref(), global.endpoint_url.as_deref())
                    .await;
            let run_id = run_id.unwrap_or_else(default_run_id);
            let options = pipeline::MergeOptions {
                batch_size: usize::try_from(batch_size)?,
                map_concurrency: usize::try_from(concurrency)?,
                fetch_concurrency: usize::try_from(fetch_concurrency)?,
                list_concurrency: usize::try_from(list_concurrency)?,
                target_bytes,
                compression,
                incremental,
                settle_seconds,
                takeover,
                single_output,
                delete_sources,
                run_id,
            };
            let outcome = pipeline::merge(&client, &source, &dest, &options, &progress(global)).await?;
            let s = &outcome.summary;
            let mut text = format!(
                "merged {} files from {source} into {} outputs under s3://{}/{}: {} rows, {} skipped, {} failed batches, {:.2} s\nreport: s3://{}/{}\n",
                s.total_files,
                s.outputs,
                dest.bucket,
                outcome.generated.run_prefix,
                s.rows,
                s.skipped_files,
                s.failed_batches,
                outcome.seconds,
                dest.bucket,
                s.report_key
            );
            if let Some(key) = &s.merged_key {
                text.push_str(&format!("single output: s3://{}/{key}\n", dest.bucket));
            }
            for err in &outcome.batch_errors {
                text.push_str(&format!("failed: {err}\n"));
            }
            let failed = s.failed_batches > 0 || !outcome.batch_errors.is_empty();
            Ok(Finished { json: serde_json::to_value(&outcome)?, text, failed })
        }
        Command::Move { source, dest, copy_only, concurrency } => {
            let client =
                load_client_for(&ClientSettings::from_env(), global.profile.as_deref(), global.endpoint_url.as_deref())
                    .await;
            let tally =
                pipeline::sweep(&client, &source, &dest, copy_only, usize::try_from(concurrency)?, &progress(global))
                    .await?;
            let mut text = format!(
                "{} listed under {source}: {} moved, {} copied, {} already moved, {} skipped, {} failed ({} bytes, {:.2} s)\n",
                tally.listed,
                tally.moved,
                tally.copied,
                tally.already_moved,
                tally.skipped,
                tally.failed,
                tally.bytes,
                tally.seconds
            );
            for failure in &tally.failures {
                text.push_str(&format!("failed: {failure}\n"));
            }
            let failed = tally.failed > 0;
            Ok(Finished { json: serde_json::to_value(&tally)?, text, failed })
        }
        Command::Backfill { source, manifest, report, stack, function_arn, role_arn, account_id, list_concurrency } => {
            let client =
                load_client_for(&ClientSettings::from_env(), global.profile.as_deref(), global.endpoint_url.as_deref())
                    .await;
            let targets = backfill::BackfillTargets { stack, function_arn, role_arn, account_id };
            let plan = backfill::backfill(
                &client,
                &source,
                &manifest,
                &report,
                &targets,
                usize::try_from(list_concurrency)?,
                &progress(global),
            )
            .await?;
            let text = format!(
                "{} objects ({} bytes) under {} listed into {} (ETag {}).\n\
                 Submit the S3 Batch Operations job that moves them with the mover:\n\n{}\n\n\
                 The completion report goes under {}.\n",
                plan.objects, plan.bytes, plan.source, plan.manifest.url, plan.manifest.etag, plan.command, plan.report
            );
            Ok(Finished { json: serde_json::to_value(&plan)?, text, failed: false })
        }
        Command::Serve { root, port, latency_ms, fault_rate } => {
            anyhow::ensure!((0.0..=1.0).contains(&fault_rate), "--fault-rate {fault_rate} must be from 0 to 1");
            let mut options = local_s3::Options::new(&root);
            options.port = port;
            options.latency = std::time::Duration::from_millis(latency_ms);
            options.fault_rate = fault_rate;
            let server = local_s3::LocalS3::start_with(options).await?;
            // Listening before the endpoint line: a parent may signal as soon
            // as it reads it.
            let stop = StopSignal::install()?;
            println!("endpoint={}", server.endpoint());
            eprintln!(
                "serving {} (access key {}, secret key {}); Ctrl-C stops",
                root.display(),
                server.access_key(),
                server.secret_key()
            );
            stop.wait().await;
            let counters = json!({"requests": server.counters(), "faults": server.faults_injected()});
            server.shutdown().await;
            Ok(Finished { text: format!("{counters}\n"), json: counters, failed: false })
        }
        Command::Cost { objects_per_day, merge_files, batch_size, architecture, delivery, mover_batch_size } => {
            let architecture = if architecture == "x86_64" { Architecture::X86_64 } else { Architecture::Arm64 };
            let delivery = if delivery == "sqs" { Delivery::Sqs } else { Delivery::Direct };
            let per_invocation = if delivery == Delivery::Sqs { mover_batch_size } else { 1 };
            let table = cost::prices();
            let measured = cost::measured();
            let mover_at = |objects_per_day: f64, days: f64, delivery: Delivery, per_invocation: u32| {
                let ms = measured.mover.ms_for(per_invocation).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--mover-batch-size {per_invocation}: no measured duration for {per_invocation} objects per invocation; measured: {:?}",
                        measured.mover.measured_batch_sizes()
                    )
                })?;
                anyhow::Ok(cost::mover_month(
                    &table,
                    &MoverAssumptions {
                        objects_per_day,
                        days,
                        delivery,
                        objects_per_invocation: f64::from(per_invocation),
                        ms_per_invocation: ms,
                        memory_mb: measured.mover.memory_mb,
                        architecture,
                    },
                ))
            };
            let mover = mover_at(objects_per_day as f64, 30.0, delivery, per_invocation)?;
            let modes = [(Delivery::Direct, 1), (Delivery::Sqs, 10), (Delivery::Sqs, 100)];
            let mut per_thousand = serde_json::Map::new();
            let mut modes_text = String::from("mover per 1,000 objects, by delivery mode:\n");
            for (mode, per_invocation) in modes {
                let estimate = mover_at(1000.0, 1.0, mode, per_invocation)?;
                let name = match mode {
                    Delivery::Direct => "direct".to_owned(),
                    Delivery::Sqs => format!("sqs_batch_{per_invocation}"),
                };
                modes_text.push_str(&format!(
                    "  {name:<14} S3 ${:.6}  Lambda ${:.6}  SQS ${:.6}  total ${:.6}\n",
                    estimate.dollars_of("S3"),
                    estimate.dollars_of("Lambda"),
                    estimate.dollars_of("SQS"),
                    estimate.total_dollars
                ));
                per_thousand.insert(name, serde_json::to_value(&estimate)?);
            }
            let merge = cost::merge_run(
                &table,
                &measured.merge_assumptions(merge_files as f64, batch_size as f64, architecture),
            );
            let mover_points: Vec<String> = measured
                .mover
                .per_invocation
                .iter()
                .map(|d| format!("{} ms for {}", d.ms_per_invocation, d.objects_per_invocation))
                .collect();
            let text = format!(
                "{}{}{modes_text}durations measured {} (mover at {} MB: {} object(s) per invocation; csv-merger at {} MB: {} ms per {}-file batch, scaled to {batch_size} files; batch-generator at {} MB: {} ms per {} files and results-aggregator at {} MB: {} ms per {} batches, scaled to the run): {}\n",
                estimate_text(
                    &format!(
                        "mover, {objects_per_day} objects a day, per 30-day month, delivery {}",
                        match delivery {
                            Delivery::Direct => "direct".to_owned(),
                            Delivery::Sqs => format!("sqs in batches of {per_invocation}"),
                        }
                    ),
                    &mover
                ),
                estimate_text(&format!("one merge of {merge_files} files"), &merge),
                measured.date,
                measured.mover.memory_mb,
                mover_points.join(", "),
                measured.csv_merger.memory_mb,
                measured.csv_merger.ms_per_batch,
                measured.csv_merger.files_per_batch,
                measured.batch_generator.memory_mb,
                measured.batch_generator.ms,
                measured.batch_generator.units,
                measured.results_aggregator.memory_mb,
                measured.results_aggregator.ms,
                measured.results_aggregator.units,
                measured.source,
            );
            Ok(Finished {
                json: json!({
                    "mover_month": mover,
                    "merge_run": merge,
                    "mover_per_1000_objects": per_thousand,
                    "durations": measured,
                }),
                text,
                failed: false,
            })
        }
    }
}

/// SIGTERM and Ctrl-C, caught from the moment this is made.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use anyhow::Context;
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `merge-<unix seconds>-<8 hex digits>`: two runs started in the same
/// second get different folders (the random part comes from the standard
/// library's per-process random hasher seed, mixed with the time and pid).
pub fn default_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("merge-{}-{:08x}", now.as_secs(), hasher.finish() as u32)
}
