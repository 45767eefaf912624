//! The `s3s::S3` implementation: translates S3 operations onto the store
//! and produces the error codes and statuses real S3 returns.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{Body, S3, S3Error, S3Request, S3Response, S3Result, s3_error};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result};
use crate::store::{EtagMatch, ListPage, ListParams, ObjectAttrs, ObjectMeta, Precondition, Staging, Store, unix_secs};

/// Objects up to this size are read in one go on the calling task: a read
/// from the page cache is cheaper than a hop to the blocking pool.
const INLINE_READ_MAX: u64 = 256 * 1024;
const MAX_KEYS: i32 = 1000;
const MAX_TAGS: usize = 10;
const OWNER_ID: &str = "local-s3";

pub(crate) struct Backend {
    store: Arc<Store>,
}

impl Backend {
    pub fn new(store: Arc<Store>) -> Self {
        Backend { store }
    }

    /// Reads a request body into `staging`, writing it out in large chunks
    /// on the blocking pool.
    async fn receive(
        &self,
        mut staging: Staging,
        body: Option<StreamingBlob>,
        bucket: &str,
        key: &str,
    ) -> S3Result<Staging> {
        let Some(mut body) = body else { return Ok(staging) };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::IncompleteBody {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
            staging.push(&chunk);
            if staging.wants_flush() {
                staging = blocking(move || {
                    staging.flush()?;
                    Ok(staging)
                })
                .await?;
            }
        }
        Ok(staging)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Task(e.to_string()))?
}

fn etag_match(c: &ETagCondition) -> EtagMatch {
    match c {
        ETagCondition::Any => EtagMatch::Any,
        // S3 compares opaque values; a W/ prefix is not meaningful there.
        ETagCondition::ETag(e) => EtagMatch::Etag(e.value().to_owned()),
    }
}

fn header_condition(headers: &http::HeaderMap, name: http::header::HeaderName) -> S3Result<Option<EtagMatch>> {
    let Some(value) = headers.get(&name) else { return Ok(None) };
    let cond = ETagCondition::parse_http_header(value.as_bytes())
        .map_err(|_| s3_error!(InvalidArgument, "invalid {name} header"))?;
    Ok(Some(etag_match(&cond)))
}

fn timestamp_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn system_time(t: &Timestamp) -> SystemTime {
    time::OffsetDateTime::from(t.clone()).into()
}

fn modified_secs(meta: &ObjectMeta) -> i64 {
    i64::try_from(unix_secs(meta.last_modified)).unwrap_or(i64::MAX)
}

fn strong(etag: &str) -> ETag {
    ETag::Strong(etag.to_owned())
}

/// GET/HEAD conditions with S3's precedence: a passing If-Match overrides
/// If-Unmodified-Since, a failing If-None-Match overrides If-Modified-Since.
fn check_read_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    if let Some(c) = if_match {
        if !etag_match(c).matches(&meta.etag) {
            return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
        }
    } else if let Some(t) = if_unmodified_since
        && modified_secs(meta) > timestamp_secs(t)
    {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if let Some(c) = if_none_match {
        if etag_match(c).matches(&meta.etag) {
            return Err(not_modified(meta));
        }
    } else if let Some(t) = if_modified_since
        && modified_secs(meta) <= timestamp_secs(t)
    {
        return Err(not_modified(meta));
    }
    Ok(())
}

fn not_modified(meta: &ObjectMeta) -> S3Error {
    let mut err = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = strong(&meta.etag).to_http_header() {
        headers.insert(http::header::ETAG, v);
    }
    err.set_headers(headers);
    err
}

/// The copy-source conditions of CopyObject / UploadPartCopy; both
/// directions fail with 412, unlike GET's 304.
fn check_copy_source(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    bucket: &str,
    key: &str,
) -> Result<()> {
    let failed = || Error::PreconditionFailed { bucket: bucket.to_owned(), key: key.to_owned() };
    if let Some(c) = if_match {
        if !etag_match(c).matches(&meta.etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_unmodified_since
        && modified_secs(meta) > timestamp_secs(t)
    {
        return Err(failed());
    }
    if let Some(c) = if_none_match {
        if etag_match(c).matches(&meta.etag) {
            return Err(failed());
        }
    } else if let Some(t) = if_modified_since
        && modified_secs(meta) <= timestamp_secs(t)
    {
        return Err(failed());
    }
    Ok(())
}

fn form_decode(s: &str) -> Result<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::InvalidTag(format!("{s:?} is not UTF-8 once decoded")))
}

/// Parses an `x-amz-tagging` header (`k1=v1&k2=v2`, form-encoded).
fn parse_tagging(header: &str) -> Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        tags.push((form_decode(k)?, form_decode(v)?));
    }
    validate_tags(&tags)?;
    Ok(tags)
}

fn validate_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::InvalidTag(format!("{} tags given, at most {MAX_TAGS} allowed", tags.len())));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Error::InvalidTag(format!("tag key {k:?} must be 1 to 128 characters")));
        }
        if v.chars().count() > 256 {
            return Err(Error::InvalidTag(format!("value of tag {k:?} is longer than 256 characters")));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(Error::InvalidTag(format!("tag key {k:?} is repeated")));
        }
    }
    Ok(())
}

fn tag_set(tags: &[(String, String)]) -> TagSet {
    tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

fn metadata_map(m: Option<Metadata>) -> BTreeMap<String, String> {
    m.map(|m| m.into_iter().collect()).unwrap_or_default()
}

fn metadata_out(m: &BTreeMap<String, String>) -> Option<Metadata> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn check_content_md5(staging: &mut Staging, content_md5: Option<&str>, bucket: &str, key: &str) -> S3Result<()> {
    let Some(expected) = content_md5 else { return Ok(()) };
    let expected = STANDARD
        .decode(expected.trim())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid"))?;
    if hex::encode(expected) != staging.md5_hex() {
        return Err(Error::BadDigest { bucket: bucket.to_owned(), key: key.to_owned() }.into());
    }
    Ok(())
}

/// The copy source as S3 reads `x-amz-copy-source`: URL-decoded with `+`
/// standing for a space (so clients that form-encode keys, such as s5cmd,
/// work as they do on S3; a literal `+` must arrive as `%2B`). s3s decodes
/// only percent escapes, so the raw header is decoded here.
fn copy_source_from_header(headers: &http::HeaderMap, parsed: &CopySource) -> S3Result<(String, String)> {
    let Some(raw) = headers.get("x-amz-copy-source").and_then(|v| v.to_str().ok()) else {
        return copy_source(parsed);
    };
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    let raw = raw.split_once("?versionId=").map_or(raw, |(path, _)| path);
    let Some((bucket, key)) = raw.split_once('/') else { return copy_source(parsed) };
    let spaced = key.replace('+', " ");
    let key = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|_| s3_error!(InvalidArgument, "x-amz-copy-source is not valid UTF-8 once decoded"))?;
    Ok((bucket.to_owned(), key.into_owned()))
}

fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(NotImplemented, "only bucket/key copy sources are supported")),
    }
}

/// Parses `bytes=first-last` (inclusive) of x-amz-copy-source-range.
fn parse_copy_range(range: &str) -> S3Result<(u64, u64)> {
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = range.trim().strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(invalid)?;
    let first: u64 = first.parse().map_err(|_| invalid())?;
    let last: u64 = last.parse().map_err(|_| invalid())?;
    if last < first {
        return Err(invalid());
    }
    Ok((first, last))
}

/// Characters left as-is by `encoding-type=url`: S3 keeps `/` readable and
/// percent-encodes the rest, including space as `%20` (which every common
/// decoder, plus-aware or not, turns back into a space).
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

fn url_encoded(encoding_type: Option<&EncodingType>) -> bool {
    encoding_type.is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn encoder(url: bool) -> impl Fn(&str) -> String {
    move |s: &str| encode_owned(url, s.to_owned())
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    let n = requested.unwrap_or(MAX_KEYS);
    if n < 0 {
        return Err(s3_error!(InvalidArgument, "max-keys must be non-negative"));
    }
    Ok(usize::try_from(n.min(MAX_KEYS)).unwrap_or(0))
}

/// `name` URL-encoded when `url` is set, moved as it is when it holds
/// nothing to encode (most keys): a listed page is a thousand of them.
fn encode_owned(url: bool, name: String) -> String {
    if !url {
        return name;
    }
    match Cow::from(utf8_percent_encode(&name, URL_ENCODE_SET)) {
        Cow::Borrowed(_) => name,
        Cow::Owned(encoded) => encoded,
    }
}

/// The page's objects and folders as s3s carries them, its names moved in
/// (URL-encoded when `url` is set); `last` is left in the page.
fn list_contents(page: &mut ListPage, url: bool) -> (Vec<Object>, Vec<CommonPrefix>) {
    let objects = std::mem::take(&mut page.objects)
        .into_iter()
        .map(|(key, meta)| Object {
            key: Some(encode_owned(url, key)),
            e_tag: Some(ETag::Strong(meta.etag)),
            size: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
            last_modified: Some(Timestamp::from(meta.last_modified)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Object::default()
        })
        .collect();
    let prefixes = std::mem::take(&mut page.prefixes)
        .into_iter()
        .map(|p| CommonPrefix { prefix: Some(encode_owned(url, p)) })
        .collect();
    (objects, prefixes)
}

fn owner() -> Owner {
    Owner { display_name: Some(OWNER_ID.to_owned()), id: Some(OWNER_ID.to_owned()) }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        let store = Arc::clone(&self.store);
        let name = bucket.clone();
        blocking(move || store.create_bucket(&name)).await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let store = Arc::clone(&self.store);
        blocking(move || store.delete_bucket(&req.input.bucket)).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(crate::REGION.to_owned()),
            ..HeadBucketOutput::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store.bucket(&req.input.bucket)?;
        // us-east-1 is reported as an empty LocationConstraint.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .store
            .list_buckets()
            .into_iter()
            .map(|(name, created)| s3s::dto::Bucket {
                name: Some(name),
                creation_date: Some(Timestamp::from(created)),
                bucket_region: Some(crate::REGION.to_owned()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            ..ListBucketsOutput::default()
        }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let (bucket, key) = (input.bucket, input.key);
        let tags = input.tagging.as_deref().map(parse_tagging).transpose()?.unwrap_or_default();
        let attrs = ObjectAttrs { content_type: input.content_type, metadata: metadata_map(input.metadata), tags };
        let cond = Precondition {
            if_match: input.if_match.as_ref().map(etag_match),
            if_none_match: input.if_none_match.as_ref().map(etag_match),
            ..Precondition::default()
        };
        // Looks the bucket up, so a missing one fails before the body is read.
        let staging = self.store.staging(&bucket, &key)?;
        let mut staging = self.receive(staging, input.body, &bucket, &key).await?;
        check_content_md5(&mut staging, input.content_md5.as_deref(), &bucket, &key)?;
        let store = Arc::clone(&self.store);
        let meta = if staging.is_small() {
            // A small body is a create, one write and a rename: cheaper done
            // here than paying two thread switches for the blocking pool.
            store.commit(&bucket, &key, staging, attrs, &cond, None)?
        } else {
            blocking(move || store.commit(&bucket, &key, staging, attrs, &cond, None)).await?
        };
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(strong(&meta.etag)), ..PutObjectOutput::default() }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        // Opening is one syscall under a read lock; cheap enough inline.
        let (meta, mut file, path) = self.store.open_object(&input.bucket, &input.key)?;
        check_read_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (start, len, content_range) = match &input.range {
            None => (0, meta.size, None),
            Some(range) => {
                let r = range.check(meta.size).map_err(|_| Error::InvalidRange {
                    bucket: input.bucket.clone(),
                    key: input.key.clone(),
                    size: meta.size,
                })?;
                let range_header = format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size);
                (r.start, r.end - r.start, Some(range_header))
            }
        };
        let body = if len <= INLINE_READ_MAX {
            let data = Store::read_range(&mut file, &path, start, len)?;
            StreamingBlob::from(Body::from(Bytes::from(data)))
        } else {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(&path, e))?;
            let file = tokio::fs::File::from_std(file).take(len);
            StreamingBlob::wrap(ReaderStream::with_capacity(file, 256 * 1024))
        };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(i64_of(len)),
            content_range,
            content_type: meta.attrs.content_type.clone(),
            e_tag: Some(strong(&meta.etag)),
            last_modified: Some(Timestamp::from(meta.last_modified)),
            metadata: metadata_out(&meta.attrs.metadata),
            tag_count: (!meta.attrs.tags.is_empty()).then(|| i32::try_from(meta.attrs.tags.len()).unwrap_or(i32::MAX)),
            ..GetObjectOutput::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let meta = self.store.stat(&input.bucket, &input.key)?;
        check_read_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (len, content_range) = match &input.range {
            None => (meta.size, None),
            Some(range) => {
                let r = range.check(meta.size).map_err(|_| Error::InvalidRange {
                    bucket: input.bucket.clone(),
                    key: input.key.clone(),
                    size: meta.size,
                })?;
                (r.end - r.start, Some(format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size)))
            }
        };
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(i64_of(len)),
            content_range,
            content_type: meta.attrs.content_type.clone(),
            e_tag: Some(strong(&meta.etag)),
            last_modified: Some(Timestamp::from(meta.last_modified)),
            metadata: metadata_out(&meta.attrs.metadata),
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let cond = Precondition {
            if_match: input.if_match.as_ref().map(etag_match),
            if_match_size: input.if_match_size.map(|s| u64::try_from(s).unwrap_or(u64::MAX)),
            if_match_last_modified: input.if_match_last_modified_time.as_ref().map(system_time),
            ..Precondition::default()
        };
        let store = Arc::clone(&self.store);
        blocking(move || store.delete(&input.bucket, &input.key, &cond)).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let items: Vec<(String, Precondition)> = input
            .delete
            .objects
            .into_iter()
            .map(|o| {
                let cond = Precondition {
                    if_match: o.e_tag.map(|e| EtagMatch::Etag(e.into_value())),
                    if_match_size: o.size.map(|s| u64::try_from(s).unwrap_or(u64::MAX)),
                    if_match_last_modified: o.last_modified_time.as_ref().map(system_time),
                    ..Precondition::default()
                };
                (o.key, cond)
            })
            .collect();
        let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        let store = Arc::clone(&self.store);
        let bucket = input.bucket;
        let results = blocking(move || store.delete_many(&bucket, items)).await?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, result) in keys.into_iter().zip(results) {
            match result {
                Ok(_) if quiet => {}
                Ok(_) => deleted.push(DeletedObject { key: Some(key), ..DeletedObject::default() }),
                Err(e) => {
                    let e = S3Error::from(e);
                    errors.push(s3s::dto::Error {
                        code: Some(e.code().as_str().to_owned()),
                        key: Some(key),
                        message: e.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let dest_cond = Precondition {
            if_match: header_condition(&req.headers, http::header::IF_MATCH)?,
            if_none_match: header_condition(&req.headers, http::header::IF_NONE_MATCH)?,
            ..Precondition::default()
        };
        let input = req.input;
        let (src_bucket, src_key) = copy_source_from_header(&req.headers, &input.copy_source)?;
        let replace_metadata =
            input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let replace_tags = input.tagging_directive.as_ref().is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
        if src_bucket == input.bucket && src_key == input.key && !replace_metadata && !replace_tags {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let new_tags = if replace_tags { Some(parse_tagging(input.tagging.as_deref().unwrap_or(""))?) } else { None };
        self.store.bucket(&input.bucket)?;
        let store = Arc::clone(&self.store);
        let meta = blocking(move || {
            let (src, mut file, path) = store.open_object(&src_bucket, &src_key)?;
            check_copy_source(
                &src,
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                input.copy_source_if_modified_since.as_ref(),
                input.copy_source_if_unmodified_since.as_ref(),
                &src_bucket,
                &src_key,
            )?;
            let mut attrs = if replace_metadata {
                ObjectAttrs {
                    content_type: input.content_type,
                    metadata: metadata_map(input.metadata),
                    tags: Vec::new(),
                }
            } else {
                src.attrs.clone()
            };
            attrs.tags = new_tags.unwrap_or_else(|| src.attrs.tags.clone());
            // A single-part ETag is the body's MD5 and so survives the copy; a
            // multipart one does not (S3 gives the copy a plain MD5 ETag).
            let known_etag = (!src.etag.contains('-')).then(|| src.etag.clone());
            let staging = store.staging(&input.bucket, &input.key)?;
            let staging = Store::stage_copy(staging, &mut file, &path, 0, src.size, known_etag)?;
            store.commit(&input.bucket, &input.key, staging, attrs, &dest_cond, None)
        })
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(strong(&meta.etag)),
                last_modified: Some(Timestamp::from(meta.last_modified)),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max_keys = max_keys(input.max_keys)?;
        let token = input
            .continuation_token
            .as_deref()
            .map(|t| {
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
            })
            .transpose()?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let params = ListParams {
            prefix,
            delimiter: input.delimiter.as_deref(),
            // A continuation token supersedes start-after, as on S3.
            after: token.as_deref().or(input.start_after.as_deref()),
            max_keys,
        };
        let mut page = self.store.list(&input.bucket, &params)?;
        let url = url_encoded(input.encoding_type.as_ref());
        let encode = encoder(url);
        let (contents, prefixes) = list_contents(&mut page, url);
        let key_count = i32::try_from(contents.len() + prefixes.len()).unwrap_or(i32::MAX);
        let next = page.truncated.then(|| page.last.as_ref().map(|l| URL_SAFE_NO_PAD.encode(l))).flatten();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.as_deref().map(&encode),
            max_keys: Some(i32::try_from(max_keys).unwrap_or(MAX_KEYS)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after.as_deref().map(&encode),
            is_truncated: Some(page.truncated),
            next_continuation_token: next,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..ListObjectsV2Output::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max_keys = max_keys(input.max_keys)?;
        let prefix = input.prefix.as_deref().unwrap_or("");
        let params = ListParams {
            prefix,
            delimiter: input.delimiter.as_deref(),
            after: input.marker.as_deref().filter(|m| !m.is_empty()),
            max_keys,
        };
        let mut page = self.store.list(&input.bucket, &params)?;
        let url = url_encoded(input.encoding_type.as_ref());
        let encode = encoder(url);
        let (contents, prefixes) = list_contents(&mut page, url);
        // S3 only sends NextMarker with a delimiter; clients otherwise resume
        // from the last key, which is the same value.
        let next_marker = page.truncated.then(|| page.last.as_deref().map(&encode)).flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.as_deref().map(&encode),
            marker: Some(input.marker.as_deref().map(&encode).unwrap_or_default()),
            max_keys: Some(i32::try_from(max_keys).unwrap_or(MAX_KEYS)),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: input.encoding_type,
            ..ListObjectsOutput::default()
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let meta = self.store.stat(&req.input.bucket, &req.input.key)?;
        Ok(S3Response::new(GetObjectTaggingOutput { tag_set: tag_set(&meta.attrs.tags), version_id: None }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        validate_tags(&tags)?;
        let store = Arc::clone(&self.store);
        blocking(move || store.update_attrs(&input.bucket, &input.key, |a| a.tags.clone_from(&tags))).await?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let store = Arc::clone(&self.store);
        blocking(move || store.update_attrs(&input.bucket, &input.key, |a| a.tags.clear())).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let tags = input.tagging.as_deref().map(parse_tagging).transpose()?.unwrap_or_default();
        let attrs = ObjectAttrs { content_type: input.content_type, metadata: metadata_map(input.metadata), tags };
        let store = Arc::clone(&self.store);
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let upload = blocking(move || store.create_upload(&bucket, &key, attrs)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.id.clone()),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"));
        }
        let upload = self.store.upload(&input.upload_id, &input.bucket, &input.key)?;
        let staging = self.store.part_staging(&upload);
        let mut staging = self.receive(staging, input.body, &input.bucket, &input.key).await?;
        check_content_md5(&mut staging, input.content_md5.as_deref(), &input.bucket, &input.key)?;
        let store = Arc::clone(&self.store);
        let part_number = input.part_number;
        let part = blocking(move || store.put_part(&upload, part_number, staging)).await?;
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(strong(&part.etag)), ..UploadPartOutput::default() }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"));
        }
        let upload = self.store.upload(&input.upload_id, &input.bucket, &input.key)?;
        let (src_bucket, src_key) = copy_source_from_header(&req.headers, &input.copy_source)?;
        let range = input.copy_source_range.as_deref().map(parse_copy_range).transpose()?;
        let store = Arc::clone(&self.store);
        let part = blocking(move || {
            let (src, mut file, path) = store.open_object(&src_bucket, &src_key)?;
            check_copy_source(
                &src,
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                input.copy_source_if_modified_since.as_ref(),
                input.copy_source_if_unmodified_since.as_ref(),
                &src_bucket,
                &src_key,
            )?;
            let (offset, len, known_etag) = match range {
                Some((first, last)) => {
                    if last >= src.size {
                        return Err(Error::InvalidRange { bucket: src_bucket, key: src_key, size: src.size });
                    }
                    (first, last - first + 1, None)
                }
                None => (0, src.size, (!src.etag.contains('-')).then(|| src.etag.clone())),
            };
            let staging = Store::stage_copy(store.part_staging(&upload), &mut file, &path, offset, len, known_etag)?;
            store.put_part(&upload, input.part_number, staging)
        })
        .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(strong(&part.etag)),
                last_modified: Some(Timestamp::from(part.last_modified)),
                ..CopyPartResult::default()
            }),
            ..UploadPartCopyOutput::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self.store.upload(&input.upload_id, &input.bucket, &input.key)?;
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| match (p.part_number, p.e_tag) {
                (Some(n), Some(e)) => Ok((n, e.into_value())),
                _ => Err(s3_error!(InvalidPart, "every part needs a PartNumber and an ETag")),
            })
            .collect::<S3Result<Vec<_>>>()?;
        let cond = Precondition {
            if_match: input.if_match.as_ref().map(etag_match),
            if_none_match: input.if_none_match.as_ref().map(etag_match),
            ..Precondition::default()
        };
        let store = Arc::clone(&self.store);
        let meta = blocking(move || store.complete_upload(&upload, &listed, &cond)).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(strong(&meta.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let upload = self.store.upload(&input.upload_id, &input.bucket, &input.key)?;
        let store = Arc::clone(&self.store);
        blocking(move || {
            store.abort_upload(&upload);
            Ok(())
        })
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self.store.upload(&input.upload_id, &input.bucket, &input.key)?;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let all = self.store.list_parts(&upload);
        let mut after_marker = all.into_iter().filter(|(n, _)| *n > marker).peekable();
        let mut parts = Vec::new();
        while parts.len() < usize::try_from(max_parts).unwrap_or(0) {
            let Some((n, p)) = after_marker.next() else { break };
            parts.push(Part {
                part_number: Some(n),
                e_tag: Some(strong(&p.etag)),
                size: Some(i64_of(p.size)),
                last_modified: Some(Timestamp::from(p.last_modified)),
                ..Part::default()
            });
        }
        let truncated = after_marker.peek().is_some();
        let next_marker = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next_marker,
            is_truncated: Some(truncated),
            parts: (!parts.is_empty()).then_some(parts),
            owner: Some(owner()),
            initiator: Some(Initiator { display_name: Some(OWNER_ID.to_owned()), id: Some(OWNER_ID.to_owned()) }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..ListPartsOutput::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_header_is_form_decoded_and_validated() {
        let tags = parse_tagging("a=1&b%20c=d+e&empty=").unwrap();
        assert_eq!(
            tags,
            [
                ("a".to_owned(), "1".to_owned()),
                ("b c".to_owned(), "d e".to_owned()),
                ("empty".to_owned(), String::new())
            ]
        );
        assert!(parse_tagging("a=1&a=2").is_err());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(parse_tagging(&eleven.join("&")).is_err());
    }

    #[test]
    fn copy_ranges_are_inclusive() {
        assert_eq!(parse_copy_range("bytes=0-9").unwrap(), (0, 9));
        assert!(parse_copy_range("bytes=9-0").is_err());
        assert!(parse_copy_range("0-9").is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_the_rest() {
        let encode = encoder(url_encoded(Some(&EncodingType::from_static(EncodingType::URL))));
        assert_eq!(encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
        let plain = encoder(url_encoded(None));
        assert_eq!(plain("a b"), "a b");
    }
}
