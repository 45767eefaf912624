//! Configuration from environment variables, read once at start-up. A missing
//! or invalid value is an error that names the variable and the value, so a
//! Lambda fails its init with a message instead of failing every event.

use std::str::FromStr;

/// 5 GiB: the largest object a single CopyObject can copy.
pub const DEFAULT_MULTIPART_COPY_THRESHOLD: u64 = 5 * 1024 * 1024 * 1024;
pub const DEFAULT_FETCH_CONCURRENCY: usize = 64;
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// ListObjectsV2 calls the batch-generator keeps in flight: at S3's tens of
/// milliseconds a call, 32 list ~1M keys a second, far below the 5,500
/// requests a second one prefix partition serves.
pub const DEFAULT_LIST_CONCURRENCY: usize = 32;
/// Above this, a batch would make a CSV merger hold too much and run too long
/// in one Lambda invocation.
pub const MAX_BATCH_SIZE: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {var} is required but not set")]
    Missing { var: &'static str },
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
}

/// Reads variables through a lookup function, so tests need not touch the
/// process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(F);

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Env(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn from_lookup(lookup: F) -> Self {
        Env(lookup)
    }

    /// Unset and empty are the same: SAM renders an unset parameter as "".
    fn get(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing { var })
    }

    pub fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.get(var)
    }

    pub fn bool_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(ConfigError::Invalid { var, value, reason: "expected true or false".into() }),
            },
        }
    }

    pub fn number_or<T>(&self, var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(value) = self.get(var) else { return Ok(default) };
        let parsed: T = value.trim().parse().map_err(|_| ConfigError::Invalid {
            var,
            value: value.clone(),
            reason: format!("expected a whole number from {min} to {max}"),
        })?;
        if parsed < min || parsed > max {
            return Err(ConfigError::Invalid { var, value, reason: format!("must be from {min} to {max}") });
        }
        Ok(parsed)
    }
}

/// Validates a bucket name the way S3 does, so a typo fails at init rather
/// than as NoSuchBucket on the first event.
pub fn validate_bucket_name(var: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_ends = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !name.contains("..") {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            var,
            value: name.to_owned(),
            reason: "not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '-' and '.')".into(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoverConfig {
    pub dest_bucket: String,
    pub dest_prefix: String,
    pub source_prefix: String,
    pub keep_source_prefix: bool,
    pub source_bucket: Option<String>,
    pub delete_source: bool,
    pub multipart_copy_threshold: u64,
    pub fetch_concurrency: usize,
    /// `S3MM_SDK_ONLY`: every request through the SDK, none on the direct
    /// path (crate::direct).
    pub sdk_only: bool,
}

impl MoverConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let dest_bucket = env.required("DEST_BUCKET")?;
        validate_bucket_name("DEST_BUCKET", &dest_bucket)?;
        let source_bucket = env.optional("SOURCE_BUCKET");
        if let Some(bucket) = &source_bucket {
            validate_bucket_name("SOURCE_BUCKET", bucket)?;
        }
        let dest_prefix = env.string_or("DEST_PREFIX", "");
        let source_prefix = env.string_or("SOURCE_PREFIX", "");
        let keep_source_prefix = env.bool_or("KEEP_SOURCE_PREFIX", false)?;
        // Every key would map onto itself: a mover that can do nothing but
        // skip is a deployment mistake, better refused at init.
        let mapping = crate::keys::KeyMapping::new(&source_prefix, &dest_prefix, keep_source_prefix);
        let identity = if keep_source_prefix {
            mapping.dest_prefix().is_empty()
        } else {
            mapping.dest_prefix() == mapping.source_prefix()
        };
        if identity && source_bucket.as_deref() == Some(dest_bucket.as_str()) {
            return Err(ConfigError::Invalid {
                var: "DEST_PREFIX",
                value: dest_prefix,
                reason: format!(
                    "with DEST_BUCKET = SOURCE_BUCKET ({dest_bucket}), SOURCE_PREFIX {source_prefix:?} and KEEP_SOURCE_PREFIX={keep_source_prefix} every object would map onto itself"
                ),
            });
        }
        Ok(Self {
            dest_bucket,
            dest_prefix,
            source_prefix,
            keep_source_prefix,
            source_bucket,
            delete_source: env.bool_or("DELETE_SOURCE", true)?,
            // S3 parts are at least 5 MiB, so a lower threshold is meaningless.
            multipart_copy_threshold: env.number_or(
                "MULTIPART_COPY_THRESHOLD",
                DEFAULT_MULTIPART_COPY_THRESHOLD,
                5 * 1024 * 1024,
                DEFAULT_MULTIPART_COPY_THRESHOLD,
            )?,
            fetch_concurrency: env.number_or("FETCH_CONCURRENCY", DEFAULT_FETCH_CONCURRENCY, 1, 1024)?,
            sdk_only: env.bool_or("S3MM_SDK_ONLY", false)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeConfig {
    pub batch_size: usize,
    pub fetch_concurrency: usize,
    pub list_concurrency: usize,
    /// `S3MM_SDK_ONLY`, as in [`MoverConfig`].
    pub sdk_only: bool,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            fetch_concurrency: DEFAULT_FETCH_CONCURRENCY,
            list_concurrency: DEFAULT_LIST_CONCURRENCY,
            sdk_only: false,
        }
    }
}

impl MergeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }

    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: env.number_or("BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE)?,
            fetch_concurrency: env.number_or("FETCH_CONCURRENCY", DEFAULT_FETCH_CONCURRENCY, 1, 1024)?,
            list_concurrency: env.number_or("LIST_CONCURRENCY", DEFAULT_LIST_CONCURRENCY, 1, 1024)?,
            sdk_only: env.bool_or("S3MM_SDK_ONLY", false)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// JSON is the default because CloudWatch Logs Insights queries it.
    pub fn from<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        match env.optional("LOG_FORMAT").map(|v| v.to_ascii_lowercase()) {
            None => Ok(Self::Json),
            Some(v) if v == "json" => Ok(Self::Json),
            Some(v) if v == "text" => Ok(Self::Text),
            Some(value) => {
                Err(ConfigError::Invalid { var: "LOG_FORMAT", value, reason: "expected json or text".into() })
            }
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&Env::process())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn mover_defaults() {
        let c = MoverConfig::from(&env(&[("DEST_BUCKET", "dest-bucket")])).expect("valid");
        assert_eq!(c.dest_prefix, "");
        assert!(c.delete_source);
        assert!(!c.keep_source_prefix);
        assert_eq!(c.multipart_copy_threshold, DEFAULT_MULTIPART_COPY_THRESHOLD);
        assert_eq!(c.fetch_concurrency, 64);
        assert_eq!(c.source_bucket, None);
    }

    #[test]
    fn missing_dest_bucket_names_the_variable() {
        let err = MoverConfig::from(&env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::Missing { var: "DEST_BUCKET" });
        assert!(err.to_string().contains("DEST_BUCKET"));
    }

    #[test]
    fn invalid_values_name_variable_and_value() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("DEST_BUCKET", "Bad_Bucket")], "DEST_BUCKET", "Bad_Bucket"),
            (&[("DEST_BUCKET", "ok-bucket"), ("DELETE_SOURCE", "maybe")], "DELETE_SOURCE", "maybe"),
            (&[("DEST_BUCKET", "ok-bucket"), ("FETCH_CONCURRENCY", "0")], "FETCH_CONCURRENCY", "0"),
            (&[("DEST_BUCKET", "ok-bucket"), ("FETCH_CONCURRENCY", "lots")], "FETCH_CONCURRENCY", "lots"),
            (&[("DEST_BUCKET", "ok-bucket"), ("MULTIPART_COPY_THRESHOLD", "100")], "MULTIPART_COPY_THRESHOLD", "100"),
            (&[("DEST_BUCKET", "ok-bucket"), ("SOURCE_BUCKET", "x")], "SOURCE_BUCKET", "x"),
            (&[("DEST_BUCKET", "ok-bucket"), ("S3MM_SDK_ONLY", "ture")], "S3MM_SDK_ONLY", "ture"),
        ];
        for (pairs, var, value) in cases {
            let err = MoverConfig::from(&env(pairs)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(value), "{text} should name {var} and {value}");
        }
    }

    #[test]
    fn merge_config_bounds_batch_size() {
        assert_eq!(MergeConfig::from(&env(&[])).expect("defaults").batch_size, 1000);
        assert!(MergeConfig::from(&env(&[("BATCH_SIZE", "0")])).is_err());
        assert!(MergeConfig::from(&env(&[("BATCH_SIZE", "1000000000")])).is_err());
        assert_eq!(MergeConfig::from(&env(&[("BATCH_SIZE", "250")])).expect("valid").batch_size, 250);
        assert_eq!(MergeConfig::from(&env(&[])).expect("defaults"), MergeConfig::default());
        assert_eq!(MergeConfig::from(&env(&[("LIST_CONCURRENCY", "1")])).expect("serial").list_concurrency, 1);
        let err = MergeConfig::from(&env(&[("LIST_CONCURRENCY", "0")])).expect_err("zero");
        assert!(err.to_string().contains("LIST_CONCURRENCY"), "{err}");
    }

    #[test]
    fn sdk_only_is_read_by_both_per_object_functions() {
        let mover = |value| MoverConfig::from(&env(&[("DEST_BUCKET", "ok-bucket"), ("S3MM_SDK_ONLY", value)]));
        assert!(!MoverConfig::from(&env(&[("DEST_BUCKET", "ok-bucket")])).expect("default").sdk_only);
        assert!(mover("TRUE").expect("valid").sdk_only);
        assert!(!mover("no").expect("valid").sdk_only);
        assert!(!MergeConfig::from(&env(&[])).expect("default").sdk_only);
        assert!(MergeConfig::from(&env(&[("S3MM_SDK_ONLY", "yes")])).expect("valid").sdk_only);
        let err = MergeConfig::from(&env(&[("S3MM_SDK_ONLY", "ture")])).expect_err("a typo");
        assert!(err.to_string().contains("S3MM_SDK_ONLY") && err.to_string().contains("ture"), "{err}");
    }

    #[test]
    fn log_format() {
        assert_eq!(LogFormat::from(&env(&[])), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from(&env(&[("LOG_FORMAT", "TEXT")])), Ok(LogFormat::Text));
        assert!(LogFormat::from(&env(&[("LOG_FORMAT", "xml")])).is_err());
    }
}
