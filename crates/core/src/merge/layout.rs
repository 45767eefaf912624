//! Where a run's documents and outputs live under `{dest_prefix}{run_id}/`
//! (the layout in DESIGN.md). Every step derives keys from these alone.

use super::output::Compression;

pub fn manifest_key(run_prefix: &str, batch_id: u64) -> String {
    format!("{run_prefix}_manifests/batch-{batch_id:05}.json")
}

pub fn batches_key(run_prefix: &str) -> String {
    format!("{run_prefix}_manifests/batches.json")
}

/// Where the Distributed Map exports its children's results (its
/// ResultWriter's Prefix; Step Functions adds `/{map run id}/`). No slash at
/// the end, or the export's keys would hold `//`.
pub fn map_results_prefix(run_prefix: &str) -> String {
    format!("{run_prefix}_map")
}

pub fn run_info_key(run_prefix: &str) -> String {
    format!("{run_prefix}_manifests/run.json")
}

pub fn output_key(run_prefix: &str, batch_id: u64, compression: Compression) -> String {
    format!("{run_prefix}merged-{batch_id:05}{}", compression.extension())
}

pub fn result_key(run_prefix: &str, batch_id: u64) -> String {
    format!("{run_prefix}_results/batch-{batch_id:05}.json")
}

pub fn report_key(run_prefix: &str) -> String {
    format!("{run_prefix}report.json")
}

pub fn merged_key(run_prefix: &str, compression: Compression) -> String {
    format!("{run_prefix}merged{}", compression.extension())
}
