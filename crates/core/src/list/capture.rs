//! Hands a successful ListObjectsV2 response's body to the listing instead
//! of the SDK's deserializer (`page_xml.rs` says why).
//!
//! An interceptor wraps the body of a 2xx response before deserialization:
//! the wrapper reads the whole body, keeps it for the caller, and gives the
//! SDK an empty `ListBucketResult` to deserialize. Everything else stays the
//! SDK's: signing, retries (each attempt's body replaces the last), and
//! error responses, whose bodies are not touched.

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_types::body::SdkBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

/// What the SDK deserializes in place of a captured body.
const EMPTY_RESULT: &[u8] =
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></ListBucketResult>";

/// The most a Content-Length header may reserve ahead of the body: a page of
/// 1,000 keys of S3's 1,024-byte maximum, URL-encoded, is under 8 MiB.
const MAX_PRESIZE: usize = 8 << 20;
/// Page buffers kept for reuse, at most: one per call in flight.
const POOL_BUFFERS: usize = 64;
/// Larger buffers (pages of very long keys) go back to the allocator.
const POOL_BUFFER_BYTES: usize = 1 << 20;

/// Page buffers read and parsed, ready to read the next page into. A
/// listing reads hundreds of ~300 KB bodies; each freshly allocated, glibc's
/// heap fragmented around them, and the batch-generator's peak RSS at 1M
/// keys grew to 1.5× its RSS at 100k (the listing bench). Reused, the heap
/// holds as many as are ever in flight.
static POOL: Mutex<Vec<BytesMut>> = Mutex::new(Vec::new());

fn pooled(capacity: usize) -> BytesMut {
    let mut buffer = POOL.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default();
    buffer.reserve(capacity);
    buffer
}

/// Gives a page's body back once it has been read, when nothing else
/// holds it.
pub(super) fn recycle(body: Bytes) {
    if let Ok(mut buffer) = body.try_into_mut()
        && buffer.capacity() <= POOL_BUFFER_BYTES
        && let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_BUFFERS
    {
        buffer.clear();
        pool.push(buffer);
    }
}

/// The body of the last successful attempt, once it has been read.
#[derive(Debug, Clone, Default)]
pub(super) struct CapturedBody(Arc<Mutex<Option<Bytes>>>);

impl CapturedBody {
    pub(super) fn take(&self) -> Option<Bytes> {
        self.0.lock().map(|mut slot| slot.take()).unwrap_or(None)
    }

    fn put(&self, body: Bytes) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(body);
        }
    }
}

#[derive(Debug)]
pub(super) struct CaptureListBody(pub(super) CapturedBody);

impl Intercept for CaptureListBody {
    fn name(&self) -> &'static str {
        "s3mm::CaptureListBody"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if !response.status().is_success() {
            return Ok(());
        }
        // Sized once from Content-Length: grown by doubling, a 300 KB page
        // was copied about ten times on its way in. Capped, since the header
        // is the server's word, not a measured length.
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_PRESIZE);
        let inner = response.take_body();
        *response.body_mut() =
            SdkBody::from_body_1_x(Capturing { inner, read: pooled(announced), slot: self.0.clone(), done: false });
        Ok(())
    }
}

/// Reads `inner` to its end into `slot`, then yields [`EMPTY_RESULT`].
struct Capturing {
    inner: SdkBody,
    read: BytesMut,
    slot: CapturedBody,
    done: bool,
}

impl Body for Capturing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.read.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    let body = std::mem::take(&mut self.read).freeze();
                    self.slot.put(body);
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EMPTY_RESULT)))));
                }
            }
        }
    }
}
