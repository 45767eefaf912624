//! Tracing set-up shared by every binary: JSON lines for CloudWatch by
//! default, plain text for a terminal, filtered by `RUST_LOG`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op, so tests and
/// binaries can both call it.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with the level used when `RUST_LOG` is unset: a command
/// line tool prints warnings only, a Lambda logs every object.
pub fn init_with_default(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).without_time().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A time in milliseconds since the epoch as people read it in messages:
/// `2026-11-30T17:34:15Z`.
pub fn utc(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}
