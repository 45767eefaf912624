//! Moving one object safely: copy, confirm, and only then delete.
//!
//! The rules, each guarding against a loss peers have shipped:
//! - the copy is pinned to the ETag the event announced
//!   (`x-amz-copy-source-if-match`), so a newer object that replaced the key
//!   is neither copied under the old event's name nor deleted;
//! - a copy counts only when S3 returns its result with an ETag: a 200 whose
//!   body is an error is not a copy;
//! - the delete carries `If-Match` with the same ETag, so an object uploaded
//!   again between our copy and our delete survives;
//! - a repeated event finds the source gone and the destination present and
//!   succeeds; a source gone with no destination is reported;
//! - a key that would map onto itself, or that is already under the
//!   destination prefix of the same bucket, is skipped, never deleted.

use crate::config::MoverConfig;
use crate::direct::Direct;
use crate::error::{CopyError, DeleteError, HeadError, MoveError, MultipartCopyError, S3Failure};
use crate::keys::{KeyMapping, encode_copy_source};
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt, stream};
use std::fmt;

const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
const PART_COPY_CONCURRENCY: usize = 16;

/// One object to move, as an event or a listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    pub bucket: String,
    pub key: String,
    /// The ETag the event announced, with or without quotes.
    pub etag: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    WrongBucket {
        expected: String,
    },
    OutsideSourcePrefix {
        prefix: String,
    },
    UnderDestinationPrefix {
        prefix: String,
    },
    MapsOntoItself,
    /// The key now holds another object than the event announced; that
    /// object's own event moves it.
    SourceChanged {
        event_etag: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongBucket { expected } => write!(f, "bucket is not SOURCE_BUCKET {expected}"),
            Self::OutsideSourcePrefix { prefix } => write!(f, "key is not under SOURCE_PREFIX {prefix:?}"),
            Self::UnderDestinationPrefix { prefix } => {
                write!(f, "key is already under the destination prefix {prefix:?} of the same bucket")
            }
            Self::MapsOntoItself => f.write_str("destination is the source itself"),
            Self::SourceChanged { event_etag } => {
                write!(f, "source was replaced since the event (ETag is no longer {event_etag}); left in place")
            }
        }
    }
}

/// Why a copied source was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptReason {
    /// `DELETE_SOURCE=false`.
    CopyOnly,
    /// A new object was written to the key between our copy and our delete.
    ReplacedAfterCopy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    Moved {
        dest_bucket: String,
        dest_key: String,
        bytes: Option<u64>,
    },
    /// Copied, and the source kept on purpose.
    Copied {
        dest_bucket: String,
        dest_key: String,
        bytes: Option<u64>,
        kept: KeptReason,
    },
    /// A repeated or late event: the source is gone and the destination holds it.
    AlreadyMoved {
        dest_bucket: String,
        dest_key: String,
    },
    /// The source is gone and the destination does not hold it: reported, as
    /// an event for an object nobody can find means something upstream is wrong.
    SourceMissing {
        dest_bucket: String,
        dest_key: String,
    },
    Skipped {
        reason: SkipReason,
    },
}

impl MoveOutcome {
    /// Whether this outcome must be reported as a failure.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::SourceMissing { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Moved { .. } => "Moved",
            Self::Copied { .. } => "Copied",
            Self::AlreadyMoved { .. } => "AlreadyMoved",
            Self::SourceMissing { .. } => "SourceMissing",
            Self::Skipped { .. } => "Skipped",
        }
    }
}

/// Quotes an ETag for `If-Match` headers, which take quoted entity tags;
/// S3 events carry them bare.
fn quoted(etag: &str) -> String {
    let bare = etag.trim_matches('"');
    format!("\"{bare}\"")
}

/// Moves objects according to a [`MoverConfig`].
#[derive(Debug, Clone)]
pub struct Mover {
    client: Client,
    /// CopyObject and DeleteObject's plain success without the SDK's
    /// per-request work; anything else goes through `client`.
    direct: Direct,
    config: MoverConfig,
    mapping: KeyMapping,
    part_size: Option<u64>,
}

impl Mover {
    pub fn new(client: Client, config: MoverConfig) -> Self {
        let mapping = KeyMapping::new(&config.source_prefix, &config.dest_prefix, config.keep_source_prefix);
        let direct = Direct::configured(&client, config.sdk_only);
        Self { client, direct, config, mapping, part_size: None }
    }

    /// Fixes the multipart copy part size (at least 5 MiB); by default it is
    /// 64 MiB, or larger when the object would need more than 10,000 parts.
    pub fn with_part_size(mut self, part_size: u64) -> Self {
        self.part_size = Some(part_size.max(MIN_PART_SIZE));
        self
    }

    pub fn config(&self) -> &MoverConfig {
        &self.config
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How many copies and deletes went direct, and how many through the SDK.
    pub fn direct_counts(&self) -> crate::direct::DirectCounts {
        self.direct.counts()
    }

    /// Where `bucket`/`key` goes, or why it stays: no S3 call is made.
    pub fn route(&self, bucket: &str, key: &str) -> Result<String, SkipReason> {
        if let Some(expected) = &self.config.source_bucket
            && expected != bucket
        {
            return Err(SkipReason::WrongBucket { expected: expected.clone() });
        }
        let dest_key = self
            .mapping
            .map(key)
            .ok_or_else(|| SkipReason::OutsideSourcePrefix { prefix: self.mapping.source_prefix().to_owned() })?;
        if bucket == self.config.dest_bucket {
            let dest_prefix = self.mapping.dest_prefix();
            if !dest_prefix.is_empty() && key.starts_with(dest_prefix) {
                return Err(SkipReason::UnderDestinationPrefix { prefix: dest_prefix.to_owned() });
            }
            if dest_key == key {
                return Err(SkipReason::MapsOntoItself);
            }
        }
        Ok(dest_key)
    }

    /// Moves one object. Every error leaves the source where it was.
    pub async fn move_object(&self, request: &MoveRequest) -> Result<MoveOutcome, MoveError> {
        let dest_key = match self.route(&request.bucket, &request.key) {
            Ok(dest_key) => dest_key,
            Err(reason) => return Ok(MoveOutcome::Skipped { reason }),
        };
        let dest_bucket = self.config.dest_bucket.clone();
        // A longer destination prefix can push a legal source key over the
        // limit; S3 would refuse the copy anyway, but this names the cause.
        if dest_key.len() > crate::keys::MAX_KEY_BYTES {
            return Err(MoveError::DestinationKeyTooLong {
                src_bucket: request.bucket.clone(),
                src_key: request.key.clone(),
                dst_bucket: dest_bucket,
                len: dest_key.len(),
            });
        }
        if request.size.is_some_and(|size| size > self.config.multipart_copy_threshold) {
            return Box::pin(self.multipart_move(request, &dest_key)).await;
        }
        match self.copy(request, &dest_key).await {
            Ok(()) => {}
            Err(CopyFailure::SourceChanged) => {
                let event_etag = request.etag.clone().unwrap_or_default();
                return Ok(MoveOutcome::Skipped { reason: SkipReason::SourceChanged { event_etag } });
            }
            Err(CopyFailure::SourceGone) => {
                return match Box::pin(self.head(&dest_bucket, &dest_key)).await? {
                    Some(_) => Ok(MoveOutcome::AlreadyMoved { dest_bucket, dest_key }),
                    None => Ok(MoveOutcome::SourceMissing { dest_bucket, dest_key }),
                };
            }
            Err(CopyFailure::TooLarge(_)) if request.size.is_none() => {
                return Box::pin(self.multipart_move(request, &dest_key)).await;
            }
            Err(CopyFailure::TooLarge(err) | CopyFailure::Other(err)) => return Err(err.into()),
        }
        self.finish(request, request.etag.as_deref(), dest_bucket, dest_key, request.size).await
    }

    /// The step after a confirmed copy: delete the source, pinned to the
    /// ETag that was copied, unless the configuration keeps sources.
    async fn finish(
        &self,
        request: &MoveRequest,
        etag: Option<&str>,
        dest_bucket: String,
        dest_key: String,
        bytes: Option<u64>,
    ) -> Result<MoveOutcome, MoveError> {
        if !self.config.delete_source {
            return Ok(MoveOutcome::Copied { dest_bucket, dest_key, bytes, kept: KeptReason::CopyOnly });
        }
        let if_match = etag.map(quoted);
        if self.direct.delete_object(&request.bucket, &request.key, if_match.as_deref()).await.is_ok() {
            return Ok(MoveOutcome::Moved { dest_bucket, dest_key, bytes });
        }
        let delete = self.client.delete_object().bucket(&request.bucket).key(&request.key).set_if_match(if_match);
        // The SDK's futures are boxed here and below: kilobytes each, they
        // would otherwise make every object's move future that large.
        match Box::pin(delete.send()).await {
            Ok(_) => Ok(MoveOutcome::Moved { dest_bucket, dest_key, bytes }),
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                if failure.is_precondition_failed() {
                    tracing::warn!(bucket = %request.bucket, key = %request.key, "source replaced after copy; kept");
                    Ok(MoveOutcome::Copied { dest_bucket, dest_key, bytes, kept: KeptReason::ReplacedAfterCopy })
                } else if failure.is_not_found() {
                    // A concurrent delivery of the same event deleted it first.
                    Ok(MoveOutcome::Moved { dest_bucket, dest_key, bytes })
                } else {
                    Err(DeleteError::Failed { bucket: request.bucket.clone(), key: request.key.clone(), failure }
                        .into())
                }
            }
        }
    }

    async fn copy(&self, request: &MoveRequest, dest_key: &str) -> Result<(), CopyFailure> {
        let dst_bucket = &self.config.dest_bucket;
        let copy_source = encode_copy_source(&request.bucket, &request.key);
        let if_match = request.etag.as_deref().map(quoted);
        if self.direct.copy_object(&copy_source, if_match.as_deref(), dst_bucket, dest_key).await.is_ok() {
            return Ok(());
        }
        let copy = self
            .client
            .copy_object()
            .copy_source(copy_source)
            .bucket(dst_bucket)
            .key(dest_key)
            .set_copy_source_if_match(if_match);
        let error = |failure: S3Failure| CopyError::Failed {
            src_bucket: request.bucket.clone(),
            src_key: request.key.clone(),
            dst_bucket: dst_bucket.clone(),
            dst_key: dest_key.to_owned(),
            failure,
        };
        match Box::pin(copy.send()).await {
            Ok(output) => {
                let confirmed =
                    output.copy_object_result().and_then(|r| r.e_tag()).is_some_and(|etag| !etag.is_empty());
                if confirmed {
                    Ok(())
                } else {
                    Err(CopyFailure::Other(CopyError::Unconfirmed {
                        src_bucket: request.bucket.clone(),
                        src_key: request.key.clone(),
                        dst_bucket: dst_bucket.clone(),
                        dst_key: dest_key.to_owned(),
                        why: "the response carried no CopyObjectResult ETag".into(),
                    }))
                }
            }
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                if failure.is_precondition_failed() {
                    Err(CopyFailure::SourceChanged)
                } else if failure.is_no_such_bucket() {
                    Err(CopyFailure::Other(CopyError::NoSuchBucket {
                        src_bucket: request.bucket.clone(),
                        src_key: request.key.clone(),
                        dst_bucket: dst_bucket.clone(),
                        dst_key: dest_key.to_owned(),
                    }))
                } else if failure.is_not_found() {
                    Err(CopyFailure::SourceGone)
                } else if failure.code_is("InvalidRequest") && failure.message.contains("larger than the maximum") {
                    Err(CopyFailure::TooLarge(error(failure)))
                } else {
                    Err(CopyFailure::Other(error(failure)))
                }
            }
        }
    }

    /// HEAD, with "not found" as `None` rather than an error.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, HeadError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(output) => Ok(Some(Head {
                size: output.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                etag: output.e_tag().map(str::to_owned),
                output,
            })),
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                if failure.is_no_such_bucket() {
                    Err(HeadError::NoSuchBucket { bucket: bucket.to_owned(), key: key.to_owned() })
                } else if failure.is_not_found() {
                    Ok(None)
                } else {
                    Err(HeadError::Failed { bucket: bucket.to_owned(), key: key.to_owned(), failure })
                }
            }
        }
    }

    /// UploadPartCopy in parallel parts, for objects above the threshold or
    /// above what one CopyObject can copy. Metadata, content type and tags
    /// are carried over by hand, because a multipart upload starts empty.
    async fn multipart_move(&self, request: &MoveRequest, dest_key: &str) -> Result<MoveOutcome, MoveError> {
        let dest_bucket = self.config.dest_bucket.clone();
        let Some(head) = self.head(&request.bucket, &request.key).await? else {
            return match self.head(&dest_bucket, dest_key).await? {
                Some(_) => Ok(MoveOutcome::AlreadyMoved { dest_bucket, dest_key: dest_key.to_owned() }),
                None => Ok(MoveOutcome::SourceMissing { dest_bucket, dest_key: dest_key.to_owned() }),
            };
        };
        let source_etag = head.etag.clone().unwrap_or_default();
        if let Some(event_etag) = &request.etag
            && quoted(event_etag) != quoted(&source_etag)
        {
            return Ok(MoveOutcome::Skipped { reason: SkipReason::SourceChanged { event_etag: event_etag.clone() } });
        }
        let fail = |step: &'static str, failure: S3Failure| {
            MoveError::Multipart(Box::new(MultipartCopyError {
                src_bucket: request.bucket.clone(),
                src_key: request.key.clone(),
                dst_bucket: dest_bucket.clone(),
                dst_key: dest_key.to_owned(),
                step,
                failure,
            }))
        };
        let tags = self
            .client
            .get_object_tagging()
            .bucket(&request.bucket)
            .key(&request.key)
            .send()
            .await
            .map_err(|err| fail("GetObjectTagging", S3Failure::from_sdk(&err)))?;
        let tagging = tags
            .tag_set()
            .iter()
            .fold(form_urlencoded::Serializer::new(String::new()), |mut s, tag| {
                s.append_pair(tag.key(), tag.value());
                s
            })
            .finish();
        let h = &head.output;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&dest_bucket)
            .key(dest_key)
            .set_content_type(h.content_type().map(str::to_owned))
            .set_cache_control(h.cache_control().map(str::to_owned))
            .set_content_disposition(h.content_disposition().map(str::to_owned))
            .set_content_encoding(h.content_encoding().map(str::to_owned))
            .set_content_language(h.content_language().map(str::to_owned))
            .set_metadata(h.metadata().cloned())
            .set_tagging((!tagging.is_empty()).then_some(tagging))
            .send()
            .await
            .map_err(|err| fail("CreateMultipartUpload", S3Failure::from_sdk(&err)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                fail(
                    "CreateMultipartUpload",
                    S3Failure { code: None, status: None, message: "no UploadId in the response".into() },
                )
            })?
            .to_owned();

        let result = self.copy_parts(request, dest_key, &upload_id, head.size, &source_etag).await;
        let completed = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&dest_bucket)
                .key(dest_key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|err| fail("CompleteMultipartUpload", S3Failure::from_sdk(&err)))
                .and_then(|out| {
                    out.e_tag().filter(|e| !e.is_empty()).map(|_| ()).ok_or_else(|| {
                        fail(
                            "CompleteMultipartUpload",
                            S3Failure { code: None, status: None, message: "no ETag in the response".into() },
                        )
                    })
                }),
            Err((step, failure)) => Err(fail(step, failure)),
        };
        if let Err(err) = completed {
            // Parts of an unfinished upload are billed until aborted.
            if let Err(abort) = self
                .client
                .abort_multipart_upload()
                .bucket(&dest_bucket)
                .key(dest_key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(bucket = %dest_bucket, key = %dest_key, upload_id, error = %S3Failure::from_sdk(&abort), "abort failed");
            }
            if let MoveError::Multipart(multipart) = &err
                && multipart.failure.is_precondition_failed()
            {
                let event_etag = request.etag.clone().unwrap_or(source_etag);
                return Ok(MoveOutcome::Skipped { reason: SkipReason::SourceChanged { event_etag } });
            }
            return Err(err);
        }
        self.finish(request, Some(&source_etag), dest_bucket, dest_key.to_owned(), Some(head.size)).await
    }

    async fn copy_parts(
        &self,
        request: &MoveRequest,
        dest_key: &str,
        upload_id: &str,
        size: u64,
        source_etag: &str,
    ) -> Result<Vec<CompletedPart>, (&'static str, S3Failure)> {
        let part_size = self.part_size.unwrap_or_else(|| DEFAULT_PART_SIZE.max(size.div_ceil(MAX_PARTS)));
        let count = size.div_ceil(part_size).max(1);
        let copy_source = encode_copy_source(&request.bucket, &request.key);
        let parts: Vec<CompletedPart> = stream::iter(0..count)
            .map(|index| {
                let start = index * part_size;
                let end = (start + part_size).min(size).saturating_sub(1);
                let part_number = i32::try_from(index + 1).unwrap_or(i32::MAX);
                let call = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.config.dest_bucket)
                    .key(dest_key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .copy_source(&copy_source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .copy_source_if_match(quoted(source_etag));
                async move {
                    let out = call.send().await.map_err(|err| ("UploadPartCopy", S3Failure::from_sdk(&err)))?;
                    let etag = out.copy_part_result().and_then(|r| r.e_tag()).filter(|e| !e.is_empty()).ok_or((
                        "UploadPartCopy",
                        S3Failure { code: None, status: None, message: format!("part {part_number} returned no ETag") },
                    ))?;
                    Ok::<_, (&'static str, S3Failure)>(
                        CompletedPart::builder().part_number(part_number).e_tag(etag).build(),
                    )
                }
            })
            .buffered(PART_COPY_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(parts)
    }
}

struct Head {
    size: u64,
    etag: Option<String>,
    output: aws_sdk_s3::operation::head_object::HeadObjectOutput,
}

enum CopyFailure {
    SourceChanged,
    SourceGone,
    TooLarge(CopyError),
    Other(CopyError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mover(source_bucket: Option<&str>, source_prefix: &str, dest_prefix: &str, keep: bool) -> Mover {
        let client = crate::client_for_endpoint("http://127.0.0.1:9", "a", "b", &Default::default());
        let config = MoverConfig {
            dest_bucket: "dst".into(),
            dest_prefix: dest_prefix.into(),
            source_prefix: source_prefix.into(),
            keep_source_prefix: keep,
            source_bucket: source_bucket.map(str::to_owned),
            delete_source: true,
            multipart_copy_threshold: crate::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
            fetch_concurrency: 4,
            sdk_only: false,
        };
        Mover::new(client, config)
    }

    #[test]
    fn routes_and_guards() {
        let m = mover(Some("src"), "in/", "out", false);
        assert_eq!(m.route("src", "in/a b.csv").as_deref(), Ok("out/a b.csv"));
        assert!(matches!(m.route("other", "in/a"), Err(SkipReason::WrongBucket { .. })));
        assert!(matches!(m.route("src", "elsewhere/a"), Err(SkipReason::OutsideSourcePrefix { .. })));

        // Same bucket, destination inside the source prefix: no loop.
        let same = mover(None, "", "archive/", false);
        assert!(matches!(same.route("dst", "archive/x"), Err(SkipReason::UnderDestinationPrefix { .. })));
        assert_eq!(same.route("dst", "x").as_deref(), Ok("archive/x"));

        // Same bucket, empty prefixes: every key maps onto itself.
        let itself = mover(None, "", "", false);
        assert_eq!(itself.route("dst", "x"), Err(SkipReason::MapsOntoItself));
        assert_eq!(itself.route("src", "x").as_deref(), Ok("x"));
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
    }
}
