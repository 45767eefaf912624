//! The crate's error type. Storage errors carry the bucket, key or path they
//! concern so that a failing test says what it was touching; the S3 layer
//! maps each variant onto the error code real S3 would return.

use std::io;
use std::path::PathBuf;

use s3s::{S3Error, S3ErrorCode};

/// Everything that can go wrong in the store, the server or the direct API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot use {path} as the root directory: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("object file {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("invalid bucket name {bucket:?}")]
    InvalidBucketName { bucket: String },

    #[error("invalid key {key:?} for bucket {bucket}: {reason}")]
    InvalidKey { bucket: String, key: String, reason: &'static str },

    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },

    #[error("bucket {bucket} already exists")]
    BucketAlreadyOwnedByYou { bucket: String },

    #[error("bucket {bucket} is not empty")]
    BucketNotEmpty { bucket: String },

    #[error("key {key:?} does not exist in bucket {bucket}")]
    NoSuchKey { bucket: String, key: String },

    #[error("precondition failed for {bucket}/{key}")]
    PreconditionFailed { bucket: String, key: String },

    #[error("upload {upload_id} does not exist")]
    NoSuchUpload { upload_id: String },

    #[error("upload {upload_id}: {reason}")]
    InvalidPart { upload_id: String, reason: String },

    #[error("upload {upload_id}: parts must be listed in ascending order")]
    InvalidPartOrder { upload_id: String },

    #[error("upload {upload_id}: part {part_number} is {size} bytes, below the minimum of {min}")]
    EntityTooSmall { upload_id: String, part_number: i32, size: u64, min: u64 },

    #[error("range not satisfiable for {bucket}/{key} of size {size}")]
    InvalidRange { bucket: String, key: String, size: u64 },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("{0}")]
    InvalidRequest(String),

    #[error("invalid tag set: {0}")]
    InvalidTag(String),

    #[error("Content-MD5 does not match the body of {bucket}/{key}")]
    BadDigest { bucket: String, key: String },

    #[error("request body of {bucket}/{key} could not be read: {reason}")]
    IncompleteBody { bucket: String, key: String, reason: String },

    #[error("background task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for S3Error {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::NoSuchBucket { .. } => S3ErrorCode::NoSuchBucket,
            Error::BucketAlreadyOwnedByYou { .. } => S3ErrorCode::BucketAlreadyOwnedByYou,
            Error::BucketNotEmpty { .. } => S3ErrorCode::BucketNotEmpty,
            Error::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
            Error::PreconditionFailed { .. } => S3ErrorCode::PreconditionFailed,
            Error::NoSuchUpload { .. } => S3ErrorCode::NoSuchUpload,
            Error::InvalidPart { .. } => S3ErrorCode::InvalidPart,
            Error::InvalidPartOrder { .. } => S3ErrorCode::InvalidPartOrder,
            Error::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
            Error::InvalidRange { .. } => S3ErrorCode::InvalidRange,
            Error::InvalidBucketName { .. } => S3ErrorCode::InvalidBucketName,
            Error::InvalidKey { .. } | Error::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            Error::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            Error::InvalidTag(_) => S3ErrorCode::InvalidTag,
            Error::BadDigest { .. } => S3ErrorCode::BadDigest,
            Error::IncompleteBody { .. } => S3ErrorCode::IncompleteBody,
            Error::Root { .. } | Error::Io { .. } | Error::Bind { .. } | Error::Corrupt { .. } | Error::Task(_) => {
                // Server-side failures are logged here because the client only
                // sees a generic InternalError.
                tracing::error!(error = %err, "internal error");
                S3ErrorCode::InternalError
            }
        };
        S3Error::with_message(code, err.to_string())
    }
}
