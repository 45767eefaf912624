//! The mover Lambda's handler: an object-created event in (straight from S3,
//! through SQS, or from EventBridge) or an S3 Batch Operations job's tasks,
//! every object it names moved to the destination by s3mm-core's safe move,
//! one log line per object and one CloudWatch EMF metrics line per
//! invocation out. `main.rs` only wires this
//! to the Lambda runtime, so tests drive the same code in-process.

pub mod event;
pub mod metrics;

use aws_lambda_events::s3::batch_job::{S3BatchJobResponse, S3BatchJobResult};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use event::{BatchJob, EventError, Invocation, ObjectRef};
use futures::{StreamExt, stream};
use s3mm_core::{KeptReason, MoveOutcome, MoveRequest, Mover};
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{} of {total} objects were not moved; first: {first}", tally.failed)]
    Failed { total: usize, first: String, tally: Tally },
}

impl HandlerError {
    /// What was done before the invocation failed, for metrics.
    pub fn tally(&self) -> Tally {
        match self {
            Self::Event(_) => Tally { failed: 1, ..Tally::default() },
            Self::Failed { tally, .. } => *tally,
        }
    }

    /// The `errorType` Lambda reports, for alarms and retry policies.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Event(_) => "MalformedEvent",
            Self::Failed { .. } => "MoveFailed",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: err.error_type().to_owned(), error_message: err.to_string() }
    }
}

/// Counts of one invocation, returned to direct invocations and emitted as
/// metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub moved: usize,
    pub copied: usize,
    pub already_moved: usize,
    pub skipped: usize,
    pub failed: usize,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, result: &Result<MoveOutcome, Failure>) {
        match result {
            Ok(MoveOutcome::Moved { bytes, .. }) => {
                self.moved += 1;
                self.bytes += bytes.unwrap_or(0);
            }
            Ok(MoveOutcome::Copied { bytes, .. }) => {
                self.copied += 1;
                self.bytes += bytes.unwrap_or(0);
            }
            Ok(MoveOutcome::AlreadyMoved { .. }) => self.already_moved += 1,
            Ok(MoveOutcome::Skipped { .. }) => self.skipped += 1,
            Ok(MoveOutcome::SourceMissing { .. }) | Err(_) => self.failed += 1,
        }
    }
}

/// Why one object was not moved, and whether a later try may succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub transient: bool,
}

/// S3 Batch Operations' result codes: it redrives `TemporaryFailure` tasks
/// before the job completes and reports `PermanentFailure` ones as failed.
const SUCCEEDED: &str = "Succeeded";
const TEMPORARY_FAILURE: &str = "TemporaryFailure";
const PERMANENT_FAILURE: &str = "PermanentFailure";

/// One task's answer: its result code and the line the completion report shows.
fn batch_answer(object: &ObjectRef, result: &Result<MoveOutcome, Failure>) -> (&'static str, String) {
    match result {
        Ok(MoveOutcome::Moved { dest_bucket, dest_key, .. }) => {
            (SUCCEEDED, format!("moved to s3://{dest_bucket}/{dest_key}"))
        }
        Ok(MoveOutcome::Copied { dest_bucket, dest_key, kept, .. }) => {
            let why = match kept {
                KeptReason::CopyOnly => "DELETE_SOURCE is false",
                KeptReason::ReplacedAfterCopy => "a new object was written to the source key after the copy",
            };
            (SUCCEEDED, format!("copied to s3://{dest_bucket}/{dest_key}; the source was kept: {why}"))
        }
        Ok(MoveOutcome::AlreadyMoved { dest_bucket, dest_key }) => {
            (SUCCEEDED, format!("already moved: s3://{dest_bucket}/{dest_key} holds it and the source is gone"))
        }
        Ok(MoveOutcome::Skipped { reason }) => (SUCCEEDED, format!("skipped: {reason}")),
        Ok(MoveOutcome::SourceMissing { dest_bucket, dest_key }) => (
            PERMANENT_FAILURE,
            format!(
                "s3://{}/{} does not exist and s3://{dest_bucket}/{dest_key} does not hold it",
                object.bucket, object.key
            ),
        ),
        Err(failure) if failure.transient => (TEMPORARY_FAILURE, failure.message.clone()),
        Err(failure) => (PERMANENT_FAILURE, failure.message.clone()),
    }
}

/// The result of one invocation: what to answer and what happened.
#[derive(Debug)]
pub struct Response {
    pub body: Value,
    pub tally: Tally,
}

pub struct Handler {
    mover: Mover,
    concurrency: usize,
}

impl Handler {
    pub fn new(mover: Mover) -> Self {
        let concurrency = mover.config().fetch_concurrency;
        Self { mover, concurrency }
    }

    /// Handles one invocation. SQS batches always answer with
    /// `batchItemFailures` naming exactly the messages to retry; direct and
    /// EventBridge invocations fail as a whole when any object failed, so
    /// Lambda's asynchronous retries and failure destination take over.
    pub async fn handle(&self, payload: &Value, request_id: &str) -> Result<Response, HandlerError> {
        match event::parse(payload)? {
            Invocation::TestEvent => {
                tracing::info!(request_id, "s3:TestEvent acknowledged; nothing to move");
                Ok(Response { body: serde_json::json!({"test_event": true}), tally: Tally::default() })
            }
            Invocation::S3(objects) => self.handle_direct(objects, request_id).await,
            Invocation::EventBridge(object) => self.handle_direct(vec![object], request_id).await,
            Invocation::BatchOperations(job) => Ok(self.handle_batch_job(job, request_id).await),
            Invocation::Sqs(items) => {
                let mut tally = Tally::default();
                let mut owners = Vec::new();
                let mut objects = Vec::new();
                let mut failed_messages = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match &item.objects {
                        Ok(list) => {
                            owners.extend(std::iter::repeat_n(index, list.len()));
                            objects.extend(list.iter().cloned());
                        }
                        Err(err) => {
                            tracing::error!(request_id, message_id = %item.message_id, error = %err, "message not understood; left for retry and the DLQ");
                            tally.failed += 1;
                            failed_messages.push(index);
                        }
                    }
                }
                let results = self.move_all(objects, request_id).await;
                for (owner, result) in owners.into_iter().zip(&results) {
                    tally.add(result);
                    if matches!(result, Err(_) | Ok(MoveOutcome::SourceMissing { .. })) {
                        failed_messages.push(owner);
                    }
                }
                failed_messages.sort_unstable();
                failed_messages.dedup();
                let mut response = SqsBatchResponse::default();
                response.batch_item_failures = failed_messages
                    .into_iter()
                    .map(|index| {
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = items[index].message_id.clone();
                        failure
                    })
                    .collect();
                let body = serde_json::to_value(&response).unwrap_or(Value::Null);
                Ok(Response { body, tally })
            }
        }
    }

    /// Answers every task of an S3 Batch Operations invocation, in the
    /// invocation's schema; the invocation itself never fails, so Batch
    /// Operations reads each task's own result code.
    async fn handle_batch_job(&self, job: BatchJob, request_id: &str) -> Response {
        let mut tally = Tally::default();
        let mut answers: Vec<(&'static str, String)> = Vec::with_capacity(job.tasks.len());
        let mut owners = Vec::new();
        let mut objects = Vec::new();
        for (index, task) in job.tasks.iter().enumerate() {
            match &task.object {
                Ok(object) => {
                    owners.push(index);
                    objects.push(object.clone());
                    answers.push((PERMANENT_FAILURE, String::new()));
                }
                Err(reason) => {
                    tracing::error!(request_id, task_id = %task.task_id, reason = %reason, "batch task names no object");
                    tally.failed += 1;
                    answers.push((PERMANENT_FAILURE, reason.clone()));
                }
            }
        }
        let results = self.move_all(objects.clone(), request_id).await;
        for ((owner, object), result) in owners.into_iter().zip(&objects).zip(&results) {
            tally.add(result);
            answers[owner] = batch_answer(object, result);
        }
        let mut response = S3BatchJobResponse::default();
        response.invocation_schema_version = Some(job.schema_version);
        // Every task is answered; a task left out would be a failure.
        response.treat_missing_keys_as = Some(PERMANENT_FAILURE.to_owned());
        response.invocation_id = Some(job.invocation_id);
        response.results = job
            .tasks
            .iter()
            .zip(answers)
            .map(|(task, (code, text))| {
                let mut result = S3BatchJobResult::default();
                result.task_id = Some(task.task_id.clone());
                result.result_code = Some(code.to_owned());
                result.result_string = Some(text);
                result
            })
            .collect();
        let body = serde_json::to_value(&response).unwrap_or(Value::Null);
        Response { body, tally }
    }

    async fn handle_direct(&self, objects: Vec<ObjectRef>, request_id: &str) -> Result<Response, HandlerError> {
        let total = objects.len();
        let results = self.move_all(objects.clone(), request_id).await;
        let mut tally = Tally::default();
        let mut first_failure = None;
        for (object, result) in objects.iter().zip(&results) {
            tally.add(result);
            if first_failure.is_none() {
                first_failure = match result {
                    Err(err) => Some(err.message.clone()),
                    Ok(MoveOutcome::SourceMissing { dest_key, .. }) => Some(format!(
                        "s3://{}/{} is gone and the destination {dest_key} does not hold it",
                        object.bucket, object.key
                    )),
                    Ok(_) => None,
                };
            }
        }
        if let Some(first) = first_failure {
            return Err(HandlerError::Failed { total, first, tally });
        }
        Ok(Response { body: serde_json::to_value(tally).unwrap_or(Value::Null), tally })
    }

    /// Moves objects concurrently, results in input order, one log line each.
    async fn move_all(&self, objects: Vec<ObjectRef>, request_id: &str) -> Vec<Result<MoveOutcome, Failure>> {
        stream::iter(objects)
            .map(|object| async move {
                let started = Instant::now();
                let request =
                    MoveRequest { bucket: object.bucket, key: object.key, etag: object.etag, size: object.size };
                let result = self
                    .mover
                    .move_object(&request)
                    .await
                    .map_err(|err| Failure { message: err.to_string(), transient: err.is_transient() });
                log_outcome(&request, &result, started.elapsed().as_millis(), request_id);
                result
            })
            .buffered(self.concurrency.max(1))
            .collect()
            .await
    }
}

fn log_outcome(request: &MoveRequest, result: &Result<MoveOutcome, Failure>, ms: u128, request_id: &str) {
    let bucket = request.bucket.as_str();
    let key = request.key.as_str();
    match result {
        Ok(
            MoveOutcome::Moved { dest_bucket, dest_key, bytes }
            | MoveOutcome::Copied { dest_bucket, dest_key, bytes, .. },
        ) => {
            let outcome = result.as_ref().map(MoveOutcome::name).unwrap_or_default();
            tracing::info!(request_id, bucket, key, dest_bucket, dest_key, outcome, bytes, ms, "object moved");
        }
        Ok(MoveOutcome::AlreadyMoved { dest_bucket, dest_key }) => {
            tracing::info!(
                request_id,
                bucket,
                key,
                dest_bucket,
                dest_key,
                outcome = "AlreadyMoved",
                ms,
                "already moved"
            );
        }
        Ok(MoveOutcome::SourceMissing { dest_bucket, dest_key }) => {
            tracing::error!(
                request_id,
                bucket,
                key,
                dest_bucket,
                dest_key,
                outcome = "SourceMissing",
                ms,
                "source missing and not at the destination"
            );
        }
        Ok(MoveOutcome::Skipped { reason }) => {
            tracing::info!(request_id, bucket, key, outcome = "Skipped", reason = %reason, ms, "skipped");
        }
        Err(failure) => {
            let error = failure.message.as_str();
            tracing::error!(request_id, bucket, key, outcome = "Failed", error, ms, "move failed; source kept");
        }
    }
}
