//! The execution input, checked field by field: a bad value fails the run
//! before anything is listed, with the field's name in the message.

use super::MergeError;
use super::documents::RunOptions;
use super::incremental::DEFAULT_SETTLE_SECONDS;
use super::output::Compression;
use crate::keys::folder_prefix;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_SUFFIX: &str = ".csv";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRequest {
    pub source_bucket: String,
    pub source_prefix: String,
    pub dest_bucket: String,
    pub dest_prefix: String,
    pub batch_size: usize,
    pub run_id: String,
    pub single_output: bool,
    pub delete_sources: bool,
    pub suffix: String,
    /// Batches are also cut by the summed sizes of their files.
    #[serde(default)]
    pub target_bytes: Option<u64>,
    #[serde(default)]
    pub compression: Compression,
    /// Merge only what no earlier incremental run of the stream merged.
    #[serde(default)]
    pub incremental: bool,
    /// Incremental: files modified this recently are left to a later run.
    #[serde(default)]
    pub settle_seconds: u64,
    /// Incremental: the run whose stale lock this run may take over.
    #[serde(default)]
    pub takeover: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> MergeError {
    MergeError::InvalidInput { field, reason: reason.into() }
}

fn string_field(input: &Value, field: &'static str, required: bool) -> Result<Option<String>, MergeError> {
    match input.get(field) {
        None | Some(Value::Null) if required => Err(invalid(field, "is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(field, format!("must be a string, got {other}"))),
    }
}

fn bool_field(input: &Value, field: &'static str) -> Result<bool, MergeError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(field, format!("must be true or false, got {other}"))),
    }
}

/// A whole number within `range`, or none; `expected` says what is wanted.
fn number_field(
    input: &Value,
    field: &'static str,
    range: std::ops::RangeInclusive<u64>,
    expected: &str,
) -> Result<Option<u64>, MergeError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| invalid(field, format!("must be {expected}, got {value}"))),
    }
}

fn bucket_field(input: &Value, field: &'static str) -> Result<String, MergeError> {
    let name = string_field(input, field, true)?.unwrap_or_default();
    crate::config::validate_bucket_name(field, &name).map_err(|err| invalid(field, err.to_string()))?;
    Ok(name)
}

impl MergeRequest {
    /// Validates an execution input. `run_id` defaults to `execution_name`
    /// (the state machine passes the execution's name) and then to
    /// `fallback_run_id`; `batch_size` defaults to `default_batch_size`.
    pub fn from_input(input: &Value, default_batch_size: usize, fallback_run_id: &str) -> Result<Self, MergeError> {
        if !input.is_object() {
            return Err(invalid("(input)", format!("must be a JSON object, got {input}")));
        }
        let max = crate::config::MAX_BATCH_SIZE;
        let batch_size = number_field(input, "batch_size", 1..=max as u64, &format!("a whole number from 1 to {max}"))?
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(default_batch_size);
        let run_id = match string_field(input, "run_id", false)? {
            Some(id) => id,
            None => string_field(input, "execution_name", false)?.unwrap_or_else(|| fallback_run_id.to_owned()),
        };
        let valid_run_id = !run_id.is_empty()
            && run_id.len() <= 128
            && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:=@+".contains(&b));
        if !valid_run_id {
            return Err(invalid("run_id", format!("{run_id:?} must be 1-128 characters of A-Z a-z 0-9 - _ . : = @ +")));
        }
        let suffix = string_field(input, "suffix", false)?.unwrap_or_else(|| DEFAULT_SUFFIX.to_owned());
        let target_bytes = number_field(input, "target_bytes", 1..=u64::MAX, "a whole number of bytes of at least 1")?;
        let settle_seconds =
            number_field(input, "settle_seconds", 0..=86_400, "a whole number of seconds from 0 to 86400")?
                .unwrap_or(DEFAULT_SETTLE_SECONDS);
        let compression = match string_field(input, "compression", false)? {
            None => Compression::None,
            Some(name) => Compression::parse(&name)
                .ok_or_else(|| invalid("compression", format!("must be \"none\" or \"gzip\", got {name:?}")))?,
        };
        Ok(Self {
            source_bucket: bucket_field(input, "source_bucket")?,
            source_prefix: folder_prefix(&string_field(input, "source_prefix", true)?.unwrap_or_default()),
            dest_bucket: bucket_field(input, "dest_bucket")?,
            dest_prefix: folder_prefix(&string_field(input, "dest_prefix", true)?.unwrap_or_default()),
            batch_size,
            run_id,
            single_output: bool_field(input, "single_output")?,
            delete_sources: bool_field(input, "delete_sources")?,
            suffix,
            target_bytes,
            compression,
            incremental: bool_field(input, "incremental")?,
            settle_seconds,
            takeover: string_field(input, "takeover", false)?,
        })
    }

    /// The options that shape the run's outputs, as its documents record them.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            batch_size: self.batch_size,
            target_bytes: self.target_bytes,
            compression: self.compression,
            incremental: self.incremental,
        }
    }

    pub fn run_prefix(&self) -> String {
        format!("{}{}/", self.dest_prefix, self.run_id)
    }

    /// Keys never read as sources: a run's outputs (and earlier runs'
    /// outputs) when they live under the source prefix of the same bucket.
    pub(super) fn excluded_prefix(&self) -> Option<String> {
        (self.source_bucket == self.dest_bucket)
            .then(|| if self.dest_prefix.is_empty() { self.run_prefix() } else { self.dest_prefix.clone() })
    }
}
