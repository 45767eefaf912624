//! SigV4 for the direct path's bodiless requests: the canonical request and
//! the string to sign composed here, the signing key and the signature
//! computed by `aws-sigv4` (the SDK's own signer), the key derived once a day.
//!
//! Why not `aws_sigv4::http_request::sign` itself: for these requests it was
//! a fifth of the mover's CPU at batch 100 (docs/performance.md). It copies
//! every header into a new header map, formats the canonical request and the
//! string to sign through several intermediate strings, and derives the
//! signing key (four HMACs) for every request. What it computes for a request
//! with no body, no query and a handful of known headers is short, and the
//! test `signs_as_aws_sigv4_does` holds this to its answer, byte for byte.

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

/// SHA-256 of the empty body, sent as `x-amz-content-sha256`.
pub(super) const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";

/// The headers a signed request carries besides its own and
/// `x-amz-content-sha256` ([`EMPTY_SHA256`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Signed {
    pub amz_date: String,
    pub authorization: String,
    pub security_token: Option<String>,
}

/// The signing key of one day, for one secret.
struct DayKey {
    day: String,
    secret: String,
    key: Vec<u8>,
}

/// Signs for one route: its host, the path before the key, its region.
pub(super) struct Signer {
    /// The `host` header as hyper sends it and `aws-sigv4` signs it: the
    /// URL's authority without a scheme's default port.
    host: String,
    /// The path of the route's base URL, no trailing `/` (`/bucket` when
    /// path-style, empty when virtual-hosted).
    base_path: String,
    region: String,
    key: Mutex<Option<DayKey>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("host", &self.host)
            .field("base_path", &self.base_path)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// For keys under `base` (scheme, authority and any path before the
    /// key); `None` when it is not an absolute URL with a host.
    pub(super) fn new(base: &str, region: &str) -> Option<Self> {
        let uri: http::Uri = base.parse().ok()?;
        let host = uri.host()?;
        let default_port =
            matches!((uri.scheme_str(), uri.port_u16()), (Some("http"), Some(80)) | (Some("https"), Some(443)));
        let host = match uri.port() {
            Some(port) if !default_port => format!("{host}:{port}"),
            _ => host.to_owned(),
        };
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Some(Self { host, base_path, region: region.to_owned(), key: Mutex::new(None) })
    }

    /// Signs `method` on the base's `key` (as sent: already encoded) with
    /// `headers` (lower-case names, no two alike), no query and no body.
    pub(super) fn sign(
        &self,
        method: &str,
        key: &str,
        headers: &[(&str, &str)],
        credentials: &Credentials,
        now: SystemTime,
    ) -> Signed {
        let time = time::OffsetDateTime::from(now);
        let day = format!("{:04}{:02}{:02}", time.year(), u8::from(time.month()), time.day());
        let amz_date = format!("{day}T{:02}{:02}{:02}Z", time.hour(), time.minute(), time.second());
        let token = credentials.session_token();

        let mut canonical: Vec<(&str, std::borrow::Cow<'_, str>)> = Vec::with_capacity(headers.len() + 4);
        canonical.extend(headers.iter().map(|(name, value)| (*name, trim_all(value))));
        canonical.push(("host", self.host.as_str().into()));
        canonical.push(("x-amz-content-sha256", EMPTY_SHA256.into()));
        canonical.push(("x-amz-date", amz_date.as_str().into()));
        if let Some(token) = token {
            canonical.push(("x-amz-security-token", token.into()));
        }
        canonical.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut signed_headers = String::with_capacity(96);
        let mut request = String::with_capacity(512);
        // Writing into a String cannot fail.
        let _ = write!(request, "{method}\n{}/{key}\n\n", self.base_path);
        for (name, value) in &canonical {
            let _ = writeln!(request, "{name}:{value}");
            if !signed_headers.is_empty() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
        }
        let _ = write!(request, "\n{signed_headers}\n{EMPTY_SHA256}");

        let scope = format!("{day}/{}/{SERVICE}/aws4_request", self.region);
        let string_to_sign =
            format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(request.as_bytes())));
        let signature = self.with_key(&day, credentials.secret_access_key(), now, |key| {
            calculate_signature(key, string_to_sign.as_bytes())
        });
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id()
        );
        Signed { amz_date, authorization, security_token: token.map(str::to_owned) }
    }

    /// Runs `f` with the signing key of `day` for `secret`, derived only when
    /// the day or the secret changed.
    fn with_key<T>(&self, day: &str, secret: &str, now: SystemTime, f: impl FnOnce(&[u8]) -> T) -> T {
        let derive = || generate_signing_key(secret, now, &self.region, SERVICE).as_ref().to_vec();
        let Ok(mut cached) = self.key.lock() else {
            return f(&derive());
        };
        if !matches!(&*cached, Some(held) if held.day == day && held.secret == secret) {
            *cached = None;
        }
        let held =
            cached.get_or_insert_with(|| DayKey { day: day.to_owned(), secret: secret.to_owned(), key: derive() });
        f(&held.key)
    }
}

/// A header value as SigV4 signs it: spaces (only spaces) trimmed at both
/// ends and runs of them made one.
fn trim_all(value: &str) -> std::borrow::Cow<'_, str> {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        return value.into();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;
    use std::time::{Duration, UNIX_EPOCH};

    /// What `aws-sigv4` adds to the request, with the SDK's settings for S3.
    fn reference(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        credentials: &Credentials,
        region: &str,
        now: SystemTime,
    ) -> Signed {
        let identity = Identity::from(credentials.clone());
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.session_token_mode = SessionTokenMode::Include;
        let params =
            v4::SigningParams::builder().identity(&identity).region(region).name("s3").time(now).settings(settings);
        let params = params.build().expect("signing params");
        let signable = SignableRequest::new(method, uri, headers.iter().copied(), SignableBody::Bytes(&[]))
            .expect("signable request");
        let (instructions, _) = sign(signable, &params.into()).expect("signed").into_parts();
        let mut request = http::Request::builder().method(method).uri(uri).body(()).expect("request");
        instructions.apply_to_request_http1x(&mut request);
        let header = |name: &str| request.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
        Signed {
            amz_date: header("x-amz-date").expect("x-amz-date"),
            authorization: header("authorization").expect("authorization"),
            security_token: header("x-amz-security-token"),
        }
    }

    #[test]
    fn signs_as_aws_sigv4_does() {
        let plain = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let session = Credentials::new("ASIAEXAMPLE", "secret/with+chars", Some("FwoGZX+token/==".into()), None, "t");
        let keys = ["plain.csv", "a%20b%2Bc%25d/%C3%A9/~x_y-z.csv", "dir//x/", "%2Flead", "q%3F%23%26%3D"];
        let bases = [
            "http://127.0.0.1:9000/bucket",
            "https://b.s3.eu-west-1.amazonaws.com",
            "https://b.s3.amazonaws.com:443",
            "http://localhost:80/b",
        ];
        let header_sets: [&[(&str, &str)]; 4] = [
            &[],
            &[("if-match", "\"abc\"")],
            &[("x-amz-copy-source", "src/a%20b.csv"), ("x-amz-copy-source-if-match", "\"0a-2\"")],
            &[("if-match", "  \"spaced   out\"  ")],
        ];
        // Across a day's end, so the cached key must change with the day.
        let times = [1_796_169_599u64, 1_796_169_600, 1_796_212_345];
        for base in bases {
            for region in ["us-east-1", "eu-west-1"] {
                let signer = Signer::new(base, region).expect("a signer");
                for credentials in [&plain, &session, &plain] {
                    for key in keys {
                        for headers in header_sets {
                            for secs in times {
                                let now = UNIX_EPOCH + Duration::from_secs(secs);
                                for method in ["GET", "PUT", "DELETE"] {
                                    let uri = format!("{base}/{key}");
                                    assert_eq!(
                                        signer.sign(method, key, headers, credentials, now),
                                        reference(method, &uri, headers, credentials, region, now),
                                        "{method} {uri} {headers:?} at {secs}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_host_leaves_out_only_a_default_port() {
        let host = |base: &str| Signer::new(base, "r").map(|s| s.host);
        assert_eq!(host("http://127.0.0.1:9000/b").as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(host("https://x.example:443").as_deref(), Some("x.example"));
        assert_eq!(host("http://x.example:443").as_deref(), Some("x.example:443"));
        assert_eq!(host("http://x.example:80/p").as_deref(), Some("x.example"));
        assert_eq!(host("/no/host"), None);
    }
}
