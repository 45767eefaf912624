//! Fuzzes the mover's event parser and the key rules it relies on.
//!
//! Input layout: `JSON [0xFF CONFIG]`. The bytes before the first 0xFF (a
//! byte valid UTF-8, and so JSON, never holds) are the event payload; the
//! bytes after it drive `arbitrary` to pick prefixes, KEEP_SOURCE_PREFIX,
//! SOURCE_BUCKET and extra keys. A seed that is plain JSON fuzzes with the
//! default (empty) configuration.
//!
//! Asserted (each a promise written in crates/mover/src/event.rs,
//! crates/core/src/keys.rs, config.rs or transfer.rs):
//! - `event::parse` never panics, whatever the JSON, and its errors format.
//! - A key decoded from an S3/SQS notification is non-empty and at most
//!   `MAX_KEY_BYTES` bytes (`decode_event_key` refuses anything else).
//! - `decode_event_key(encode_event_key(k)) == k` for every UTF-8 key of
//!   1..=1024 bytes; empty is `Empty`, longer is `TooLong`.
//! - `KeyMapping::map(k)` is `Some` exactly for keys under the (folder)
//!   source prefix, is the source key with that prefix swapped for the
//!   destination prefix (or prefixed, with keep_source_prefix), and is
//!   one-to-one over the keys it maps.
//! - A configuration `MoverConfig::from` accepts with SOURCE_BUCKET =
//!   DEST_BUCKET never maps a key onto itself, and `Mover::route` never
//!   routes a key of the destination bucket onto itself; what it routes is
//!   `map`'s answer, and distinct keys get distinct destinations.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mover::event::{Invocation, ObjectRef, parse};
use s3mm_core::config::{Env, MoverConfig};
use s3mm_core::keys::{KeyError, KeyMapping, MAX_KEY_BYTES, decode_event_key, encode_event_key};
use s3mm_core::{ClientSettings, Mover, client_for_endpoint};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

const DEST_BUCKET: &str = "dest-bucket";
const OTHER_BUCKET: &str = "other-bucket";

/// Built once, never used to send a request: `route` makes no S3 call.
fn client() -> aws_sdk_s3::Client {
    static CLIENT: OnceLock<aws_sdk_s3::Client> = OnceLock::new();
    CLIENT.get_or_init(|| client_for_endpoint("http://127.0.0.1:9", "fuzz", "fuzz", &ClientSettings::default())).clone()
}

fuzz_target!(|data: &[u8]| {
    let (json, config) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };

    let mut keys: Vec<String> = Vec::new();
    if let Ok(raw) = std::str::from_utf8(json) {
        check_decode(raw);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(json) {
        match parse(&value) {
            Ok(invocation) => {
                for (object, decoded) in objects(invocation) {
                    if decoded {
                        assert!(!object.key.is_empty(), "a decoded event key is never empty");
                        assert!(object.key.len() <= MAX_KEY_BYTES, "a decoded event key is at most 1024 bytes");
                    }
                    check_round_trip(&object.key);
                    keys.push(object.key);
                }
            }
            Err(err) => {
                let _ = err.to_string();
            }
        }
    }

    let mut u = Unstructured::new(config);
    let Ok(extra) = Vec::<String>::arbitrary(&mut u) else { return };
    for key in &extra {
        check_round_trip(key);
        check_decode(key);
    }
    keys.extend(extra);
    let source_prefix = pick_prefix(&mut u, &keys);
    let dest_prefix = pick_prefix(&mut u, &keys);
    let keep = bool::arbitrary(&mut u).unwrap_or(false);
    let same_bucket = bool::arbitrary(&mut u).unwrap_or(true);
    // Keys just under, beside and above both prefixes.
    let mut derived = Vec::new();
    for key in keys.iter().take(16) {
        for prefix in [&source_prefix, &dest_prefix] {
            derived.push(format!("{prefix}{key}"));
            derived.push(format!("{prefix}/{key}"));
            derived.push(format!("{}{key}", prefix.trim_end_matches('/')));
        }
    }
    keys.extend(derived);
    keys.push(source_prefix.clone());
    keys.push(dest_prefix.clone());
    keys.sort();
    keys.dedup();

    check_mapping(&KeyMapping::new(&source_prefix, &dest_prefix, keep), keep, &keys);

    let env: HashMap<&str, String> = [
        ("DEST_BUCKET", DEST_BUCKET.to_owned()),
        ("SOURCE_BUCKET", if same_bucket { DEST_BUCKET.to_owned() } else { String::new() }),
        ("SOURCE_PREFIX", source_prefix),
        ("DEST_PREFIX", dest_prefix),
        ("KEEP_SOURCE_PREFIX", keep.to_string()),
    ]
    .into_iter()
    .collect();
    let Ok(config) = MoverConfig::from(&Env::from_lookup(|name| env.get(name).cloned())) else { return };
    let mapping = KeyMapping::new(&config.source_prefix, &config.dest_prefix, config.keep_source_prefix);
    if config.source_bucket.as_deref() == Some(DEST_BUCKET) {
        for key in &keys {
            assert_ne!(
                mapping.map(key).as_deref(),
                Some(key.as_str()),
                "accepted same-bucket config maps {key:?} onto itself"
            );
        }
    }
    let mover = Mover::new(client(), config);
    for bucket in [DEST_BUCKET, OTHER_BUCKET] {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for key in &keys {
            let Ok(dest) = mover.route(bucket, key) else { continue };
            assert_eq!(Some(&dest), mapping.map(key).as_ref(), "route differs from map for {key:?}");
            if bucket == DEST_BUCKET {
                assert_ne!(&dest, key, "route maps {key:?} onto itself in the destination bucket");
            }
            if let Some(other) = seen.insert(dest.clone(), key) {
                panic!("route sends both {other:?} and {key:?} to {dest:?}");
            }
        }
    }
});

/// Every object of a parsed invocation, and whether its key was decoded
/// from an event's form encoding (EventBridge keys are taken as they are).
fn objects(invocation: Invocation) -> Vec<(ObjectRef, bool)> {
    match invocation {
        Invocation::S3(objects) => objects.into_iter().map(|o| (o, true)).collect(),
        Invocation::Sqs(items) => items
            .into_iter()
            .flat_map(|item| match item.objects {
                Ok(objects) => objects,
                Err(err) => {
                    let _ = err.to_string();
                    Vec::new()
                }
            })
            .map(|o| (o, true))
            .collect(),
        Invocation::EventBridge(object) => vec![(object, false)],
        // Batch Operations' s3Key is URL-encoded and decoded as event keys are.
        Invocation::BatchOperations(job) => {
            job.tasks.into_iter().filter_map(|task| task.object.ok()).map(|o| (o, true)).collect()
        }
        Invocation::TestEvent => Vec::new(),
    }
}

/// `decode_event_key` on arbitrary text: never panics; what it returns is
/// a non-empty key within S3's limit that encodes back to an equivalent form.
fn check_decode(raw: &str) {
    match decode_event_key(raw) {
        Ok(key) => {
            assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES, "decoded {raw:?} to {key:?}");
            assert_eq!(decode_event_key(&encode_event_key(&key)).as_ref(), Ok(&key));
            if !raw.contains(['%', '+']) {
                assert_eq!(key, raw, "a key without escapes decodes to itself");
            }
        }
        Err(KeyError::Empty) => assert!(raw.is_empty()),
        Err(err) => {
            let _ = err.to_string();
        }
    }
}

/// decode(encode(k)) == k for every valid key; the limits otherwise.
fn check_round_trip(key: &str) {
    let encoded = encode_event_key(key);
    assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "encoded form {encoded:?} is plain ASCII");
    match decode_event_key(&encoded) {
        Ok(decoded) => assert_eq!(decoded, key, "round trip through {encoded:?}"),
        Err(KeyError::Empty) => assert!(key.is_empty()),
        Err(KeyError::TooLong { len, .. }) => assert!(len == key.len() && len > MAX_KEY_BYTES),
        Err(err) => panic!("{key:?} encoded as {encoded:?} does not decode: {err}"),
    }
}

/// A prefix worth mapping with: often a leading part of a key seen (cut at a
/// character boundary), sometimes arbitrary text.
fn pick_prefix(u: &mut Unstructured, keys: &[String]) -> String {
    let choice = u8::arbitrary(u).unwrap_or(0);
    if choice % 4 != 0 && !keys.is_empty() {
        let key = &keys[usize::from(choice / 4) % keys.len()];
        let cut = usize::from(u8::arbitrary(u).unwrap_or(0)) % (key.len() + 1);
        let cut = (0..=cut).rev().find(|i| key.is_char_boundary(*i)).unwrap_or(0);
        return key[..cut].to_owned();
    }
    String::arbitrary(u).unwrap_or_default()
}

fn check_mapping(mapping: &KeyMapping, keep: bool, keys: &[String]) {
    let source = mapping.source_prefix();
    let dest = mapping.dest_prefix();
    for prefix in [source, dest] {
        assert!(prefix.is_empty() || (prefix.ends_with('/') && !prefix.ends_with("//")), "{prefix:?} is a folder");
    }
    let mut seen: HashMap<String, &str> = HashMap::new();
    for key in keys {
        let mapped = mapping.map(key);
        assert_eq!(mapped.is_some(), key.starts_with(source), "map({key:?}) under {source:?}");
        let Some(mapped) = mapped else { continue };
        let kept = if keep { key.as_str() } else { &key[source.len()..] };
        assert_eq!(mapped, format!("{dest}{kept}"), "map({key:?})");
        if let Some(other) = seen.insert(mapped.clone(), key) {
            panic!("map sends both {other:?} and {key:?} to {mapped:?}");
        }
    }
}
