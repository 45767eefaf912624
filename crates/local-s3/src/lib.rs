//! `local-s3` is an S3-compatible server over a local directory, built for
//! tests, demos and benchmarks of code that talks to S3. It speaks the S3
//! REST API (path-style, SigV4 via [`s3s`]) for buckets, objects, copies,
//! listings, tagging and multipart uploads, keeps an in-memory index so that
//! listings stay fast at hundreds of thousands of keys, and makes writes,
//! including conditional ones, atomic. Around the S3 logic it counts
//! requests per operation, can add latency, and injects the failures real S3
//! produces (throttling, internal errors, dropped connections, 200-with-error
//! copies) at a random rate or on exactly the Nth request of an operation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_s3::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let s3 = local_s3::LocalS3::start(dir.path()).await?;
//! s3.create_bucket("data")?;
//! s3.put_object("data", "in/a.csv", b"x,y\n")?;
//! // point an S3 client at s3.endpoint() with s3.access_key()/s3.secret_key()
//! s3.faults().fail_nth("CopyObject", 1, local_s3::FaultKind::SlowDown);
//! # Ok(()) }
//! ```

mod error;
mod faults;
mod http;
mod op;
mod service;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::error::Error;
pub use crate::faults::{FaultKind, Faults, UnknownFaultKind};
pub use crate::http::JournalEntry;

use crate::http::{Frontend, Shared};
use crate::store::{ObjectAttrs, Precondition, Store};

/// The region the server claims to be in.
pub const REGION: &str = "us-east-1";
pub const DEFAULT_ACCESS_KEY: &str = "local-s3-access-key";
pub const DEFAULT_SECRET_KEY: &str = "local-s3-secret-key";
/// S3's minimum size for every part of a multipart upload but the last.
pub const DEFAULT_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// How to start a server; build with [`Options::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory holding the buckets; created if missing, reused if present.
    pub root: PathBuf,
    /// Address to listen on: 127.0.0.1 unless a container on a Docker
    /// bridge must reach the server (then the bridge's gateway, or 0.0.0.0).
    pub host: std::net::IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    /// Added to every request before it is processed.
    pub latency: Duration,
    /// A uniformly random extra delay of up to this much per request.
    pub latency_jitter: Duration,
    /// Fraction of requests (0.0–1.0) that get a random fault.
    pub fault_rate: f64,
    /// Kinds random faults are drawn from.
    pub fault_kinds: Vec<FaultKind>,
    /// Seeds the fault and jitter RNG.
    pub seed: u64,
    /// Minimum size of non-final multipart parts (S3: 5 MiB). Tests that
    /// exercise multipart code with small parts can lower it.
    pub min_part_size: u64,
}

impl Options {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Options {
            root: root.into(),
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            access_key: DEFAULT_ACCESS_KEY.to_owned(),
            secret_key: DEFAULT_SECRET_KEY.to_owned(),
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            fault_rate: 0.0,
            fault_kinds: FaultKind::ALL.to_vec(),
            seed: 0,
            min_part_size: DEFAULT_MIN_PART_SIZE,
        }
    }
}

/// An object as stored, for test assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub data: Bytes,
    /// Quoted, as S3 returns it: `"<md5 hex>"` or `"<hex>-<parts>"`.
    pub etag: String,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), names lower-cased, without the prefix.
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<(String, String)>,
    pub last_modified: SystemTime,
}

/// A running server. Dropping it stops the server and closes its
/// connections; [`LocalS3::shutdown`] also waits for that to finish.
pub struct LocalS3 {
    store: Arc<Store>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LocalS3 {
    /// Starts a server on 127.0.0.1 with a random port and default options.
    pub async fn start(root: impl Into<PathBuf>) -> Result<LocalS3, Error> {
        Self::start_with(Options::new(root)).await
    }

    pub async fn start_with(options: Options) -> Result<LocalS3, Error> {
        let root = options.root.clone();
        let min_part_size = options.min_part_size;
        // Rebuilding a large index reads every object's footer.
        let store = tokio::task::spawn_blocking(move || Store::open(&root, min_part_size))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let store = Arc::new(store);

        let wanted = SocketAddr::new(options.host, options.port);
        let listener = TcpListener::bind(wanted).await.map_err(|source| Error::Bind { addr: wanted, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: wanted, source })?;

        let faults = Faults::new(
            options.seed,
            options.fault_rate,
            &options.fault_kinds,
            options.latency,
            options.latency_jitter,
        );
        let shared = Arc::new(Shared::new(faults));
        let mut builder = S3ServiceBuilder::new(service::Backend::new(Arc::clone(&store)));
        builder.set_auth(SimpleAuth::from_single(options.access_key.clone(), options.secret_key.clone()));
        let frontend = Frontend::new(builder.build(), Arc::clone(&shared));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(http::serve(listener, frontend, cancel.clone()));
        tracing::info!(%addr, root = %options.root.display(), "local-s3 listening");

        Ok(LocalS3 {
            store,
            shared,
            addr,
            access_key: options.access_key,
            secret_key: options.secret_key,
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, for a path-style S3 client on this machine
    /// (127.0.0.1 also when listening on every address).
    pub fn endpoint(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        }
        format!("http://{addr}")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// Creates a bucket directly, without HTTP or counters.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        self.store.create_bucket(bucket)
    }

    /// Stores an object directly (blocking file I/O on the caller's thread);
    /// returns its quoted ETag.
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) -> Result<String, Error> {
        if key.is_empty() || key.len() > 1024 {
            return Err(Error::InvalidKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: "keys are 1 to 1,024 bytes",
            });
        }
        let mut staging = self.store.staging(bucket, key)?;
        staging.push(data);
        let meta = self.store.commit(bucket, key, staging, ObjectAttrs::default(), &Precondition::default(), None)?;
        Ok(format!("\"{}\"", meta.etag))
    }

    /// Reads an object directly; `None` if the bucket or key does not exist.
    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        let (meta, mut file, path) = self.store.open_object(bucket, key).ok()?;
        let data = match Store::read_range(&mut file, &path, 0, meta.size) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(error = %e, "cannot read stored object");
                return None;
            }
        };
        Some(StoredObject {
            data: Bytes::from(data),
            etag: format!("\"{}\"", meta.etag),
            content_type: meta.attrs.content_type.clone(),
            metadata: meta.attrs.metadata.clone(),
            tags: meta.attrs.tags.clone(),
            last_modified: meta.last_modified,
        })
    }

    /// All keys of a bucket in order; empty if the bucket does not exist.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.store.keys(bucket).unwrap_or_default()
    }

    /// Requests received per operation name (including faulted ones) since
    /// start or [`LocalS3::reset_counters`]; operations never seen are absent.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.counters().filter(|(_, n)| *n > 0).map(|(op, n)| (op.to_owned(), n)).collect()
    }

    /// Objects returned by ListObjects and ListObjectsV2 calls, summed over
    /// calls, since start or [`LocalS3::reset_counters`]: a client that
    /// lists a key twice counts it twice.
    pub fn objects_listed(&self) -> u64 {
        self.store.objects_listed()
    }

    /// Faults injected per kind name (`"SlowDown"`, ...); kinds never
    /// injected are absent.
    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        self.shared.faults.injected().filter(|(_, n)| *n > 0).map(|(k, n)| (k.name().to_owned(), n)).collect()
    }

    /// Zeroes the request and fault counters. `fail_nth` rules keep counting
    /// from when they were set.
    pub fn reset_counters(&self) {
        self.shared.reset_counters();
        self.store.reset_objects_listed();
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Starts recording every completed request; see [`LocalS3::journal`].
    pub fn enable_journal(&self) {
        self.shared.enable_journal();
    }

    /// Requests completed since [`LocalS3::enable_journal`], in the order
    /// their responses were produced.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal()
    }

    /// Stops accepting, closes all connections and waits for the server
    /// task to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            // Aborting also drops the connection set, which aborts every
            // connection task, even if no runtime is polling any more.
            task.abort();
        }
    }
}

impl std::fmt::Debug for LocalS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalS3").field("endpoint", &self.endpoint()).finish_non_exhaustive()
    }
}
