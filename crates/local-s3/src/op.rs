//! Naming the S3 operation of a raw HTTP request, before s3s parses it, so
//! that counting, latency and faults apply even to requests s3s would reject.
//! The rules mirror s3s's router for path-style addressing.

use http::{HeaderMap, Method, Uri};

macro_rules! operations {
    ($($name:ident),* $(,)?) => {
        /// An S3 operation as counted by the server.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Op { $($name),* }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$name),*];
            pub const COUNT: usize = Op::ALL.len();

            pub fn name(self) -> &'static str {
                match self { $(Op::$name => stringify!($name)),* }
            }
        }
    };
}

operations! {
    GetObject,
    PutObject,
    CopyObject,
    UploadPartCopy,
    UploadPart,
    HeadObject,
    DeleteObject,
    DeleteObjects,
    ListObjectsV2,
    ListObjects,
    ListBuckets,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    GetBucketLocation,
    CreateMultipartUpload,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    Other,
}

impl Op {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// Operations whose failures S3 may report as a 200 with an error body.
    pub fn is_copy(self) -> bool {
        matches!(self, Op::CopyObject | Op::UploadPartCopy)
    }
}

/// Bucket sub-resources that turn a bucket request into some other operation.
const BUCKET_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "session",
    "tagging",
    "versioning",
    "versions",
    "website",
];

const OBJECT_SUBRESOURCES: &[&str] = &["acl", "attributes", "legal-hold", "retention", "torrent", "restore", "select"];

struct Query<'a>(&'a str);

impl Query<'_> {
    fn has(&self, name: &str) -> bool {
        self.0.split('&').any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == name)
    }

    fn has_pair(&self, name: &str, value: &str) -> bool {
        self.0.split('&').any(|pair| pair.split_once('=') == Some((name, value)))
    }

    fn has_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.has(n))
    }
}

enum Target {
    Root,
    Bucket,
    Object,
}

fn target(path: &str) -> Target {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.split_once('/') {
        _ if path.is_empty() => Target::Root,
        None | Some((_, "")) => Target::Bucket,
        Some(_) => Target::Object,
    }
}

pub(crate) fn classify(method: &Method, uri: &Uri, headers: &HeaderMap) -> Op {
    let q = Query(uri.query().unwrap_or(""));
    let copy = headers.contains_key("x-amz-copy-source");
    match (method.as_str(), target(uri.path())) {
        ("HEAD", Target::Bucket) => Op::HeadBucket,
        ("HEAD", Target::Object) => Op::HeadObject,
        ("GET", Target::Root) => Op::ListBuckets,
        ("GET", Target::Bucket) => {
            if q.has("location") {
                Op::GetBucketLocation
            } else if q.has("uploads") {
                Op::ListMultipartUploads
            } else if q.has_any(BUCKET_SUBRESOURCES) {
                Op::Other
            } else if q.has_pair("list-type", "2") {
                Op::ListObjectsV2
            } else {
                Op::ListObjects
            }
        }
        ("GET", Target::Object) => {
            if q.has("tagging") {
                Op::GetObjectTagging
            } else if q.has_any(OBJECT_SUBRESOURCES) {
                Op::Other
            } else if q.has("uploadId") {
                Op::ListParts
            } else {
                Op::GetObject
            }
        }
        ("POST", Target::Bucket) if q.has("delete") => Op::DeleteObjects,
        ("POST", Target::Object) if q.has("uploads") => Op::CreateMultipartUpload,
        ("POST", Target::Object) if q.has("uploadId") && !q.has_any(OBJECT_SUBRESOURCES) => Op::CompleteMultipartUpload,
        ("PUT", Target::Bucket) if !q.has_any(BUCKET_SUBRESOURCES) => Op::CreateBucket,
        ("PUT", Target::Object) => {
            if q.has("tagging") {
                Op::PutObjectTagging
            } else if q.has_any(OBJECT_SUBRESOURCES) {
                Op::Other
            } else if q.has("partNumber") && q.has("uploadId") {
                if copy { Op::UploadPartCopy } else { Op::UploadPart }
            } else if copy {
                Op::CopyObject
            } else {
                Op::PutObject
            }
        }
        ("DELETE", Target::Bucket) if !q.has_any(BUCKET_SUBRESOURCES) => Op::DeleteBucket,
        ("DELETE", Target::Object) => {
            if q.has("tagging") {
                Op::DeleteObjectTagging
            } else if q.has("uploadId") {
                Op::AbortMultipartUpload
            } else {
                Op::DeleteObject
            }
        }
        _ => Op::Other,
    }
}

/// Bucket and key of a path-style request, percent-decoded, for the journal.
pub(crate) fn bucket_and_key(uri: &Uri) -> (String, String) {
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    (decode(bucket), decode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, uri: &str, copy: bool) -> &'static str {
        let mut headers = HeaderMap::new();
        if copy {
            headers.insert("x-amz-copy-source", "b/k".parse().unwrap());
        }
        let method: Method = method.parse().unwrap();
        classify(&method, &uri.parse().unwrap(), &headers).name()
    }

    #[test]
    fn classifies_object_operations() {
        assert_eq!(op("GET", "/b/k", false), "GetObject");
        assert_eq!(op("GET", "/b/k?x-id=GetObject", false), "GetObject");
        assert_eq!(op("PUT", "/b/k?x-id=PutObject", false), "PutObject");
        assert_eq!(op("PUT", "/b/k", true), "CopyObject");
        assert_eq!(op("PUT", "/b/k?partNumber=1&uploadId=u", false), "UploadPart");
        assert_eq!(op("PUT", "/b/k?partNumber=1&uploadId=u", true), "UploadPartCopy");
        assert_eq!(op("HEAD", "/b/k", false), "HeadObject");
        assert_eq!(op("DELETE", "/b/k", false), "DeleteObject");
        assert_eq!(op("DELETE", "/b/k?uploadId=u", false), "AbortMultipartUpload");
        assert_eq!(op("POST", "/b/k?uploads", false), "CreateMultipartUpload");
        assert_eq!(op("POST", "/b/k?uploadId=u", false), "CompleteMultipartUpload");
        assert_eq!(op("GET", "/b/k?uploadId=u", false), "ListParts");
        assert_eq!(op("GET", "/b/k?tagging", false), "GetObjectTagging");
        assert_eq!(op("PUT", "/b/k?tagging", false), "PutObjectTagging");
        assert_eq!(op("DELETE", "/b/k?tagging", false), "DeleteObjectTagging");
        assert_eq!(op("GET", "/b/k?acl", false), "Other");
    }

    #[test]
    fn classifies_bucket_operations() {
        assert_eq!(op("GET", "/", false), "ListBuckets");
        assert_eq!(op("PUT", "/b", false), "CreateBucket");
        assert_eq!(op("PUT", "/b/", false), "CreateBucket");
        assert_eq!(op("HEAD", "/b", false), "HeadBucket");
        assert_eq!(op("DELETE", "/b", false), "DeleteBucket");
        assert_eq!(op("GET", "/b?list-type=2&prefix=a", false), "ListObjectsV2");
        assert_eq!(op("GET", "/b?prefix=a", false), "ListObjects");
        assert_eq!(op("GET", "/b?location", false), "GetBucketLocation");
        assert_eq!(op("POST", "/b?delete", false), "DeleteObjects");
        assert_eq!(op("GET", "/b?versioning", false), "Other");
        assert_eq!(op("PUT", "/b?policy", false), "Other");
    }

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(*op));
        }
        assert_eq!(Op::from_name("Nope"), None);
    }

    #[test]
    fn journal_target_is_decoded() {
        let uri: Uri = "/bkt/a%20b/c%2Bd?x=1".parse().unwrap();
        assert_eq!(bucket_and_key(&uri), ("bkt".to_owned(), "a b/c+d".to_owned()));
    }
}
