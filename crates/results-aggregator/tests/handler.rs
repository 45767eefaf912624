//! The results-aggregator handler in-process against local-s3: a failed
//! batch is named in the report, and no source is deleted while one is.

use s3mm_core::merge::{MergeRequest, generate_batches};
use s3mm_test_support::S3Fixture;
use serde_json::json;

#[tokio::test]
async fn a_missing_batch_result_is_a_failed_batch_and_blocks_deletion() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let (server, client) = (&f.server, &f.client);
    for i in 0..4 {
        server.put_object("b-in", &format!("csvs/{i}.csv"), b"h\n1\n").expect("put");
    }
    let input = json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out", "dest_prefix": "m/",
                       "batch_size": 2, "run_id": "r", "delete_sources": true, "single_output": true});
    let generated =
        generate_batches(client, &MergeRequest::from_input(&input, 1000, "x").expect("valid"), 8).await.expect("ok");
    // No batch ran: the aggregator must say so and touch nothing.
    let task = json!({"run_id": "r", "source_bucket": "b-in", "dest_bucket": "b-out", "run_prefix": generated.run_prefix,
                      "single_output": true, "delete_sources": true});
    let summary = results_aggregator::handle(client, &task).await.expect("report written");
    assert_eq!(summary.failed_batches, 2);
    assert_eq!(summary.deleted_sources, 0);
    assert_eq!(summary.merged_key, None);
    assert_eq!(server.keys("b-in").len(), 4, "no source deleted");
    let report: serde_json::Value =
        serde_json::from_slice(&server.object("b-out", "m/r/report.json").expect("report").data).expect("json");
    assert_eq!(report["failed_batches"][0]["reason"], "no result: the batch did not complete");

    let err = results_aggregator::handle(client, &json!({"run_id": 5})).await.expect_err("bad input");
    assert_eq!(err.error_type(), "InvalidInput");
}
