//! Deletes many keys in DeleteObjects calls of at most 1,000 keys. S3 rejects
//! larger calls but local servers accept them, so the limit is kept here
//! rather than discovered in production. Per-key errors inside a successful
//! call are collected, never dropped.

use crate::error::{DeleteError, S3Failure};
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::{StreamExt, stream};

/// S3's limit on keys per DeleteObjects request.
pub const MAX_KEYS_PER_DELETE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub key: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct DeleteReport {
    pub requested: usize,
    pub deleted: usize,
    /// Keys S3 refused one by one (AccessDenied, ...).
    pub failed: Vec<DeleteFailure>,
    /// Whole calls that failed; their keys were not deleted.
    pub batch_errors: Vec<DeleteError>,
}

impl DeleteReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.batch_errors.is_empty()
    }
}

/// Deletes `keys` from `bucket`, `concurrency` calls at a time.
pub async fn delete_many<I>(client: &Client, bucket: &str, keys: I, concurrency: usize) -> DeleteReport
where
    I: IntoIterator<Item = String>,
{
    let keys: Vec<String> = keys.into_iter().collect();
    let mut report = DeleteReport { requested: keys.len(), ..DeleteReport::default() };
    let chunks: Vec<Vec<String>> = keys.chunks(MAX_KEYS_PER_DELETE).map(<[String]>::to_vec).collect();
    let mut results =
        stream::iter(chunks).map(|chunk| delete_chunk(client, bucket, chunk)).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Ok((deleted, failed)) => {
                report.deleted += deleted;
                report.failed.extend(failed);
            }
            Err(err) => report.batch_errors.push(err),
        }
    }
    report
}

async fn delete_chunk(
    client: &Client,
    bucket: &str,
    chunk: Vec<String>,
) -> Result<(usize, Vec<DeleteFailure>), DeleteError> {
    let count = chunk.len();
    let objects = chunk
        .into_iter()
        .map(|key| ObjectIdentifier::builder().key(key).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| DeleteError::Batch {
            bucket: bucket.to_owned(),
            count,
            failure: S3Failure { code: None, status: None, message: err.to_string() },
        })?;
    let delete =
        Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(|err| DeleteError::Batch {
            bucket: bucket.to_owned(),
            count,
            failure: S3Failure { code: None, status: None, message: err.to_string() },
        })?;
    let output =
        client.delete_objects().bucket(bucket).delete(delete).send().await.map_err(|err| DeleteError::Batch {
            bucket: bucket.to_owned(),
            count,
            failure: S3Failure::from_sdk(&err),
        })?;
    let failed: Vec<DeleteFailure> = output
        .errors()
        .iter()
        .map(|e| DeleteFailure {
            key: e.key().unwrap_or_default().to_owned(),
            code: e.code().unwrap_or("Unknown").to_owned(),
            message: e.message().unwrap_or_default().to_owned(),
        })
        .collect();
    Ok((count - failed.len(), failed))
}
