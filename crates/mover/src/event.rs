//! The shapes an object-created notification reaches the mover in (S3
//! notification, SQS messages holding either kind of event, EventBridge,
//! S3 Batch Operations tasks), reduced to lists of objects. Parsing never panics: anything that is
//! not one of the shapes is an error that says what arrived.

use s3mm_core::keys::{KeyError, decode_event_key};
use serde::Deserialize;
use serde_json::Value;

/// One object an event announced, its key decoded to the exact S3 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub etag: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error(
        "unrecognised event: expected an S3 notification (Records[].s3), SQS messages (Records[].body) or an EventBridge \"Object Created\" event; received {received}"
    )]
    Unrecognised { received: String },
    #[error("record {index} is malformed: {reason}")]
    MalformedRecord { index: usize, reason: String },
    #[error("record {index}: {source}")]
    BadKey { index: usize, source: KeyError },
    #[error("SQS message {message_id} body is not an S3 notification or EventBridge event: {reason}")]
    MalformedMessage { message_id: String, reason: String },
    #[error("S3 Batch Operations event {invocation_id:?} is malformed: {reason}")]
    MalformedBatchJob { invocation_id: String, reason: String },
}

/// A parsed invocation.
#[derive(Debug)]
pub enum Invocation {
    /// S3 notification delivered straight to Lambda.
    S3(Vec<ObjectRef>),
    /// Messages from an SQS queue; each is answered on its own.
    Sqs(Vec<SqsItem>),
    EventBridge(ObjectRef),
    /// An S3 Batch Operations "Invoke AWS Lambda function" job's tasks.
    BatchOperations(BatchJob),
    /// `s3:TestEvent`, sent once when a notification is configured.
    TestEvent,
}

/// An S3 Batch Operations invocation (schema 1.0 or 2.0): its tasks are
/// answered one by one, in the invocation schema's own response.
#[derive(Debug)]
pub struct BatchJob {
    pub schema_version: String,
    pub invocation_id: String,
    pub job_id: Option<String>,
    pub tasks: Vec<BatchTask>,
}

#[derive(Debug)]
pub struct BatchTask {
    pub task_id: String,
    /// The task's object, or why it names none (answered `PermanentFailure`).
    pub object: Result<ObjectRef, String>,
}

#[derive(Debug)]
pub struct SqsItem {
    pub message_id: String,
    /// The message's objects, or why its body could not be read.
    pub objects: Result<Vec<ObjectRef>, EventError>,
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<Value>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: NamedBucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: NamedBucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
}

/// Describes a payload in a few words for an error message, without echoing
/// its contents (which could be large or sensitive).
fn describe(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            format!("an object with keys [{}]", keys.join(", "))
        }
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::String(_) => "a string".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "null".into(),
    }
}

fn is_test_event(value: &Value) -> bool {
    value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

/// Parses an S3 notification's records. Records that are not object-created
/// events (a misconfigured notification sending deletes) are errors: moving
/// on a delete event would report a missing source for every object.
fn s3_records(records: &[Value]) -> Result<Vec<ObjectRef>, EventError> {
    records
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let record: S3Record = serde_json::from_value(raw.clone())
                .map_err(|err| EventError::MalformedRecord { index, reason: err.to_string() })?;
            if let Some(name) = &record.event_name
                && !name.starts_with("ObjectCreated:")
            {
                return Err(EventError::MalformedRecord {
                    index,
                    reason: format!("eventName {name:?} is not an ObjectCreated event"),
                });
            }
            let key = decode_event_key(&record.s3.object.key).map_err(|source| EventError::BadKey { index, source })?;
            Ok(ObjectRef {
                bucket: record.s3.bucket.name,
                key,
                etag: record.s3.object.etag,
                size: record.s3.object.size,
            })
        })
        .collect()
}

/// An SQS body holds an S3 notification, possibly wrapped in an SNS
/// envelope (S3 -> SNS -> SQS fan-out), an EventBridge "Object Created"
/// event (an EventBridge rule targeting the queue: the stack's
/// DeliveryMode=sqs with existing buckets), or an `s3:TestEvent`.
fn sqs_body(message_id: &str, body: Option<&str>) -> Result<Vec<ObjectRef>, EventError> {
    let malformed = |reason: String| EventError::MalformedMessage { message_id: message_id.to_owned(), reason };
    let body = body.ok_or_else(|| malformed("no body".into()))?;
    let mut value: Value = serde_json::from_str(body).map_err(|err| malformed(format!("not JSON: {err}")))?;
    if value.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = value.get("Message").and_then(Value::as_str)
    {
        value = serde_json::from_str(inner).map_err(|err| malformed(format!("SNS Message is not JSON: {err}")))?;
    }
    if is_test_event(&value) {
        return Ok(Vec::new());
    }
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge_object(&value).map(|object| vec![object]).map_err(malformed);
    }
    let notification: S3Notification = serde_json::from_value(value.clone())
        .map_err(|_| malformed(format!("expected Records, got {}", describe(&value))))?;
    s3_records(&notification.records).map_err(|err| malformed(err.to_string()))
}

/// Schema 1.0 names the bucket by ARN, 2.0 by name; both are read from
/// either schema. The aws_lambda_events 1.x task type has no `s3Bucket`, so
/// the event is read here (its response type answers).
#[derive(Deserialize)]
struct BatchEvent {
    #[serde(rename = "invocationSchemaVersion")]
    schema_version: String,
    #[serde(rename = "invocationId")]
    invocation_id: String,
    #[serde(default)]
    job: Option<BatchEventJob>,
    tasks: Vec<Value>,
}

#[derive(Deserialize)]
struct BatchEventJob {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct BatchEventTask {
    #[serde(rename = "s3Key")]
    key: Option<String>,
    #[serde(rename = "s3Bucket", default)]
    bucket: Option<String>,
    #[serde(rename = "s3BucketArn", default)]
    bucket_arn: Option<String>,
}

/// S3 Batch Operations URL-encodes keys (as the CSV manifest holds them);
/// they are decoded the way S3 event keys are, `+` as a space, as AWS's
/// Powertools does: S3 Inventory manifests write a space as `+`, and
/// `s3mm backfill` writes `+` and space as `%2B` and `%20`, which read the
/// same either way.
fn batch_job(payload: &Value) -> Result<BatchJob, EventError> {
    let invocation_id = payload.get("invocationId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let malformed = |reason: String| EventError::MalformedBatchJob { invocation_id: invocation_id.clone(), reason };
    let event: BatchEvent = serde_json::from_value(payload.clone()).map_err(|err| malformed(err.to_string()))?;
    if !matches!(event.schema_version.as_str(), "1.0" | "2.0") {
        return Err(malformed(format!("invocationSchemaVersion {:?} is not 1.0 or 2.0", event.schema_version)));
    }
    let mut tasks = Vec::with_capacity(event.tasks.len());
    for (index, raw) in event.tasks.iter().enumerate() {
        let task_id = raw
            .get("taskId")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("task {index} has no taskId, so it cannot be answered")))?
            .to_owned();
        let object = serde_json::from_value::<BatchEventTask>(raw.clone())
            .map_err(|err| format!("task is malformed: {err}"))
            .and_then(batch_object);
        tasks.push(BatchTask { task_id, object });
    }
    Ok(BatchJob {
        schema_version: event.schema_version,
        invocation_id: event.invocation_id,
        job_id: event.job.and_then(|job| job.id),
        tasks,
    })
}

fn batch_object(task: BatchEventTask) -> Result<ObjectRef, String> {
    let bucket = match (task.bucket, task.bucket_arn) {
        (Some(bucket), _) if !bucket.is_empty() => bucket,
        // arn:aws:s3:::bucket (AWS's own examples also show region and account).
        (_, Some(arn)) if arn.starts_with("arn:") => match arn.rsplit(':').next() {
            Some(bucket) if !bucket.is_empty() => bucket.to_owned(),
            _ => return Err(format!("s3BucketArn {arn:?} names no bucket")),
        },
        (_, Some(arn)) => return Err(format!("s3BucketArn {arn:?} is not an ARN")),
        (_, None) => return Err("the task has neither s3Bucket nor s3BucketArn".to_owned()),
    };
    let raw = task.key.ok_or_else(|| "the task has no s3Key".to_owned())?;
    let key = decode_event_key(&raw).map_err(|err| format!("s3Key {raw:?}: {err}"))?;
    Ok(ObjectRef { bucket, key, etag: None, size: None })
}

/// Parses any payload the mover can receive.
pub fn parse(payload: &Value) -> Result<Invocation, EventError> {
    if is_test_event(payload) {
        return Ok(Invocation::TestEvent);
    }
    if payload.get("invocationSchemaVersion").is_some() && payload.get("tasks").is_some() {
        return batch_job(payload).map(Invocation::BatchOperations);
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let from_sqs = records.first().and_then(|r| r.get("eventSource")).and_then(Value::as_str) == Some("aws:sqs");
        if from_sqs {
            let items = records
                .iter()
                .enumerate()
                .map(|(index, record)| {
                    let message_id = record.get("messageId").and_then(Value::as_str).map(str::to_owned);
                    match message_id {
                        Some(message_id) => {
                            let objects = sqs_body(&message_id, record.get("body").and_then(Value::as_str));
                            Ok(SqsItem { message_id, objects })
                        }
                        None => {
                            Err(EventError::MalformedRecord { index, reason: "SQS record without messageId".into() })
                        }
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Invocation::Sqs(items));
        }
        return s3_records(records).map(Invocation::S3);
    }
    if payload.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let detail_type = payload.get("detail-type").and_then(Value::as_str).unwrap_or_default();
        if detail_type != "Object Created" {
            return Err(EventError::Unrecognised { received: format!("an EventBridge {detail_type:?} event") });
        }
        return eventbridge_object(payload)
            .map(Invocation::EventBridge)
            .map_err(|reason| EventError::MalformedRecord { index: 0, reason });
    }
    Err(EventError::Unrecognised { received: describe(payload) })
}

/// The object of an EventBridge "Object Created" event from S3.
fn eventbridge_object(event: &Value) -> Result<ObjectRef, String> {
    let detail_type = event.get("detail-type").and_then(Value::as_str).unwrap_or_default();
    if detail_type != "Object Created" {
        return Err(format!("an EventBridge {detail_type:?} event, not \"Object Created\""));
    }
    let detail: EventBridgeDetail = serde_json::from_value(event.get("detail").cloned().unwrap_or(Value::Null))
        .map_err(|err| format!("detail: {err}"))?;
    // EventBridge carries the key as S3 holds it, not form-encoded.
    Ok(ObjectRef {
        bucket: detail.bucket.name,
        key: detail.object.key,
        etag: detail.object.etag,
        size: detail.object.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_event(key: &str) -> Value {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 3, "eTag": "abc"}}}]})
    }

    #[test]
    fn s3_notification_keys_are_decoded() {
        let Ok(Invocation::S3(objects)) = parse(&s3_event("in/caf%C3%A9+au+lait%2B.csv")) else { panic!("s3") };
        assert_eq!(objects[0].key, "in/café au lait+.csv");
        assert_eq!(objects[0].etag.as_deref(), Some("abc"));
        assert_eq!(objects[0].size, Some(3));
    }

    #[test]
    fn test_events_are_acknowledged() {
        let event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"});
        assert!(matches!(parse(&event), Ok(Invocation::TestEvent)));
    }

    #[test]
    fn sqs_messages_are_parsed_one_by_one() {
        let good = s3_event("a+b").to_string();
        let sns = json!({"Type": "Notification", "Message": s3_event("c").to_string()}).to_string();
        let event = json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": good},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": "{not json"},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": sns},
            {"eventSource": "aws:sqs", "messageId": "m4", "body": json!({"Event": "s3:TestEvent"}).to_string()},
        ]});
        let Ok(Invocation::Sqs(items)) = parse(&event) else { panic!("sqs") };
        assert_eq!(items[0].objects.as_ref().expect("good")[0].key, "a b");
        assert!(
            matches!(&items[1].objects, Err(EventError::MalformedMessage { message_id, .. }) if message_id == "m2")
        );
        assert_eq!(items[2].objects.as_ref().expect("sns")[0].key, "c");
        assert!(items[3].objects.as_ref().expect("test event").is_empty());
    }

    #[test]
    fn eventbridge_events_in_sqs_messages() {
        let created = json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "in/a+b%20c", "size": 2, "etag": "e"}}});
        let deleted = json!({"source": "aws.s3", "detail-type": "Object Deleted",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}});
        let event = json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": created.to_string()},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": deleted.to_string()},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": json!({"source": "aws.s3", "detail-type": "Object Created"}).to_string()},
        ]});
        let Ok(Invocation::Sqs(items)) = parse(&event) else { panic!("sqs") };
        let objects = items[0].objects.as_ref().expect("created");
        assert_eq!(
            objects,
            &vec![ObjectRef { bucket: "b".into(), key: "in/a+b%20c".into(), etag: Some("e".into()), size: Some(2) }]
        );
        let err = items[1].objects.as_ref().expect_err("deleted").to_string();
        assert!(err.contains("m2") && err.contains("Object Deleted"), "{err}");
        let err = items[2].objects.as_ref().expect_err("no detail").to_string();
        assert!(err.contains("m3") && err.contains("detail"), "{err}");
    }

    #[test]
    fn eventbridge_keys_are_taken_as_they_are() {
        let event = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "a+b%20c", "size": 1, "etag": "e"}}});
        let Ok(Invocation::EventBridge(object)) = parse(&event) else { panic!("eventbridge") };
        assert_eq!(object.key, "a+b%20c");
    }

    #[test]
    fn batch_operations_tasks_of_both_schemas() {
        let v1 = json!({"invocationSchemaVersion": "1.0", "invocationId": "inv1", "job": {"id": "job1"},
            "tasks": [{"taskId": "t1", "s3Key": "in/caf%C3%A9+1%2B.csv", "s3VersionId": null,
                       "s3BucketArn": "arn:aws:s3:::src"}]});
        let Ok(Invocation::BatchOperations(job)) = parse(&v1) else { panic!("batch 1.0") };
        assert_eq!(
            (job.schema_version.as_str(), job.invocation_id.as_str(), job.job_id.as_deref()),
            ("1.0", "inv1", Some("job1"))
        );
        let object = job.tasks[0].object.as_ref().expect("object");
        assert_eq!((object.bucket.as_str(), object.key.as_str()), ("src", "in/café 1+.csv"));

        let v2 = json!({"invocationSchemaVersion": "2.0", "invocationId": "inv2",
            "job": {"id": "job2", "userArguments": {"k": "v"}},
            "tasks": [{"taskId": "a", "s3Key": "in/x%20y", "s3Bucket": "src"},
                      {"taskId": "b", "s3Key": "in/bad%zz", "s3Bucket": "src"},
                      {"taskId": "c", "s3Key": "in/k"},
                      {"taskId": "d", "s3BucketArn": "src", "s3Key": "in/k"}]});
        let Ok(Invocation::BatchOperations(job)) = parse(&v2) else { panic!("batch 2.0") };
        assert_eq!(job.tasks[0].object.as_ref().expect("a").key, "in/x y");
        assert!(job.tasks[1].object.as_ref().expect_err("b").contains("in/bad%zz"));
        assert!(job.tasks[2].object.as_ref().expect_err("c").contains("neither"));
        assert!(job.tasks[3].object.as_ref().expect_err("d").contains("not an ARN"));

        let unknown = json!({"invocationSchemaVersion": "3.0", "invocationId": "i", "tasks": []});
        assert!(parse(&unknown).expect_err("3.0").to_string().contains("\"3.0\""));
        let no_task_id = json!({"invocationSchemaVersion": "2.0", "invocationId": "i", "tasks": [{"s3Key": "k"}]});
        assert!(parse(&no_task_id).expect_err("no taskId").to_string().contains("no taskId"));
    }

    #[test]
    fn malformed_payloads_name_what_arrived() {
        let cases = [
            (json!({"hello": 1}), "keys [hello]"),
            (json!([1, 2]), "array of 2"),
            (json!("s"), "a string"),
            (json!({"source": "aws.s3", "detail-type": "Object Deleted"}), "Object Deleted"),
        ];
        for (payload, expected) in cases {
            let err = parse(&payload).expect_err("rejected");
            assert!(err.to_string().contains(expected), "{err}");
        }
        let bad_key = s3_event("bad%zz");
        assert!(matches!(parse(&bad_key), Err(EventError::BadKey { index: 0, .. })));
        let truncated = json!({"Records": [{"s3": {"bucket": {"name": "b"}}}]});
        assert!(matches!(parse(&truncated), Err(EventError::MalformedRecord { index: 0, .. })));
        let deleted = json!({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]});
        assert!(parse(&deleted).expect_err("not a create").to_string().contains("ObjectRemoved:Delete"));
    }
}
