//! The plain-success path of the three requests a move and a merge make by
//! the hundred thousand: GetObject, CopyObject and DeleteObject, sent
//! without the SDK's per-request machinery.
//!
//! Why: at a Lambda's CPU share every microsecond of CPU is billed many
//! times over, and the profile of an SDK call is mostly work that repeats
//! the same answer for every request: applying the operation's runtime
//! plugins to a fresh config bag, resolving the endpoint and the auth
//! scheme, the user-agent and clock-skew interceptors
//! (docs/performance.md). Here that is done once per bucket, and each
//! request is only signed (SigV4, composed in [`sigv4`] and computed by
//! `aws-sigv4`, the SDK's own signer) and sent on the SDK's own HTTP
//! connector (its connection pool, TLS and timeouts).
//!
//! How it stays the SDK's answer: the first request for a bucket is an SDK
//! GetObject that an interceptor stops just before it would be sent; what
//! the SDK built (the URL, the signing region and service, the access key,
//! the HTTP connector) is what later requests use. Anything but the plain
//! success (a non-2xx status, a connection or timeout error, an endpoint
//! that needs another signature such as S3 Express or SigV4a, credentials
//! that differ from the SDK's) returns [`Fallback`], and the caller sends
//! the same request through the SDK, whose retries, error parsing and error
//! types then apply as before. Every request a caller falls back on is
//! idempotent (a GET, a copy pinned to an ETag, a delete pinned to one).
//!
//! `S3MM_SDK_ONLY=true` (read into `MoverConfig` and `MergeConfig`) turns
//! this path off: the functions then build their `Direct` with
//! [`Direct::sdk_only`].

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnector, HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::{ResolveCachedIdentity, SharedIdentityResolver};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::GetIdentityResolver;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::OnceCell;

mod sigv4;

/// How the SDK writes a key into a URL path: every byte but the unreserved
/// ones and `/` percent-encoded (Smithy's greedy label). The signature
/// covers the path as sent, so it must be the SDK's encoding exactly.
const KEY_IN_PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// The key of the stopped request that finds a bucket's route; nothing is
/// sent, so it need not exist.
const PROBE_KEY: &str = "s3mm-route-probe";

/// The SDK's name for the SigV4 auth scheme.
const SIGV4: AuthSchemeId = AuthSchemeId::new("sigv4");

/// Why a request is to be sent through the SDK instead.
#[derive(Debug)]
pub enum Fallback {
    /// Built with [`Direct::sdk_only`], or this bucket's endpoint is not a plain
    /// SigV4 `s3` one.
    NoRoute,
    Credentials(String),
    Signing(String),
    Transport(String),
    Status(u16),
    /// A 200 CopyObject whose body is not a `CopyObjectResult` with an ETag.
    Unconfirmed,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute => f.write_str("no direct route for this bucket"),
            Self::Credentials(why) => write!(f, "credentials: {why}"),
            Self::Signing(why) => write!(f, "signing: {why}"),
            Self::Transport(why) => write!(f, "transport: {why}"),
            Self::Status(status) => write!(f, "status {status}"),
            Self::Unconfirmed => f.write_str("no CopyObjectResult ETag in a 200 response"),
        }
    }
}

/// Requests sent directly and requests handed back to the SDK, for tests and
/// benchmarks to see which path ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectCounts {
    pub direct: u64,
    pub fallbacks: u64,
}

/// What the SDK's stopped request showed about a bucket.
#[derive(Debug)]
struct Route {
    /// Scheme, authority and any path before the key, no trailing `/`.
    base: String,
    signer: sigv4::Signer,
    access_key_id: String,
    connector: SharedHttpConnector,
    /// The client's, with its identity cache.
    components: RuntimeComponents,
    resolver: SharedIdentityResolver,
}

#[derive(Debug, Default)]
struct Counters {
    direct: AtomicU64,
    fallbacks: AtomicU64,
}

/// A bucket's route, found by the first request that needs it; `None` when
/// the bucket's requests go through the SDK.
type RouteCell = Arc<OnceCell<Option<Arc<Route>>>>;

/// The direct path for one SDK client. Cheap to clone; clones share routes,
/// credentials and counts.
#[derive(Debug, Clone)]
pub struct Direct {
    client: Client,
    enabled: bool,
    routes: Arc<Mutex<HashMap<String, RouteCell>>>,
    counters: Arc<Counters>,
}

impl Direct {
    /// The direct path, for every bucket whose endpoint allows it.
    pub fn new(client: &Client) -> Self {
        Self::with(client, true)
    }

    /// [`Direct::new`], or [`Direct::sdk_only`] when `sdk_only` is set
    /// (`S3MM_SDK_ONLY` in the functions' configuration).
    pub fn configured(client: &Client, sdk_only: bool) -> Self {
        Self::with(client, !sdk_only)
    }

    /// Every request through the SDK: for comparisons and as a way out.
    pub fn sdk_only(client: &Client) -> Self {
        Self::with(client, false)
    }

    fn with(client: &Client, enabled: bool) -> Self {
        Self { client: client.clone(), enabled, routes: Arc::default(), counters: Arc::default() }
    }

    pub fn counts(&self) -> DirectCounts {
        DirectCounts {
            direct: self.counters.direct.load(Ordering::Relaxed),
            fallbacks: self.counters.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Records what became of a direct attempt, and logs a fallback's cause
    /// at debug level (the SDK's answer is what the caller reports).
    fn count<T>(&self, result: Result<T, Fallback>, operation: &str, bucket: &str, key: &str) -> Result<T, Fallback> {
        match &result {
            Ok(_) => self.counters.direct.fetch_add(1, Ordering::Relaxed),
            Err(why) => {
                tracing::debug!(operation, bucket, key, reason = %why, "sending through the SDK");
                self.counters.fallbacks.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    /// GetObject: the whole body and the ETag.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<(Bytes, Option<String>), Fallback> {
        let result = async {
            let response = self.send("GET", bucket, key, &[]).await?;
            let etag = header(&response, "etag");
            let body = read_body(response).await?;
            Ok((body, etag))
        }
        .await;
        self.count(result, "GetObject", bucket, key)
    }

    /// CopyObject of a whole object with its metadata, pinned to the source
    /// ETag when one is given. `Ok` only for a 200 carrying a
    /// `CopyObjectResult` with an ETag (a 200 can carry an error).
    pub async fn copy_object(
        &self,
        copy_source: &str,
        source_if_match: Option<&str>,
        bucket: &str,
        key: &str,
    ) -> Result<(), Fallback> {
        let result = async {
            let mut headers = vec![("x-amz-copy-source", copy_source)];
            if let Some(etag) = source_if_match {
                headers.push(("x-amz-copy-source-if-match", etag));
            }
            let response = self.send("PUT", bucket, key, &headers).await?;
            let body = read_body(response).await?;
            if copy_result_has_etag(&body) { Ok(()) } else { Err(Fallback::Unconfirmed) }
        }
        .await;
        self.count(result, "CopyObject", bucket, key)
    }

    /// DeleteObject, pinned to an ETag when one is given.
    pub async fn delete_object(&self, bucket: &str, key: &str, if_match: Option<&str>) -> Result<(), Fallback> {
        let result = async {
            let headers: Vec<(&str, &str)> = if_match.map(|etag| ("if-match", etag)).into_iter().collect();
            let response = self.send("DELETE", bucket, key, &headers).await?;
            // Drain it so the connection goes back to the pool.
            read_body(response).await.map(drop)
        }
        .await;
        self.count(result, "DeleteObject", bucket, key)
    }

    async fn send(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        headers: &[(&str, &str)],
    ) -> Result<aws_smithy_runtime_api::client::orchestrator::HttpResponse, Fallback> {
        let route = self.route(bucket).await.ok_or(Fallback::NoRoute)?;
        let credentials = self.credentials(&route).await?;
        let encoded = utf8_percent_encode(key, KEY_IN_PATH).to_string();
        let signed = route.signer.sign(method, &encoded, headers, &credentials, SystemTime::now());
        let request = signed_request(method, &format!("{}/{encoded}", route.base), headers, signed)?;
        let response = route.connector.call(request).await.map_err(|err| Fallback::Transport(err.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) { Ok(response) } else { Err(Fallback::Status(status)) }
    }

    /// The bucket's route, found once by a stopped SDK request.
    async fn route(&self, bucket: &str) -> Option<Arc<Route>> {
        if !self.enabled {
            return None;
        }
        let cell = {
            let mut routes = self.routes.lock().ok()?;
            routes.entry(bucket.to_owned()).or_default().clone()
        };
        cell.get_or_init(|| self.probe(bucket)).await.clone()
    }

    async fn probe(&self, bucket: &str) -> Option<Arc<Route>> {
        let seen = Arc::new(Mutex::new(None));
        // The interceptor stops the request, so this always "fails".
        let _stopped = self
            .client
            .get_object()
            .bucket(bucket)
            .key(PROBE_KEY)
            .customize()
            .interceptor(StopAndLook(seen.clone()))
            .send()
            .await;
        let route = seen.lock().ok()?.take();
        match &route {
            Some(route) => tracing::debug!(bucket, base = %route.base, signer = ?route.signer, "direct route found"),
            None => tracing::debug!(bucket, "no direct route: requests go through the SDK"),
        }
        route.map(Arc::new)
    }

    /// The credentials the SDK would sign with now, from its own identity
    /// cache, if they are still those it signed the probe with.
    async fn credentials(&self, route: &Route) -> Result<Credentials, Fallback> {
        let identity = route
            .components
            .identity_cache()
            .resolve_cached_identity(route.resolver.clone(), &route.components, &ConfigBag::base())
            .await
            .map_err(|err| Fallback::Credentials(err.to_string()))?;
        match identity.data::<Credentials>() {
            Some(credentials) if credentials.access_key_id() == route.access_key_id => Ok(credentials.clone()),
            _ => Err(Fallback::Credentials("not the access key the SDK signed the probe with".into())),
        }
    }
}

/// The request to send: the caller's headers and the signature's.
fn signed_request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    signed: sigv4::Signed,
) -> Result<HttpRequest, Fallback> {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder = builder
        .header("x-amz-date", signed.amz_date)
        .header("x-amz-content-sha256", sigv4::EMPTY_SHA256)
        .header("authorization", signed.authorization);
    if let Some(token) = signed.security_token {
        builder = builder.header("x-amz-security-token", token);
    }
    let request = builder.body(SdkBody::empty()).map_err(|err| Fallback::Signing(err.to_string()))?;
    HttpRequest::try_from(request).map_err(|err| Fallback::Signing(err.to_string()))
}

fn header(response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse, name: &str) -> Option<String> {
    response.headers().get(name).map(str::to_owned)
}

async fn read_body(response: aws_smithy_runtime_api::client::orchestrator::HttpResponse) -> Result<Bytes, Fallback> {
    ByteStream::new(response.into_body())
        .collect()
        .await
        .map(|body| body.into_bytes())
        .map_err(|err| Fallback::Transport(err.to_string()))
}

/// Whether a CopyObject body is a `CopyObjectResult` holding a non-empty
/// `ETag`, the one proof S3 gives that the copy happened.
fn copy_result_has_etag(body: &[u8]) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut depth = 0usize;
    let mut in_etag = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(element)) => {
                depth += 1;
                let name = element.local_name();
                if depth == 1 && name.as_ref() != b"CopyObjectResult" {
                    return false;
                }
                in_etag = depth == 2 && name.as_ref() == b"ETag";
            }
            Ok(Event::Text(text)) if in_etag => {
                if !text.as_ref().iter().all(u8::is_ascii_whitespace) {
                    return true;
                }
            }
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                in_etag = false;
            }
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Looks at the SDK's finished, signed request and stops it there.
#[derive(Debug)]
struct StopAndLook(Arc<Mutex<Option<Route>>>);

impl Intercept for StopAndLook {
    fn name(&self) -> &'static str {
        "s3mm::StopAndLook"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let route = route_of(request.uri(), request.headers()).and_then(|(base, region, access_key_id)| {
            let client = runtime_components.http_client()?;
            let resolver = runtime_components.identity_resolver(SIGV4)?;
            let mut settings = HttpConnectorSettings::builder();
            if let Some(timeouts) = cfg.load::<TimeoutConfig>() {
                settings.set_connect_timeout(timeouts.connect_timeout());
                settings.set_read_timeout(timeouts.read_timeout());
            }
            let connector = client.http_connector(&settings.build(), runtime_components);
            let signer = sigv4::Signer::new(&base, &region)?;
            Some(Route { base, signer, access_key_id, connector, components: runtime_components.clone(), resolver })
        });
        if let Ok(mut seen) = self.0.lock() {
            *seen = route;
        }
        Err("s3mm: route probe, not sent".into())
    }
}

/// From the SDK's signed probe: the URL before the key, the signing region
/// and the access key, if it is signed with plain SigV4 for `s3` and no S3
/// Express session.
fn route_of(uri: &str, headers: &aws_smithy_runtime_api::http::Headers) -> Option<(String, String, String)> {
    if headers.contains_key("x-amz-s3session-token") {
        return None;
    }
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    let base = path.strip_suffix(PROBE_KEY)?.strip_suffix('/')?;
    let credential = headers.get("authorization")?.strip_prefix("AWS4-HMAC-SHA256 Credential=")?;
    let scope = credential.split(',').next()?;
    // AKID/date/region/service/aws4_request
    let mut parts = scope.split('/');
    let (access_key_id, _date, region, service, terminator) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (service == "s3" && terminator == "aws4_request" && parts.next().is_none())
        .then(|| (base.to_owned(), region.to_owned(), access_key_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_the_sdk_encodes_a_greedy_label() {
        let encoded = utf8_percent_encode("a b+c%d/é/~x_y-z.csv", KEY_IN_PATH).to_string();
        assert_eq!(encoded, "a%20b%2Bc%25d/%C3%A9/~x_y-z.csv");
    }

    #[test]
    fn a_copy_counts_only_with_a_result_etag() {
        assert!(copy_result_has_etag(
            b"<?xml version=\"1.0\"?>\n<CopyObjectResult><LastModified>x</LastModified><ETag>\"abc\"</ETag></CopyObjectResult>"
        ));
        assert!(!copy_result_has_etag(b"<CopyObjectResult><ETag></ETag></CopyObjectResult>"));
        assert!(!copy_result_has_etag(b"<Error><Code>InternalError</Code><ETag>\"x\"</ETag></Error>"));
        assert!(!copy_result_has_etag(b""));
        assert!(!copy_result_has_etag(b"<CopyObjectResult><Nested><ETag>\"x\"</ETag></Nested></CopyObjectResult>"));
    }

    #[test]
    fn the_route_is_read_from_the_signed_probe() {
        let signed = |authorization: &str| {
            let mut headers = aws_smithy_runtime_api::http::Headers::new();
            headers.insert("authorization", authorization.to_owned());
            headers
        };
        let auth =
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(
            route_of("https://b.s3.eu-west-1.amazonaws.com/s3mm-route-probe?x-id=GetObject", &signed(auth)),
            Some(("https://b.s3.eu-west-1.amazonaws.com".into(), "eu-west-1".into(), "AKID".into()))
        );
        assert_eq!(
            route_of("http://127.0.0.1:9000/bucket/s3mm-route-probe", &signed(auth)),
            Some(("http://127.0.0.1:9000/bucket".into(), "eu-west-1".into(), "AKID".into()))
        );
        let express = auth.replace("/s3/", "/s3express/");
        assert_eq!(route_of("https://b/s3mm-route-probe", &signed(&express)), None);
        let mut session = signed(auth);
        session.insert("x-amz-s3session-token", "t".to_owned());
        assert_eq!(route_of("https://b/s3mm-route-probe", &session), None);
        let v4a = "AWS4-ECDSA-P256-SHA256 Credential=AKID/20261201/s3/aws4_request";
        assert_eq!(route_of("https://b/s3mm-route-probe", &signed(v4a)), None);
        assert_eq!(route_of("https://b/s3mm-route-probe", &aws_smithy_runtime_api::http::Headers::new()), None);
    }
}
