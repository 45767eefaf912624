//! One error type per S3 operation, each carrying the bucket and key it
//! concerns, so a log line or a report names the object without context.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::fmt;

/// What S3 (or the transport) said when a call failed, reduced to the parts
/// worth reporting and deciding on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Failure {
    /// S3 error code such as `NoSuchKey`, `SlowDown`, `PreconditionFailed`.
    pub code: Option<String>,
    /// HTTP status, when a response arrived at all.
    pub status: Option<u16>,
    pub message: String,
}

impl S3Failure {
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + HasStatus + 'static,
    {
        match err {
            SdkError::ServiceError(service) => Self {
                code: service.err().code().map(str::to_owned),
                status: Some(service.raw().status_code()),
                message: service
                    .err()
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(err).to_string()),
            },
            other => {
                // The whole chain (SDK internals, connector state) is for
                // whoever debugs; the message says what happened and what to do.
                tracing::debug!(error = %aws_smithy_types::error::display::DisplayErrorContext(other), "S3 request got no response");
                let (code, message) = match other {
                    SdkError::TimeoutError(_) => (None, "the request to S3 timed out".to_owned()),
                    _ => without_response(other),
                };
                Self {
                    code: code.map(str::to_owned).or_else(|| other.code().map(str::to_owned)),
                    status: other.raw_response().map(HasStatus::status_code),
                    message,
                }
            }
        }
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.code_is("NoSuchKey")
            || self.code_is("NotFound")
            || self.status == Some(404) && !self.code_is("NoSuchBucket")
    }

    pub fn is_no_such_bucket(&self) -> bool {
        self.code_is("NoSuchBucket")
    }

    pub fn is_precondition_failed(&self) -> bool {
        self.code_is("PreconditionFailed") || self.status == Some(412)
    }

    /// Throttling and server-side errors that the SDK already retried and a
    /// later attempt (an SQS redelivery, a Step Functions Retry) may still win.
    /// Missing credentials are not: no retry finds them.
    pub fn is_transient(&self) -> bool {
        !self.code_is(NO_CREDENTIALS) && matches!(self.status, Some(500..=599) | None)
            || matches!(
                self.code.as_deref(),
                Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout" | "InternalError")
            )
    }
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            // Not S3's code but ours; the message says it all.
            (Some(code), None) if code == NO_CREDENTIALS => f.write_str(&self.message),
            (Some(code), Some(status)) => write!(f, "{code} (HTTP {status}): {}", self.message),
            (Some(code), None) => write!(f, "{code}: {}", self.message),
            (None, Some(status)) => write!(f, "HTTP {status}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The code of an [`S3Failure`] that never reached S3 because no credentials
/// were found to sign it.
pub const NO_CREDENTIALS: &str = "NoCredentials";

/// What a person can act on when a request got no response at all: no
/// credentials, an endpoint that refuses or cannot be found, a timeout; else
/// the innermost cause, one line.
fn without_response(err: &(dyn std::error::Error + 'static)) -> (Option<&'static str>, String) {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(credentials) = current.downcast_ref::<CredentialsError>() {
            return match credentials {
                CredentialsError::CredentialsNotLoaded(_) => (
                    Some(NO_CREDENTIALS),
                    "no AWS credentials found (looked in the environment, the shared config and credentials files, \
                     web identity, the container and instance metadata): set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or name a profile with AWS_PROFILE or --profile"
                        .to_owned(),
                ),
                CredentialsError::InvalidConfiguration(_) => (
                    Some(NO_CREDENTIALS),
                    format!("the AWS credentials configuration is invalid: {}", innermost_message(credentials)),
                ),
                // A provider that timed out or failed may answer next time.
                other => (None, format!("AWS credentials could not be loaded: {}", innermost_message(other))),
            };
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return (
                        None,
                        "the S3 endpoint refused the connection: check the endpoint (--endpoint-url, \
                         AWS_ENDPOINT_URL) and that its server is running"
                            .to_owned(),
                    );
                }
                std::io::ErrorKind::TimedOut => return (None, "connecting to the S3 endpoint timed out".to_owned()),
                _ => {}
            }
        }
        if current.to_string().starts_with("dns error") {
            return (
                None,
                format!(
                    "the S3 endpoint's host name could not be resolved ({}): check the endpoint and the region",
                    innermost_message(current)
                ),
            );
        }
        cause = current.source();
    }
    (None, innermost_message(err))
}

fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

/// The raw response types the SDK hands back all expose a status; this trait
/// lets [`S3Failure::from_sdk`] stay generic over them.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("bucket {bucket} does not exist (listing prefix {prefix:?})")]
    NoSuchBucket { bucket: String, prefix: String },
    #[error("listing s3://{bucket}/{prefix} returned an undecodable key: {message}")]
    BadKey { bucket: String, prefix: String, message: String },
    #[error("listing s3://{bucket}/{prefix} returned a page that is not a ListBucketResult: {reason}")]
    BadPage { bucket: String, prefix: String, reason: String },
    #[error("listing s3://{bucket}/{prefix} failed: {failure}")]
    Failed { bucket: String, prefix: String, failure: S3Failure },
    #[error(
        "listing s3://{bucket}/{prefix} after {after:?}: S3 said more keys follow but returned none, so the listing \
         cannot go on without skipping keys"
    )]
    EmptyTruncatedPage { bucket: String, prefix: String, after: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("s3://{bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("bucket {bucket} does not exist (reading {key})")]
    NoSuchBucket { bucket: String, key: String },
    #[error("reading s3://{bucket}/{key} failed: {failure}")]
    Failed { bucket: String, key: String, failure: S3Failure },
    #[error("reading the body of s3://{bucket}/{key} failed: {message}")]
    Body { bucket: String, key: String, message: String },
}

impl GetError {
    pub fn key(&self) -> &str {
        match self {
            Self::NoSuchKey { key, .. }
            | Self::NoSuchBucket { key, .. }
            | Self::Failed { key, .. }
            | Self::Body { key, .. } => key,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Failed { failure, .. } => failure.is_transient(),
            Self::Body { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("bucket {bucket} does not exist (looking up {key})")]
    NoSuchBucket { bucket: String, key: String },
    #[error("looking up s3://{bucket}/{key} failed: {failure}")]
    Failed { bucket: String, key: String, failure: S3Failure },
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key}: bucket {src_bucket} or {dst_bucket} does not exist"
    )]
    NoSuchBucket { src_bucket: String, src_key: String, dst_bucket: String, dst_key: String },
    #[error("copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key} was not confirmed: {why}")]
    Unconfirmed { src_bucket: String, src_key: String, dst_bucket: String, dst_key: String, why: String },
    #[error("copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key} failed: {failure}")]
    Failed { src_bucket: String, src_key: String, dst_bucket: String, dst_key: String, failure: S3Failure },
}

impl CopyError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Failed { failure, .. } => failure.is_transient(),
            Self::Unconfirmed { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("deleting s3://{bucket}/{key} failed: {failure}")]
    Failed { bucket: String, key: String, failure: S3Failure },
    #[error("deleting a batch of {count} keys from bucket {bucket} failed: {failure}")]
    Batch { bucket: String, count: usize, failure: S3Failure },
}

/// Why moving one object failed. Every variant leaves the source in place:
/// the delete is the last step and only follows a confirmed copy.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Delete(#[from] DeleteError),
    #[error(transparent)]
    Multipart(Box<MultipartCopyError>),
    #[error(
        "s3://{src_bucket}/{src_key} maps to a destination key of {len} bytes in {dst_bucket}, over S3's 1024-byte limit; source kept"
    )]
    DestinationKeyTooLong { src_bucket: String, src_key: String, dst_bucket: String, len: usize },
}

/// Boxed inside [`MoveError`]: it names both objects and the failed step.
#[derive(Debug, thiserror::Error)]
#[error("multipart copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key} failed at {step}: {failure}")]
pub struct MultipartCopyError {
    pub src_bucket: String,
    pub src_key: String,
    pub dst_bucket: String,
    pub dst_key: String,
    pub step: &'static str,
    pub failure: S3Failure,
}

impl MoveError {
    /// Whether a redelivery of the same event may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Copy(e) => e.is_transient(),
            Self::Head(HeadError::Failed { failure, .. }) | Self::Delete(DeleteError::Failed { failure, .. }) => {
                failure.is_transient()
            }
            Self::Multipart(err) => err.failure.is_transient(),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("writing s3://{bucket}/{key} failed at {step}: {failure}")]
    Failed { bucket: String, key: String, step: &'static str, failure: S3Failure },
}

impl PutError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Failed { failure, .. } => failure.is_transient(),
        }
    }
}
