//! One CloudWatch Embedded Metric Format line per invocation, written to
//! stdout where Lambda ships it to CloudWatch Logs, which turns it into
//! metrics without any PutMetricData call.

use crate::Tally;
use metrics_cloudwatch_embedded::Collector;

pub const NAMESPACE: &str = "s3mm";

/// Installs the global recorder; `None` when another recorder is already
/// installed (tests driving several handlers in one process).
pub fn init() -> Option<&'static Collector> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("Function", "mover")
        .emit_zeros(true)
        .init()
        .ok()
}

pub fn emit(collector: &Collector, tally: &Tally, request_id: &str) {
    metrics::counter!("Moved").increment(tally.moved as u64 + tally.copied as u64);
    metrics::counter!("AlreadyMoved").increment(tally.already_moved as u64);
    metrics::counter!("Skipped").increment(tally.skipped as u64);
    metrics::counter!("Failed").increment(tally.failed as u64);
    metrics::counter!("Bytes").increment(tally.bytes);
    if let Err(err) = collector.set_property("RequestId", request_id.to_owned()).flush(std::io::stdout().lock()) {
        tracing::warn!(error = %err, "could not write metrics");
    }
}
