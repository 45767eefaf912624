//! Keys exactly as S3 holds them. S3 event notifications carry keys
//! form-encoded (`+` for a space, `%XX` for the rest); CopySource must be
//! URL-encoded; and the destination key is the source key with the source
//! prefix swapped for the destination prefix. Getting any of these wrong
//! moves an object to the wrong name or copies the wrong object.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// S3's limit on a key's length, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("event key {key:?} has an invalid percent escape at byte {position}")]
    InvalidEscape { key: String, position: usize },
    #[error("event key {key:?} does not decode to UTF-8")]
    NotUtf8 { key: String },
    #[error("event key is empty")]
    Empty,
    #[error("key of {len} bytes is longer than S3's 1024-byte limit: {key:?}")]
    TooLong { key: String, len: usize },
}

/// Decodes a key as S3 event notifications deliver it: `+` stands for a
/// space, then percent escapes are decoded. An escape that is not `%` and two
/// hex digits is an error rather than passed through, because passing it
/// through would name a different object.
pub fn decode_event_key(raw: &str) -> Result<String, KeyError> {
    if needs_decoding(raw) { decode_escaped(raw) } else { plain(raw.to_owned()) }
}

/// [`decode_event_key`] of a key already owned: one with nothing to decode
/// (most keys; a listing of a million passes here) is moved, not copied.
pub fn decode_event_key_owned(raw: String) -> Result<String, KeyError> {
    if needs_decoding(&raw) { decode_escaped(&raw) } else { plain(raw) }
}

/// A listing's keys pass through here a million at a time: memchr looks at
/// a vector of bytes per step where a byte loop looks at one.
fn needs_decoding(raw: &str) -> bool {
    memchr::memchr2(b'%', b'+', raw.as_bytes()).is_some()
}

/// A key with nothing to decode, if S3 could hold it.
fn plain(key: String) -> Result<String, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: key.len(), key });
    }
    Ok(key)
}

fn decode_escaped(raw: &str) -> Result<String, KeyError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let valid = bytes.len() >= i + 3 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit();
            if !valid {
                return Err(KeyError::InvalidEscape { key: raw.to_owned(), position: i });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    // `+` becomes a space before percent decoding, so `%2B` still yields `+`.
    let spaced = raw.replace('+', " ");
    let decoded =
        percent_decode_str(&spaced).decode_utf8().map_err(|_| KeyError::NotUtf8 { key: raw.to_owned() })?.into_owned();
    if decoded.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: decoded.len(), key: decoded });
    }
    Ok(decoded)
}

/// Form-encodes a key the way S3 event notifications do; the inverse of
/// [`decode_event_key`], used to build events in tests and the demo.
pub fn encode_event_key(key: &str) -> String {
    form_urlencoded::byte_serialize(key.as_bytes()).collect()
}

/// Everything but the unreserved characters and `/` is escaped in CopySource.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// A key as an S3 Batch Operations CSV manifest must hold it: URL-encoded,
/// a space as `%20` and `+` as `%2B`, so a reader that decodes `+` as a
/// space (as S3 event keys are read) and one that does not both get the key.
pub fn encode_manifest_key(key: &str) -> String {
    utf8_percent_encode(key, COPY_SOURCE).to_string()
}

/// The `x-amz-copy-source` value for an object: `bucket/key`, URL-encoded.
/// Sent raw, a key holding `?`, `#`, `%` or `+` would name another object.
pub fn encode_copy_source(bucket: &str, key: &str) -> String {
    format!("{}/{}", bucket, utf8_percent_encode(key, COPY_SOURCE))
}

/// Normalises a configured prefix to a folder: empty stays empty, anything
/// else ends with exactly one `/`. Treating prefixes as folders keeps the
/// mapping one-to-one: with a bare `in`, both `in/x` and `inx` would map to
/// `x` and one would overwrite the other.
pub fn folder_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("{trimmed}/") }
}

/// Joins a prefix and a name with exactly one `/` between them, whatever
/// slashes the prefix was configured with. The name is kept as it is: its
/// own leading slashes are part of the key.
pub fn join_key(prefix: &str, name: &str) -> String {
    format!("{}{}", folder_prefix(prefix), name)
}

/// Where objects under a source prefix go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMapping {
    source_prefix: String,
    dest_prefix: String,
    keep_source_prefix: bool,
}

impl KeyMapping {
    pub fn new(source_prefix: &str, dest_prefix: &str, keep_source_prefix: bool) -> Self {
        Self {
            source_prefix: folder_prefix(source_prefix),
            dest_prefix: folder_prefix(dest_prefix),
            keep_source_prefix,
        }
    }

    pub fn source_prefix(&self) -> &str {
        &self.source_prefix
    }

    pub fn dest_prefix(&self) -> &str {
        &self.dest_prefix
    }

    /// The destination key for `key`, or `None` when `key` is not under the
    /// source prefix. The mapping is one-to-one: distinct keys under the
    /// source prefix never share a destination.
    pub fn map(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(self.source_prefix.as_str())?;
        let name = if self.keep_source_prefix { key } else { rest };
        Some(format!("{}{}", self.dest_prefix, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (event form, key as S3 holds it)
    const ODD_KEYS: &[(&str, &str)] = &[
        ("plain.csv", "plain.csv"),
        ("with+space.csv", "with space.csv"),
        ("literal%2Bplus.csv", "literal+plus.csv"),
        ("percent%25sign.csv", "percent%sign.csv"),
        ("percent%252B.csv", "percent%2B.csv"),
        ("caf%C3%A9/%E6%97%A5%E6%9C%AC.csv", "café/日本.csv"),
        ("q%3Fa%26b%23c%3Dd.csv", "q?a&b#c=d.csv"),
        ("%2Fleading.csv", "/leading.csv"),
        ("trailing%2F", "trailing/"),
        ("double%2F%2Fslash.csv", "double//slash.csv"),
        ("emoji%F0%9F%98%80+x.csv", "emoji😀 x.csv"),
        ("tab%09and+newline%0A.csv", "tab\tand newline\n.csv"),
    ];

    #[test]
    fn decodes_every_odd_key() {
        for (raw, expected) in ODD_KEYS {
            assert_eq!(decode_event_key(raw).as_deref(), Ok(*expected), "decoding {raw}");
        }
    }

    #[test]
    fn event_encoding_round_trips() {
        for (_, key) in ODD_KEYS {
            assert_eq!(decode_event_key(&encode_event_key(key)).as_deref(), Ok(*key));
        }
    }

    #[test]
    fn an_owned_key_is_checked_as_a_borrowed_one() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(decode_event_key_owned(String::new()), Err(KeyError::Empty)));
        assert!(matches!(decode_event_key_owned(long.clone()), Err(KeyError::TooLong { .. })));
        assert!(matches!(decode_event_key(&long), Err(KeyError::TooLong { .. })));
        assert_eq!(decode_event_key_owned("a+b%2B c".into()).ok().as_deref(), Some("a b+ c"));
        assert_eq!(decode_event_key_owned("plain/key.csv".into()).ok().as_deref(), Some("plain/key.csv"));
    }

    #[test]
    fn invalid_escapes_are_errors() {
        for raw in ["bad%", "bad%2", "bad%zz", "bad%G1x", "%"] {
            assert!(matches!(decode_event_key(raw), Err(KeyError::InvalidEscape { .. })), "{raw} should be rejected");
        }
        assert_eq!(decode_event_key("%FF%FE"), Err(KeyError::NotUtf8 { key: "%FF%FE".into() }));
        assert_eq!(decode_event_key(""), Err(KeyError::Empty));
        let long = "k".repeat(1025);
        assert!(matches!(decode_event_key(&long), Err(KeyError::TooLong { len: 1025, .. })));
        assert!(decode_event_key(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn copy_source_escapes_everything_but_slashes_and_unreserved() {
        assert_eq!(encode_copy_source("b", "a/b c+d%e?f&g#h=i.csv"), "b/a/b%20c%2Bd%25e%3Ff%26g%23h%3Di.csv");
        assert_eq!(encode_copy_source("b", "café"), "b/caf%C3%A9");
        assert_eq!(encode_copy_source("b", "/lead//x/"), "b//lead//x/");
        assert_eq!(encode_copy_source("b", "keep-_.~"), "b/keep-_.~");
    }

    #[test]
    fn prefixes_join_with_exactly_one_slash() {
        assert_eq!(join_key("", "k"), "k");
        assert_eq!(join_key("out", "k"), "out/k");
        assert_eq!(join_key("out/", "k"), "out/k");
        assert_eq!(join_key("out//", "k"), "out/k");
        assert_eq!(join_key("/", "k"), "k");
        assert_eq!(join_key("out", "/k"), "out//k");
    }

    #[test]
    fn mapping_strips_the_source_prefix() {
        let m = KeyMapping::new("incoming", "archive/", false);
        assert_eq!(m.map("incoming/a.csv").as_deref(), Some("archive/a.csv"));
        assert_eq!(m.map("incoming/x/y z.csv").as_deref(), Some("archive/x/y z.csv"));
        assert_eq!(m.map("incoming//double").as_deref(), Some("archive//double"));
        assert_eq!(m.map("incomingx/a.csv"), None);
        assert_eq!(m.map("other/a.csv"), None);
        assert_eq!(m.map("incoming").as_deref(), None);
    }

    #[test]
    fn mapping_keeps_the_source_prefix_when_asked() {
        let m = KeyMapping::new("incoming/", "archive", true);
        assert_eq!(m.map("incoming/a.csv").as_deref(), Some("archive/incoming/a.csv"));
        let all = KeyMapping::new("", "", false);
        assert_eq!(all.map("/lead").as_deref(), Some("/lead"));
        assert_eq!(all.map("a").as_deref(), Some("a"));
    }

    #[test]
    fn mapping_is_one_to_one_over_the_odd_keys() {
        let m = KeyMapping::new("in/", "out", false);
        let mut seen = std::collections::HashSet::new();
        for (_, key) in ODD_KEYS {
            let dest = m.map(&format!("in/{key}")).expect("under prefix");
            assert!(seen.insert(dest.clone()), "{dest} mapped twice");
            assert_eq!(dest, format!("out/{key}"));
        }
    }
}
