//! Listing as a stream over every page of ListObjectsV2: a prefix of
//! millions of keys is never held in memory at once, and a consumer can
//! start work on the first page while later pages are still being fetched.
//!
//! [`list_objects`] walks the pages one after another. [`list_objects_parallel`]
//! keeps many ListObjectsV2 calls in flight over disjoint key ranges and
//! still yields every key once, in key order (see `parallel.rs`).

mod capture;
mod keyspace;
mod page_xml;
mod parallel;

pub use parallel::list_objects_parallel;

use crate::error::{ListError, S3Failure};
use crate::keys::decode_event_key_owned;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::operation::list_objects_v2::builders::ListObjectsV2FluentBuilder;
use aws_sdk_s3::types::EncodingType;
use capture::{CaptureListBody, CapturedBody};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use page_xml::{Kept, parse_list_page};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    /// As S3 returns it, quotes included.
    pub etag: Option<String>,
    /// Milliseconds since the epoch (S3 gives whole seconds).
    pub last_modified_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys ending with this are yielded (S3 cannot filter by suffix, so
    /// this is applied to each page).
    pub suffix: Option<String>,
    /// Listing starts after this key; S3 orders keys by UTF-8 bytes.
    pub start_after: Option<String>,
    /// Keys under this prefix are left out: a run's own output living under
    /// its source prefix must not be read back as input.
    pub exclude_prefix: Option<String>,
    /// Page size; S3 caps it at 1,000.
    pub page_size: Option<i32>,
    /// Counts the ListObjectsV2 calls made, for reports.
    pub pages: Option<Arc<AtomicU64>>,
    /// Leaves `ObjectSummary::etag` unset: a listing that never reads it
    /// (the merge's) saves an allocation and a free per key.
    pub without_etags: bool,
    /// Leaves `ObjectSummary::last_modified_ms` unset (a date parse per key).
    pub without_last_modified: bool,
}

impl ListOptions {
    fn wanted(&self, key: &str) -> bool {
        self.suffix.as_deref().is_none_or(|suffix| key.ends_with(suffix))
            && self.exclude_prefix.as_deref().is_none_or(|excluded| !key.starts_with(excluded))
    }
}

/// One ListObjectsV2 response: every key in it, decoded, unfiltered.
struct Page {
    objects: Vec<ObjectSummary>,
    /// Set when S3 has more keys after the last one of this page.
    next_token: Option<String>,
}

/// Where a page starts: after a key, or where the previous page said.
enum From<'a> {
    After(Option<&'a str>),
    Token(&'a str),
}

/// One ListObjectsV2 call under `prefix`, keys URL-encoded, counted in
/// `options.pages`, its failure named; `configure` sets the rest. With
/// `capture`, a successful response's body goes there, not to the SDK's
/// deserializer.
async fn call(
    client: &Client,
    bucket: &str,
    prefix: &str,
    options: &ListOptions,
    capture: Option<&CapturedBody>,
    configure: impl FnOnce(ListObjectsV2FluentBuilder) -> ListObjectsV2FluentBuilder,
) -> Result<ListObjectsV2Output, ListError> {
    let request = client.list_objects_v2().bucket(bucket).prefix(prefix).encoding_type(EncodingType::Url);
    if let Some(pages) = &options.pages {
        pages.fetch_add(1, Ordering::Relaxed);
    }
    let request = configure(request);
    let sent = match capture {
        Some(slot) => request.customize().interceptor(CaptureListBody(slot.clone())).send().await,
        None => request.send().await,
    };
    sent.map_err(|err| list_failure(bucket, prefix, S3Failure::from_sdk(&err)))
}

/// One page from `from`, of at most `max_keys` keys (S3's 1,000 when
/// `None`).
async fn fetch_page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    from: From<'_>,
    max_keys: Option<i32>,
    options: &ListOptions,
) -> Result<Page, ListError> {
    let captured = CapturedBody::default();
    let page = call(client, bucket, prefix, options, Some(&captured), |request| {
        let request = request.set_max_keys(max_keys);
        match from {
            From::Token(token) => request.continuation_token(token),
            From::After(after) => request.set_start_after(after.filter(|a| !a.is_empty()).map(str::to_owned)),
        }
    })
    .await?;
    if let Some(body) = captured.take() {
        let kept = Kept { etags: !options.without_etags, last_modified: !options.without_last_modified };
        let page = read_page(bucket, prefix, &body, kept);
        capture::recycle(body);
        return page;
    }
    let next_token = page.next_continuation_token().filter(|_| page.is_truncated() == Some(true)).map(str::to_owned);
    let encoded = page.encoding_type() == Some(&EncodingType::Url);
    let mut objects = Vec::with_capacity(page.contents().len());
    for object in page.contents() {
        let Some(raw) = object.key() else { continue };
        let key = decode_listed(bucket, prefix, raw.to_owned(), encoded)?;
        objects.push(ObjectSummary {
            size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            etag: object.e_tag().filter(|_| !options.without_etags).map(str::to_owned),
            last_modified_ms: object
                .last_modified()
                .filter(|_| !options.without_last_modified)
                .and_then(|t| t.to_millis().ok())
                .and_then(|ms| u64::try_from(ms).ok()),
            key,
        });
    }
    Ok(Page { objects, next_token })
}

/// A captured page body, read by `page_xml`.
fn read_page(bucket: &str, prefix: &str, body: &[u8], kept: Kept) -> Result<Page, ListError> {
    let listed = parse_list_page(body, kept).map_err(|reason| ListError::BadPage {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        reason,
    })?;
    let mut objects = Vec::with_capacity(listed.objects.len());
    for object in listed.objects {
        let key = decode_listed(bucket, prefix, object.key, listed.url_encoded)?;
        objects.push(ObjectSummary {
            size: object.size.unwrap_or(0),
            etag: object.etag,
            last_modified_ms: object.last_modified_ms,
            key,
        });
    }
    let next_token = listed.next_token.filter(|_| listed.is_truncated);
    Ok(Page { objects, next_token })
}

fn list_failure(bucket: &str, prefix: &str, failure: S3Failure) -> ListError {
    if failure.is_no_such_bucket() {
        ListError::NoSuchBucket { bucket: bucket.to_owned(), prefix: prefix.to_owned() }
    } else {
        ListError::Failed { bucket: bucket.to_owned(), prefix: prefix.to_owned(), failure }
    }
}

/// A key or folder as S3 listed it: URL encoding lets keys holding
/// characters XML 1.0 cannot carry come through intact, so it is undone
/// only when S3 says it applied it.
fn decode_listed(bucket: &str, prefix: &str, raw: String, encoded: bool) -> Result<String, ListError> {
    if !encoded {
        return Ok(raw);
    }
    decode_event_key_owned(raw).map_err(|err| ListError::BadKey {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        message: err.to_string(),
    })
}

/// Every object under `prefix`, page by page, in key order.
pub fn list_objects(
    client: &Client,
    bucket: &str,
    prefix: &str,
    options: ListOptions,
) -> BoxStream<'static, Result<ObjectSummary, ListError>> {
    struct State {
        client: Client,
        bucket: String,
        prefix: String,
        options: ListOptions,
        token: Option<String>,
        done: bool,
    }
    let state = State {
        client: client.clone(),
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        options,
        token: None,
        done: false,
    };
    stream::try_unfold(state, |mut st| async move {
        if st.done {
            return Ok(None);
        }
        let from = match &st.token {
            Some(token) => From::Token(token),
            None => From::After(st.options.start_after.as_deref()),
        };
        let page = fetch_page(&st.client, &st.bucket, &st.prefix, from, st.options.page_size, &st.options).await?;
        st.token = page.next_token;
        st.done = st.token.is_none();
        let options = &st.options;
        let objects: Vec<ObjectSummary> = page.objects.into_iter().filter(|o| options.wanted(&o.key)).collect();
        Ok(Some((stream::iter(objects.into_iter().map(Ok::<_, ListError>)), st)))
    })
    .try_flatten()
    .boxed()
}
