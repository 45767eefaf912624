//! What a run costs on AWS, from request counts and a dated price table
//! kept as data (`data/aws-prices.json`), so a price change is a data
//! change and every estimate says which prices it used.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const PRICES: &str = include_str!("../data/aws-prices.json");
const MEASURED: &str = include_str!("../data/measured-durations.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub date: String,
    pub region: String,
    pub currency: String,
    pub source: String,
    pub s3: S3Prices,
    pub lambda: LambdaPrices,
    pub step_functions: StepFunctionsPrices,
    pub sqs: SqsPrices,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Prices {
    pub put_copy_post_list_per_1000: f64,
    pub get_select_other_per_1000: f64,
    pub delete_per_1000: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaPrices {
    pub requests_per_million: f64,
    pub gb_second_x86_64: f64,
    pub gb_second_arm64: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFunctionsPrices {
    pub standard_transitions_per_1000: f64,
    pub express_requests_per_million: f64,
    pub express_gb_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsPrices {
    pub standard_requests_per_million: f64,
}

/// The price table compiled into this build.
pub fn prices() -> PriceTable {
    // The file is part of the source tree and checked by a unit test.
    serde_json::from_str(PRICES).unwrap_or_else(|err| panic!("data/aws-prices.json is invalid: {err}"))
}

/// Function durations measured on this project's bench, and how: the
/// estimates use these, never a guess, and say where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredDurations {
    pub date: String,
    /// The bench results file the figures were taken from
    /// (bench/charts.py writes this file from it, and checks it in CI).
    pub results: String,
    pub source: String,
    pub mover: MoverDurations,
    pub csv_merger: MergerDuration,
    pub batch_generator: StepDuration,
    pub results_aggregator: StepDuration,
}

/// A merge step measured on `units` of work (files listed, batches
/// aggregated) and scaled linearly to a run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDuration {
    pub memory_mb: f64,
    pub units: f64,
    pub ms: f64,
}

impl StepDuration {
    pub fn ms_for(&self, units: f64) -> f64 {
        self.ms * units / self.units.max(1.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoverDurations {
    pub memory_mb: f64,
    pub per_invocation: Vec<MoverDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoverDuration {
    pub objects_per_invocation: u32,
    pub ms_per_invocation: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergerDuration {
    pub memory_mb: f64,
    pub files_per_batch: u64,
    pub ms_per_batch: f64,
}

impl MoverDurations {
    /// The measured duration of an invocation moving this many objects.
    pub fn ms_for(&self, objects_per_invocation: u32) -> Option<f64> {
        self.per_invocation
            .iter()
            .find(|d| d.objects_per_invocation == objects_per_invocation)
            .map(|d| d.ms_per_invocation)
    }

    pub fn measured_batch_sizes(&self) -> Vec<u32> {
        self.per_invocation.iter().map(|d| d.objects_per_invocation).collect()
    }
}

impl MergerDuration {
    /// A batch of `files`, at the measured time per file (the merge of a
    /// batch is linear in its files: one GET each, one upload).
    pub fn ms_for(&self, files: f64) -> f64 {
        self.ms_per_batch * files / self.files_per_batch.max(1) as f64
    }
}

impl MeasuredDurations {
    /// A merge run of `files` in batches of `batch_size`, every step at its
    /// measured duration and memory.
    pub fn merge_assumptions(&self, files: f64, batch_size: f64, architecture: Architecture) -> MergeAssumptions {
        let batches = (files / batch_size.max(1.0)).ceil();
        MergeAssumptions {
            files,
            batch_size,
            ms_per_batch: self.csv_merger.ms_for(batch_size),
            merger_memory_mb: self.csv_merger.memory_mb,
            generator: StepRun { ms: self.batch_generator.ms_for(files), memory_mb: self.batch_generator.memory_mb },
            aggregator: StepRun {
                ms: self.results_aggregator.ms_for(batches),
                memory_mb: self.results_aggregator.memory_mb,
            },
            architecture,
        }
    }
}

/// The durations compiled into this build.
pub fn measured() -> MeasuredDurations {
    // Part of the source tree and checked by a unit test, like the prices.
    serde_json::from_str(MEASURED).unwrap_or_else(|err| panic!("data/measured-durations.json is invalid: {err}"))
}

/// How object-created events reach the mover (the template's DeliveryMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// S3 or the EventBridge rule invokes the mover once per object.
    Direct,
    /// The events wait in an SQS queue; the mover reads them in batches.
    Sqs,
}

/// SQS requests per object with DeliveryMode=sqs: S3 (or EventBridge)
/// sends each event as one message; Lambda's pollers receive and delete
/// up to 10 messages per request. Idle long polls (a few hundred thousand
/// requests a month, ~$0.26) are not included.
pub const SQS_REQUESTS_PER_OBJECT: f64 = 1.2; // 1 + 0.1 + 0.1

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// PUT, COPY, POST, LIST.
    Write,
    /// GET, HEAD and the rest.
    Read,
    /// DELETE and abort: free.
    Free,
}

/// S3's billing class of an operation.
pub fn class_of(operation: &str) -> RequestClass {
    match operation {
        "PutObject"
        | "CopyObject"
        | "UploadPart"
        | "UploadPartCopy"
        | "CreateMultipartUpload"
        | "CompleteMultipartUpload"
        | "ListObjectsV2"
        | "ListObjects"
        | "ListBuckets"
        | "PutObjectTagging"
        | "CreateBucket" => RequestClass::Write,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" | "DeleteBucket" | "DeleteObjectTagging" => {
            RequestClass::Free
        }
        _ => RequestClass::Read,
    }
}

/// One line of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub item: String,
    pub quantity: f64,
    pub unit: String,
    pub dollars: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub prices_date: String,
    pub region: String,
    pub lines: Vec<CostLine>,
    pub total_dollars: f64,
}

impl Estimate {
    pub fn from_lines(table: &PriceTable, lines: Vec<CostLine>) -> Self {
        Self::new(table, lines)
    }

    /// The dollars of the lines whose item starts with `prefix` ("S3",
    /// "Lambda", "SQS").
    pub fn dollars_of(&self, prefix: &str) -> f64 {
        self.lines.iter().filter(|l| l.item.starts_with(prefix)).fold(0.0, |sum, l| sum + l.dollars)
    }

    fn new(table: &PriceTable, lines: Vec<CostLine>) -> Self {
        let total_dollars = lines.iter().map(|l| l.dollars).sum();
        Self { prices_date: table.date.clone(), region: table.region.clone(), lines, total_dollars }
    }
}

/// The S3 request charges of a set of request counts by operation.
pub fn s3_requests(table: &PriceTable, requests: &BTreeMap<String, u64>) -> Vec<CostLine> {
    let (mut write, mut read, mut free) = (0u64, 0u64, 0u64);
    for (operation, n) in requests {
        match class_of(operation) {
            RequestClass::Write => write += n,
            RequestClass::Read => read += n,
            RequestClass::Free => free += n,
        }
    }
    vec![
        CostLine {
            item: "S3 PUT/COPY/POST/LIST requests".into(),
            quantity: write as f64,
            unit: "requests".into(),
            dollars: write as f64 / 1000.0 * table.s3.put_copy_post_list_per_1000,
        },
        CostLine {
            item: "S3 GET/HEAD requests".into(),
            quantity: read as f64,
            unit: "requests".into(),
            dollars: read as f64 / 1000.0 * table.s3.get_select_other_per_1000,
        },
        CostLine {
            item: "S3 DELETE requests".into(),
            quantity: free as f64,
            unit: "requests".into(),
            dollars: free as f64 / 1000.0 * table.s3.delete_per_1000,
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    Arm64,
    X86_64,
}

/// Lambda charges for `invocations` of `ms` each at `memory_mb`.
pub fn lambda(
    table: &PriceTable,
    name: &str,
    invocations: f64,
    ms: f64,
    memory_mb: f64,
    arch: Architecture,
) -> Vec<CostLine> {
    let gb_seconds = invocations * ms / 1000.0 * memory_mb / 1024.0;
    let rate = match arch {
        Architecture::Arm64 => table.lambda.gb_second_arm64,
        Architecture::X86_64 => table.lambda.gb_second_x86_64,
    };
    vec![
        CostLine {
            item: format!("Lambda {name} requests"),
            quantity: invocations,
            unit: "invocations".into(),
            dollars: invocations / 1e6 * table.lambda.requests_per_million,
        },
        CostLine {
            item: format!("Lambda {name} duration ({memory_mb:.0} MB, {ms:.0} ms each)"),
            quantity: gb_seconds,
            unit: "GB-s".into(),
            dollars: gb_seconds * rate,
        },
    ]
}

/// Assumptions behind the mover's estimate: a 1 KiB move is one CopyObject
/// and one DeleteObject; direct delivery invokes once per object (S3
/// notifications carry one record), SQS delivery once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MoverAssumptions {
    pub objects_per_day: f64,
    pub days: f64,
    pub delivery: Delivery,
    pub objects_per_invocation: f64,
    pub ms_per_invocation: f64,
    pub memory_mb: f64,
    pub architecture: Architecture,
}

pub fn mover_month(table: &PriceTable, a: &MoverAssumptions) -> Estimate {
    let objects = a.objects_per_day * a.days;
    let requests =
        BTreeMap::from([("CopyObject".to_owned(), objects as u64), ("DeleteObject".to_owned(), objects as u64)]);
    let mut lines = s3_requests(table, &requests);
    let invocations = (objects / a.objects_per_invocation.max(1.0)).ceil();
    lines.extend(lambda(table, "mover", invocations, a.ms_per_invocation, a.memory_mb, a.architecture));
    if a.delivery == Delivery::Sqs {
        let requests = objects * SQS_REQUESTS_PER_OBJECT;
        lines.push(CostLine {
            item: "SQS requests (send 1, receive and delete 0.1 each per object)".into(),
            quantity: requests,
            unit: "requests".into(),
            dollars: requests / 1e6 * table.sqs.standard_requests_per_million,
        });
    }
    Estimate::new(table, lines)
}

/// Assumptions behind one merge run's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MergeAssumptions {
    pub files: f64,
    pub batch_size: f64,
    pub ms_per_batch: f64,
    pub merger_memory_mb: f64,
    /// The batch-generator's one invocation: the whole listing.
    pub generator: StepRun,
    /// The results-aggregator's one invocation.
    pub aggregator: StepRun,
    pub architecture: Architecture,
}

/// One invocation of a step that runs once per merge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    pub ms: f64,
    pub memory_mb: f64,
}

/// S3 requests of a merge run, by operation, as the three steps make them.
pub fn merge_requests(files: u64, batch_size: u64) -> BTreeMap<String, u64> {
    let batches = files.div_ceil(batch_size.max(1));
    BTreeMap::from([
        ("ListObjectsV2".to_owned(), files.div_ceil(1000).max(1)),
        // Sources, manifests read by mergers, results and state read by the aggregator, header probe.
        ("GetObject".to_owned(), files + batches * 2 + 3),
        // Manifests, batch list, run info, outputs, results, report.
        ("PutObject".to_owned(), batches * 3 + 3),
    ])
}

pub fn merge_run(table: &PriceTable, a: &MergeAssumptions) -> Estimate {
    let batches = (a.files / a.batch_size.max(1.0)).ceil();
    let mut lines = s3_requests(table, &merge_requests(a.files as u64, a.batch_size as u64));
    lines.extend(lambda(table, "csv-merger", batches, a.ms_per_batch, a.merger_memory_mb, a.architecture));
    lines.extend(lambda(table, "batch-generator", 1.0, a.generator.ms, a.generator.memory_mb, a.architecture));
    lines.extend(lambda(table, "results-aggregator", 1.0, a.aggregator.ms, a.aggregator.memory_mb, a.architecture));
    // The parent: ~8 transitions, plus one for every child the Distributed
    // Map starts; each child Express execution is one request of ~1 s at 64 MB.
    let transitions = 8.0 + batches;
    lines.push(CostLine {
        item: "Step Functions Standard transitions".into(),
        quantity: transitions,
        unit: "transitions".into(),
        dollars: transitions / 1000.0 * table.step_functions.standard_transitions_per_1000,
    });
    let child_gb_hours = batches * (a.ms_per_batch / 1000.0) / 3600.0 * 0.064;
    lines.push(CostLine {
        item: "Step Functions Express child executions".into(),
        quantity: batches,
        unit: "executions".into(),
        dollars: batches / 1e6 * table.step_functions.express_requests_per_million
            + child_gb_hours * table.step_functions.express_gb_hour,
    });
    Estimate::new(table, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_table_parses_and_is_dated() {
        let table = prices();
        assert_eq!(table.region, "us-east-1");
        assert!(table.date.len() == 10 && table.date.starts_with("20"));
        assert!(table.s3.put_copy_post_list_per_1000 > table.s3.get_select_other_per_1000);
    }

    #[test]
    fn copy_is_billed_as_put_and_delete_is_free() {
        let table = prices();
        let requests = BTreeMap::from([("CopyObject".to_owned(), 1_000_000), ("DeleteObject".to_owned(), 1_000_000)]);
        let lines = s3_requests(&table, &requests);
        assert!((lines[0].dollars - 5.0).abs() < 1e-9, "1M COPY = $5");
        assert_eq!(lines[2].dollars, 0.0);
    }

    /// One invocation per object, 40 ms at 128 MB, arm64.
    fn direct_mover(objects_per_day: f64, days: f64) -> MoverAssumptions {
        MoverAssumptions {
            objects_per_day,
            days,
            delivery: Delivery::Direct,
            objects_per_invocation: 1.0,
            ms_per_invocation: 40.0,
            memory_mb: 128.0,
            architecture: Architecture::Arm64,
        }
    }

    #[test]
    fn the_mover_month_is_dominated_by_copy_requests() {
        let table = prices();
        let estimate = mover_month(&table, &direct_mover(800_000.0, 30.0));
        assert!((estimate.lines[0].dollars - 120.0).abs() < 1e-6, "24M COPY = $120");
        assert!(estimate.total_dollars > 120.0 && estimate.total_dollars < 140.0, "{}", estimate.total_dollars);
    }

    #[test]
    fn sqs_delivery_trades_lambda_requests_for_sqs_requests() {
        let table = prices();
        let direct = direct_mover(1_000_000.0, 1.0);
        let sqs = MoverAssumptions { delivery: Delivery::Sqs, objects_per_invocation: 100.0, ..direct };
        let (direct, sqs) = (mover_month(&table, &direct), mover_month(&table, &sqs));
        let line = |e: &Estimate, prefix: &str| e.lines.iter().find(|l| l.item.starts_with(prefix)).cloned();
        assert_eq!(line(&direct, "Lambda mover requests").map(|l| l.quantity), Some(1_000_000.0));
        assert_eq!(line(&sqs, "Lambda mover requests").map(|l| l.quantity), Some(10_000.0));
        assert!(line(&direct, "SQS").is_none());
        let sqs_line = line(&sqs, "SQS").expect("SQS line");
        assert!((sqs_line.dollars - 1.2 * 0.40).abs() < 1e-9, "1.2 M SQS requests = $0.48");
        assert_eq!(sqs.dollars_of("SQS"), sqs_line.dollars);
        assert_eq!(direct.dollars_of("SQS"), 0.0);
    }

    #[test]
    fn the_measured_durations_parse_and_cover_the_batch_sizes_priced() {
        let m = measured();
        assert!(m.date.len() == 10 && !m.source.is_empty());
        for batch in [1, 10, 100] {
            assert!(m.mover.ms_for(batch).is_some_and(|ms| ms > 0.0), "batch {batch}");
        }
        assert_eq!(m.mover.ms_for(7), None);
        assert!((m.csv_merger.ms_for(500.0) - m.csv_merger.ms_per_batch / 2.0).abs() < 1e-9);
        let run = m.merge_assumptions(300_000.0, 1000.0, Architecture::Arm64);
        assert!((run.generator.ms - m.batch_generator.ms * 300_000.0 / m.batch_generator.units).abs() < 1e-6);
        assert!((run.aggregator.ms - m.results_aggregator.ms * 300.0 / m.results_aggregator.units).abs() < 1e-6);
    }
}
