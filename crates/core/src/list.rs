//! Listing as a stream over every page of ListObjectsV2: a prefix of 300,000
//! keys is never held in memory at once, and a consumer can start work on
//! the first page while later pages are still being fetched.

use crate::error::{ListError, S3Failure};
use crate::keys::decode_event_key;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::EncodingType;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    /// As S3 returns it, quotes included.
    pub etag: Option<String>,
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
        // URL encoding lets keys holding characters XML 1.0 cannot carry come
        // through intact; keys are decoded below only if S3 says it encoded them.
        let mut request =
            st.client.list_objects_v2().bucket(&st.bucket).prefix(&st.prefix).encoding_type(EncodingType::Url);
        if let Some(size) = st.options.page_size {
            request = request.max_keys(size);
        }
        request = match &st.token {
            Some(token) => request.continuation_token(token),
            None => request.set_start_after(st.options.start_after.clone()),
        };
        if let Some(pages) = &st.options.pages {
            pages.fetch_add(1, Ordering::Relaxed);
        }
        let page = request.send().await.map_err(|err| {
            let failure = S3Failure::from_sdk(&err);
            if failure.is_no_such_bucket() {
                ListError::NoSuchBucket { bucket: st.bucket.clone(), prefix: st.prefix.clone() }
            } else {
                ListError::Failed { bucket: st.bucket.clone(), prefix: st.prefix.clone(), failure }
            }
        })?;
        st.token = page.next_continuation_token().filter(|_| page.is_truncated() == Some(true)).map(str::to_owned);
        st.done = st.token.is_none();
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        let mut objects = Vec::with_capacity(page.contents().len());
        for object in page.contents() {
            let Some(raw) = object.key() else { continue };
            let key = if encoded {
                decode_event_key(raw).map_err(|err| ListError::BadKey {
                    bucket: st.bucket.clone(),
                    prefix: st.prefix.clone(),
                    message: err.to_string(),
                })?
            } else {
                raw.to_owned()
            };
            let wanted = st.options.suffix.as_deref().is_none_or(|suffix| key.ends_with(suffix))
                && st.options.exclude_prefix.as_deref().is_none_or(|excluded| !key.starts_with(excluded));
            if wanted {
                objects.push(ObjectSummary {
                    size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: object.e_tag().map(str::to_owned),
                    key,
                });
            }
        }
        Ok(Some((stream::iter(objects.into_iter().map(Ok::<_, ListError>)), st)))
    })
    .try_flatten()
    .boxed()
}
