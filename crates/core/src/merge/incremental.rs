//! Incremental runs: each run of a source → destination stream merges the
//! files no earlier completed run merged, every file exactly once across
//! runs, whatever order keys arrive in.
//!
//! The state is one small JSON document per stream, under the destination
//! ([`state_key`]); its size does not grow with the files merged. It holds a
//! watermark, `merged_before_ms`: every file whose LastModified is before it
//! was merged by a completed run. A run merges the window
//! `[merged_before_ms, before_ms)`, where `before_ms` is the run's start
//! less `settle_seconds` (default 60), cut to a whole second because S3
//! reports LastModified in whole seconds. A file uploaded while the run goes
//! on, or while a slow upload of it was still in flight, is last modified
//! after the window and falls to a later run; the settle time covers
//! uploads that started before the window's end but finished after the
//! listing passed their key.
//!
//! The run holds the stream's lock (`running` in the state) from the
//! batch-generator to the aggregator; it is taken and released with
//! conditional writes (`If-None-Match` / `If-Match`), so two runs cannot
//! both take it. A second run is refused, naming the first. Only a run in
//! which every batch succeeded moves the watermark; a failed run's outputs
//! are removed and its window is merged again by the next run. A run that
//! never reached its aggregator (an aborted execution) holds the lock until
//! it expires ([`LOCK_LEASE_MS`]) or a run names it in `takeover`; its
//! outputs are then removed the same way.

use super::documents::OutputEntry;
use super::request::MergeRequest;
use super::{MergeError, Requests, count};
use crate::delete::delete_many;
use crate::error::GetError;
use crate::fetch::get_object_with_etag;
use crate::list::{ListOptions, list_objects};
use crate::upload::put_bytes_if_unchanged;
use aws_sdk_s3::Client;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

pub const DEFAULT_SETTLE_SECONDS: u64 = 60;
/// Longest a run may hold its stream's lock: past it, the next run takes it
/// over. Far longer than any run (a 100M-file merge takes about five hours).
pub const LOCK_LEASE_MS: u64 = 12 * 3_600_000;

/// `{dest_prefix}_incremental/{source_bucket}/{source_prefix}state.json`.
pub fn state_key(dest_prefix: &str, source_bucket: &str, source_prefix: &str) -> String {
    format!("{dest_prefix}_incremental/{source_bucket}/{source_prefix}state.json")
}

/// Files last modified in `[from_ms, before_ms)` are the run's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: u64,
    pub before_ms: u64,
}

impl Window {
    /// Where a file last modified at `ms` falls: `Less` merged by an earlier
    /// run, `Equal` this run's, `Greater` left to a later run.
    pub fn place(&self, last_modified_ms: u64) -> std::cmp::Ordering {
        if last_modified_ms < self.from_ms {
            std::cmp::Ordering::Less
        } else if last_modified_ms < self.before_ms {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Greater
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRun {
    pub run_id: String,
    pub started_at_ms: u64,
    pub expires_at_ms: u64,
    pub window: Window,
}

/// The stream's state document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub source: String,
    pub destination: String,
    /// Every file last modified before this was merged by a completed run.
    pub merged_before_ms: u64,
    pub last_run: Option<String>,
    pub last_finished_at_ms: Option<u64>,
    pub running: Option<RunningRun>,
}

/// What an incremental run records in `run.json` and its report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalRun {
    pub state_key: String,
    pub window: Window,
    /// Listed files last modified at or after the window's end, left to a
    /// later run.
    pub deferred_files: u64,
    /// Listed files before the window: merged by earlier runs.
    pub earlier_files: u64,
    /// A run that held the lock without finishing, whose outputs this run
    /// removed.
    pub abandoned_run: Option<String>,
    pub removed_outputs: u64,
    /// Whether the watermark moved to the window's end (every batch done).
    #[serde(default)]
    pub advanced: bool,
}

struct Versioned {
    state: StreamState,
    etag: Option<String>,
}

async fn read_state(client: &Client, bucket: &str, key: &str) -> Result<Versioned, MergeError> {
    match get_object_with_etag(client, bucket, key).await {
        Ok((body, etag)) => {
            let state = serde_json::from_slice(&body).map_err(|err| MergeError::BadDocument {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                what: "incremental state",
                reason: err.to_string(),
            })?;
            Ok(Versioned { state, etag })
        }
        // No run of this stream yet.
        Err(GetError::NoSuchKey { .. }) => Ok(Versioned { state: StreamState::default(), etag: None }),
        Err(err) => Err(err.into()),
    }
}

/// Writes the state only if it is still the version read: `false` when
/// another run wrote it in between.
async fn write_state(
    client: &Client,
    bucket: &str,
    key: &str,
    state: &StreamState,
    read: Option<&str>,
) -> Result<bool, MergeError> {
    let body = serde_json::to_vec_pretty(state).map_err(|err| MergeError::BadDocument {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        what: "incremental state",
        reason: err.to_string(),
    })?;
    Ok(put_bytes_if_unchanged(client, bucket, key, body, "application/json", read).await?)
}

/// Takes the stream's lock for the run and returns its window. A retried
/// batch-generator of the same run finds the lock its own and gets the same
/// window.
pub(super) async fn begin(
    client: &Client,
    run: &MergeRequest,
    now_ms: u64,
    requests: &mut Requests,
) -> Result<IncrementalRun, MergeError> {
    let key = state_key(&run.dest_prefix, &run.source_bucket, &run.source_prefix);
    let bucket = run.dest_bucket.as_str();
    count(requests, "GetObject", 1);
    let Versioned { mut state, etag } = read_state(client, bucket, &key).await?;
    let mut abandoned = None;
    if let Some(running) = &state.running {
        if running.run_id == run.run_id {
            return Ok(IncrementalRun { state_key: key, window: running.window, ..IncrementalRun::default() });
        }
        let expired = now_ms >= running.expires_at_ms;
        if !expired && run.takeover.as_deref() != Some(running.run_id.as_str()) {
            return Err(in_progress(bucket, &key, running));
        }
        abandoned = Some(running.run_id.clone());
    }
    if state.last_run.as_ref() == Some(&run.run_id) {
        return Err(MergeError::InvalidInput {
            field: "run_id",
            reason: format!(
                "{:?} already completed an incremental run of this stream; each run needs its own run_id (the \
                 execution name is one)",
                run.run_id
            ),
        });
    }
    let from_ms = state.merged_before_ms;
    let end = now_ms.saturating_sub(run.settle_seconds.saturating_mul(1000));
    let window = Window { from_ms, before_ms: (end - end % 1000).max(from_ms) };
    state.source = format!("s3://{}/{}", run.source_bucket, run.source_prefix);
    state.destination = format!("s3://{}/{}", run.dest_bucket, run.dest_prefix);
    state.running = Some(RunningRun {
        run_id: run.run_id.clone(),
        started_at_ms: now_ms,
        expires_at_ms: now_ms + LOCK_LEASE_MS,
        window,
    });
    count(requests, "PutObject", 1);
    if !write_state(client, bucket, &key, &state, etag.as_deref()).await? {
        // Another run took the lock between our read and our write.
        let current = read_state(client, bucket, &key).await?.state;
        return Err(match current.running {
            Some(running) => in_progress(bucket, &key, &running),
            None => MergeError::LockLost { bucket: bucket.to_owned(), key, run_id: run.run_id.to_owned() },
        });
    }
    let mut run_record =
        IncrementalRun { state_key: key, window, abandoned_run: abandoned.clone(), ..Default::default() };
    if let Some(abandoned) = abandoned {
        run_record.removed_outputs =
            remove_outputs_under(client, bucket, &format!("{}{abandoned}/", run.dest_prefix), requests).await?;
    }
    Ok(run_record)
}

fn in_progress(bucket: &str, key: &str, running: &RunningRun) -> MergeError {
    MergeError::RunInProgress {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        run_id: running.run_id.clone(),
        started_at_ms: running.started_at_ms,
        expires_at_ms: running.expires_at_ms,
    }
}

/// How a run ended.
pub(super) enum Outcome<'a> {
    /// Every batch done: the watermark moves to the window's end.
    Complete { now_ms: u64 },
    /// Some batch failed (or the listing did): these outputs are removed,
    /// and the window is merged again by the next run.
    Failed { outputs: &'a [OutputEntry] },
}

/// Ends the run as `outcome` says and releases the lock. Repeating it after
/// it succeeded changes nothing.
pub(super) async fn finish(
    client: &Client,
    bucket: &str,
    run_id: &str,
    record: &mut IncrementalRun,
    outcome: Outcome<'_>,
    requests: &mut Requests,
) -> Result<(), MergeError> {
    let complete = matches!(outcome, Outcome::Complete { .. });
    let key = record.state_key.clone();
    count(requests, "GetObject", 1);
    let Versioned { mut state, etag } = read_state(client, bucket, &key).await?;
    match &state.running {
        Some(running) if running.run_id == run_id => {}
        // Already finished by an earlier attempt of this step.
        None if state.last_run.as_deref() == Some(run_id) || !complete => {
            record.advanced = complete;
            return Ok(());
        }
        _ => return Err(MergeError::LockLost { bucket: bucket.to_owned(), key, run_id: run_id.to_owned() }),
    }
    match outcome {
        Outcome::Complete { now_ms } => {
            state.merged_before_ms = record.window.before_ms;
            state.last_run = Some(run_id.to_owned());
            state.last_finished_at_ms = Some(now_ms);
        }
        Outcome::Failed { outputs } => {
            let keys: Vec<String> = outputs.iter().map(|o| o.key.clone()).collect();
            count(requests, "DeleteObjects", keys.len().div_ceil(crate::delete::MAX_KEYS_PER_DELETE) as u64);
            let report = delete_many(client, bucket, keys, 4).await;
            record.removed_outputs += report.deleted as u64;
        }
    }
    state.running = None;
    count(requests, "PutObject", 1);
    if !write_state(client, bucket, &key, &state, etag.as_deref()).await? {
        return Err(MergeError::LockLost { bucket: bucket.to_owned(), key, run_id: run_id.to_owned() });
    }
    record.advanced = complete;
    Ok(())
}

/// Deletes the merged outputs (`merged-NNNNN.csv[.gz]`, `merged.csv[.gz]`)
/// under an abandoned run's prefix; its manifests and results stay as a
/// record of what it did.
async fn remove_outputs_under(
    client: &Client,
    bucket: &str,
    run_prefix: &str,
    requests: &mut Requests,
) -> Result<u64, MergeError> {
    let keys: Vec<String> = list_objects(client, bucket, &format!("{run_prefix}merged"), ListOptions::default())
        .map_ok(|o| o.key)
        .try_collect()
        .await?;
    count(requests, "ListObjectsV2", 1);
    count(requests, "DeleteObjects", keys.len().div_ceil(crate::delete::MAX_KEYS_PER_DELETE) as u64);
    Ok(delete_many(client, bucket, keys, 4).await.deleted as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_half_open() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let w = Window { from_ms: 1_000, before_ms: 3_000 };
        assert_eq!(w.place(999), Less);
        assert_eq!(w.place(1_000), Equal);
        assert_eq!(w.place(2_999), Equal);
        assert_eq!(w.place(3_000), Greater);
    }

    #[test]
    fn the_state_key_names_the_stream() {
        assert_eq!(state_key("merged/", "b-in", "csvs/"), "merged/_incremental/b-in/csvs/state.json");
        assert_eq!(state_key("", "b-in", ""), "_incremental/b-in/state.json");
    }
}
