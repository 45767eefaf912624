//! The three shapes an object-created notification reaches the mover in,
//! reduced to one list of objects. Parsing never panics: anything that is
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
    #[error("SQS message {message_id} body is not an S3 notification: {reason}")]
    MalformedMessage { message_id: String, reason: String },
}

/// A parsed invocation.
#[derive(Debug)]
pub enum Invocation {
    /// S3 notification delivered straight to Lambda.
    S3(Vec<ObjectRef>),
    /// Messages from an SQS queue; each is answered on its own.
    Sqs(Vec<SqsItem>),
    EventBridge(ObjectRef),
    /// `s3:TestEvent`, sent once when a notification is configured.
    TestEvent,
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
/// envelope (S3 -> SNS -> SQS fan-out), or an `s3:TestEvent`.
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
    let notification: S3Notification = serde_json::from_value(value.clone())
        .map_err(|_| malformed(format!("expected Records, got {}", describe(&value))))?;
    s3_records(&notification.records).map_err(|err| malformed(err.to_string()))
}

/// Parses any payload the mover can receive.
pub fn parse(payload: &Value) -> Result<Invocation, EventError> {
    if is_test_event(payload) {
        return Ok(Invocation::TestEvent);
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
        let detail: EventBridgeDetail =
            serde_json::from_value(payload.get("detail").cloned().unwrap_or(Value::Null))
                .map_err(|err| EventError::MalformedRecord { index: 0, reason: format!("detail: {err}") })?;
        // EventBridge carries the key as S3 holds it, not form-encoded.
        return Ok(Invocation::EventBridge(ObjectRef {
            bucket: detail.bucket.name,
            key: detail.object.key,
            etag: detail.object.etag,
            size: detail.object.size,
        }));
    }
    Err(EventError::Unrecognised { received: describe(payload) })
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
    fn eventbridge_keys_are_taken_as_they_are() {
        let event = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "a+b%20c", "size": 1, "etag": "e"}}});
        let Ok(Invocation::EventBridge(object)) = parse(&event) else { panic!("eventbridge") };
        assert_eq!(object.key, "a+b%20c");
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
