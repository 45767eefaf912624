//! The HTTP front: accepts connections, and in front of the s3s service
//! names each request's operation, counts it, delays it, injects faults and
//! journals the outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::Body;
use s3s::service::S3Service;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::faults::{FaultKind, Faults};
use crate::op::{Op, bucket_and_key, classify};
use crate::store::lock;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One completed request, as recorded by [`crate::LocalS3::journal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Order in which responses were produced, from 1.
    pub seq: u64,
    pub operation: String,
    pub bucket: String,
    /// Percent-decoded; empty for bucket-level requests.
    pub key: String,
    /// The status of the response the backend produced. For
    /// `DropConnection` the client never saw it; for `CopyError200` it is 200.
    pub status: u16,
    pub fault: Option<FaultKind>,
}

/// State shared by the server tasks and the [`crate::LocalS3`] handle.
pub(crate) struct Shared {
    pub faults: Faults,
    requests: Vec<AtomicU64>,
    journal_on: AtomicBool,
    journal: Mutex<Vec<JournalEntry>>,
    seq: AtomicU64,
    request_ids: AtomicU64,
}

impl Shared {
    pub fn new(faults: Faults) -> Shared {
        Shared {
            faults,
            requests: (0..Op::COUNT).map(|_| AtomicU64::new(0)).collect(),
            journal_on: AtomicBool::new(false),
            journal: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
        }
    }

    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Op::ALL.iter().map(|op| (op.name(), self.requests[op.index()].load(Ordering::Relaxed)))
    }

    pub fn reset_counters(&self) {
        for c in &self.requests {
            c.store(0, Ordering::Relaxed);
        }
        self.faults.reset_injected();
    }

    pub fn enable_journal(&self) {
        self.journal_on.store(true, Ordering::SeqCst);
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.journal).clone()
    }

    fn record(&self, op: Op, target: Option<(String, String)>, status: StatusCode, fault: Option<FaultKind>) {
        let Some((bucket, key)) = target else { return };
        let mut journal = lock(&self.journal);
        // Taken under the lock so the journal is in seq order.
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        journal.push(JournalEntry {
            seq,
            operation: op.name().to_owned(),
            bucket,
            key,
            status: status.as_u16(),
            fault,
        });
    }

    fn request_id(&self) -> String {
        format!("{:016X}", self.request_ids.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// The bucket named by `x-amz-copy-source` (`bucket/key`, optionally with a
/// leading `/` and percent-encoded).
fn copy_source_bucket(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("x-amz-copy-source")?.to_str().ok()?;
    let value = value.strip_prefix('/').unwrap_or(value);
    let bucket = value.split('/').next()?;
    Some(percent_encoding::percent_decode_str(bucket).decode_utf8_lossy().into_owned())
}

/// The error returned to hyper to abort a connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct DroppedByFault;

#[derive(Clone)]
pub(crate) struct Frontend {
    s3: S3Service,
    shared: std::sync::Arc<Shared>,
}

impl Frontend {
    pub fn new(s3: S3Service, shared: std::sync::Arc<Shared>) -> Self {
        Frontend { s3, shared }
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
        let op = classify(req.method(), req.uri(), req.headers());
        let target = self.shared.journal_on.load(Ordering::Relaxed).then(|| bucket_and_key(req.uri()));
        self.shared.requests[op.index()].fetch_add(1, Ordering::Relaxed);
        if self.shared.faults.denies_any() {
            // CopyObject also needs read access to its source, as in S3.
            let denied = self.shared.faults.is_denied(op, &bucket_and_key(req.uri()).0)
                || copy_source_bucket(req.headers()).is_some_and(|b| self.shared.faults.is_denied(Op::GetObject, &b));
            if denied {
                let _ = req.into_body().collect().await;
                let response = self.error_response(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied");
                self.shared.record(op, target, response.status(), None);
                return Ok(response);
            }
        }
        let fault = self.shared.faults.decide(op);
        let delay = self.shared.faults.latency();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let req = req.map(Body::from);

        let response = match fault {
            None => self.s3.call(req).await?,
            Some(kind @ (FaultKind::SlowDown | FaultKind::InternalError)) => {
                // Read the body first so the client finishes sending and then
                // sees the error, rather than a reset mid-upload.
                let _ = req.into_body().collect().await;
                let (status, code, message) = if kind == FaultKind::SlowDown {
                    (StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "Please reduce your request rate.")
                } else {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        "We encountered an internal error. Please try again.",
                    )
                };
                self.error_response(status, code, message)
            }
            Some(FaultKind::DropConnection) => {
                let response = self.s3.call(req).await?;
                self.shared.record(op, target, response.status(), fault);
                return Err(Box::new(DroppedByFault));
            }
            Some(FaultKind::CopyError200) => {
                // The copy happens; only its answer is replaced.
                let _ = self.s3.call(req).await?;
                self.error_response(
                    StatusCode::OK,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            }
        };
        self.shared.record(op, target, response.status(), fault);
        Ok(response)
    }

    fn error_response(&self, status: StatusCode, code: &str, message: &str) -> Response<Body> {
        let request_id = self.shared.request_id();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId><HostId>local-s3</HostId></Error>"
        );
        let mut response = Response::new(Body::from(Bytes::from(xml)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            headers.insert("x-amz-request-id", v);
        }
        response
    }
}

impl hyper::service::Service<Request<Incoming>> for Frontend {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        Box::pin(self.clone().handle(req))
    }
}

/// Accepts connections until `cancel` fires, one task per connection; on
/// cancellation every connection is closed.
pub(crate) async fn serve(listener: TcpListener, frontend: Frontend, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Requests are small and latency-bound; don't let Nagle
                    // hold back the last segment of a response.
                    let _ = stream.set_nodelay(true);
                    let service = frontend.clone();
                    let cancel = cancel.clone();
                    connections.spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = connection => {}
                            () = cancel.cancelled() => {}
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}
