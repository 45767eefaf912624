//! `s3://bucket/prefix/` arguments.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Folder-style: empty, or ending with `/`.
    pub prefix: String,
}

/// `s3://bucket/key`: one object (a manifest to write, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ObjectUrl {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum S3UrlError {
    #[error("{url:?} is not an S3 URL: expected s3://bucket/prefix/")]
    NotS3 { url: String },
    #[error("{url:?} names no object: expected s3://bucket/key (a key not ending with /)")]
    NotAnObject { url: String },
    #[error("bucket {bucket:?} {reason}")]
    BadBucket { url: String, bucket: String, reason: String },
}

impl FromStr for S3Url {
    type Err = S3UrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| S3UrlError::NotS3 { url: url.to_owned() })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(S3UrlError::NotS3 { url: url.to_owned() });
        }
        s3mm_core::config::validate_bucket_name("bucket", bucket).map_err(|err| {
            // The validator speaks of environment variables; here the
            // bucket came from a URL, so only its reason is kept.
            let reason = match err {
                s3mm_core::config::ConfigError::Invalid { reason, .. } => format!("is {reason}"),
                other => other.to_string(),
            };
            S3UrlError::BadBucket { url: url.to_owned(), bucket: bucket.to_owned(), reason }
        })?;
        Ok(Self { bucket: bucket.to_owned(), prefix: s3mm_core::keys::folder_prefix(prefix) })
    }
}

impl FromStr for S3ObjectUrl {
    type Err = S3UrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let folder: S3Url = url.parse()?;
        let key = url.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).map_or("", |(_, key)| key);
        if key.is_empty() || key.ends_with('/') {
            return Err(S3UrlError::NotAnObject { url: url.to_owned() });
        }
        Ok(Self { bucket: folder.bucket, key: key.to_owned() })
    }
}

impl fmt::Display for S3ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_folder_prefix() {
        assert_eq!("s3://b-in/csvs".parse(), Ok(S3Url { bucket: "b-in".into(), prefix: "csvs/".into() }));
        assert_eq!("s3://b-in/".parse(), Ok(S3Url { bucket: "b-in".into(), prefix: String::new() }));
        assert_eq!("s3://b-in".parse(), Ok(S3Url { bucket: "b-in".into(), prefix: String::new() }));
    }

    #[test]
    fn rejects_what_is_not_an_s3_url() {
        for bad in ["b-in/csvs", "http://b-in/x", "s3://", "s3:///x"] {
            assert!(matches!(bad.parse::<S3Url>(), Err(S3UrlError::NotS3 { .. })), "{bad}");
        }
        assert!(matches!("s3://Bad_Bucket/x".parse::<S3Url>(), Err(S3UrlError::BadBucket { .. })));
    }

    #[test]
    fn object_urls_name_a_key() {
        assert_eq!(
            "s3://b-in/m/backfill 1.csv".parse(),
            Ok(S3ObjectUrl { bucket: "b-in".into(), key: "m/backfill 1.csv".into() })
        );
        for bad in ["s3://b-in", "s3://b-in/", "s3://b-in/folder/"] {
            assert!(matches!(bad.parse::<S3ObjectUrl>(), Err(S3UrlError::NotAnObject { .. })), "{bad}");
        }
    }
}
