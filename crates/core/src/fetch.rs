//! GETs many keys with a bounded number in flight and yields the bodies in
//! the order the keys were given, whatever order they finish in. A merge
//! needs rows in key order; fetching one by one is what made the replaced
//! system take five hours.

use crate::direct::Direct;
use crate::error::{GetError, S3Failure};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};

/// Attempts to read a body whose response arrived but whose bytes were cut
/// off: the SDK retries requests, not the streaming body that follows.
const BODY_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub struct Fetched {
    pub key: String,
    pub result: Result<Bytes, GetError>,
}

/// Fetches every key of `keys` from `bucket` with at most `concurrency`
/// requests in flight, yielding results in input order. At most
/// `concurrency` bodies are held at once, finished or not.
pub fn fetch_many<I>(
    client: &Client,
    bucket: &str,
    keys: I,
    concurrency: usize,
) -> impl Stream<Item = Fetched> + Send + 'static
where
    I: IntoIterator<Item = String>,
    I::IntoIter: Send + 'static,
{
    fetch_many_with(Direct::new(client), client, bucket, keys, concurrency)
}

/// As [`fetch_many`], each GET tried on `direct` first.
pub fn fetch_many_with<I>(
    direct: Direct,
    client: &Client,
    bucket: &str,
    keys: I,
    concurrency: usize,
) -> impl Stream<Item = Fetched> + Send + 'static
where
    I: IntoIterator<Item = String>,
    I::IntoIter: Send + 'static,
{
    let client = client.clone();
    let bucket = bucket.to_owned();
    stream::iter(keys)
        .map(move |key| {
            let client = client.clone();
            let direct = direct.clone();
            let bucket = bucket.clone();
            async move {
                let result = match direct.get_object(&bucket, &key).await {
                    Ok((body, _etag)) => Ok(body),
                    // Boxed: the SDK's future is kilobytes, and every key's
                    // future would otherwise carry (and move) it.
                    Err(_) => Box::pin(get_object(&client, &bucket, &key)).await,
                };
                Fetched { key, result }
            }
        })
        .buffered(concurrency.max(1))
}

/// One GET, the body read whole.
pub async fn get_object(client: &Client, bucket: &str, key: &str) -> Result<Bytes, GetError> {
    get_object_with_etag(client, bucket, key).await.map(|(body, _)| body)
}

/// One GET, the body read whole, with the ETag of the version read (for a
/// later conditional write).
pub async fn get_object_with_etag(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<(Bytes, Option<String>), GetError> {
    let mut attempt = 1;
    loop {
        let response = client.get_object().bucket(bucket).key(key).send().await.map_err(|err| {
            let failure = S3Failure::from_sdk(&err);
            if failure.is_no_such_bucket() {
                GetError::NoSuchBucket { bucket: bucket.to_owned(), key: key.to_owned() }
            } else if failure.is_not_found() {
                GetError::NoSuchKey { bucket: bucket.to_owned(), key: key.to_owned() }
            } else {
                GetError::Failed { bucket: bucket.to_owned(), key: key.to_owned(), failure }
            }
        })?;
        let etag = response.e_tag().map(str::to_owned);
        match response.body.collect().await {
            Ok(body) => return Ok((body.into_bytes(), etag)),
            Err(err) if attempt < BODY_ATTEMPTS => {
                tracing::debug!(bucket, key, attempt, error = %err, "body read failed, fetching again");
                attempt += 1;
            }
            Err(err) => {
                return Err(GetError::Body {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    message: err.to_string(),
                });
            }
        }
    }
}
