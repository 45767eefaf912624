//! Reads a ListObjectsV2 response body (a `ListBucketResult` document)
//! with quick-xml, taking only what a listing uses: each object's key,
//! size, ETag and LastModified, whether the listing is truncated, the
//! continuation token and the encoding type.
//!
//! Why not the SDK's own deserializer: with it a 1,000-key page cost the
//! listing 4.5–4.7 ms of CPU, most of it in building every field of every
//! `Object` (owner, storage class, checksum algorithms, restore status)
//! through `aws_smithy_xml`; with this, 1.7–2.8 ms (the listing bench). The
//! listing is CPU-bound once its calls run in parallel. The SDK still signs, sends, retries
//! and turns error responses into errors (see `capture.rs`).

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use quick_xml::Reader;
use quick_xml::events::Event;

/// One `<Contents>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ListedObject {
    /// As the document holds it: URL-encoded when `url_encoded` is set.
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// Milliseconds since the epoch; `None` when absent or not RFC 3339.
    pub last_modified_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ListedPage {
    pub objects: Vec<ListedObject>,
    pub is_truncated: bool,
    pub next_token: Option<String>,
    /// `<EncodingType>url</EncodingType>`: keys are URL-encoded.
    pub url_encoded: bool,
}

/// Which of the values a listing may do without it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    pub etags: bool,
    pub last_modified: bool,
}

impl Kept {
    #[cfg(test)]
    pub const ALL: Kept = Kept { etags: true, last_modified: true };

    fn wants(self, field: Field) -> bool {
        match field {
            Field::Other => false,
            Field::ETag => self.etags,
            Field::LastModified => self.last_modified,
            _ => true,
        }
    }
}

/// Where the reader is: the fields this parser keeps, by their element path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    Key,
    Size,
    ETag,
    LastModified,
    IsTruncated,
    NextToken,
    EncodingType,
}

/// One element of the path from the root: only what `Field` needs to know,
/// so that no element name is copied (a 1,000-key page has ~8,000 elements).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Root,
    Contents,
    Field(Field),
}

/// The step an element named `name` takes below `path`.
fn step(path: &[Step], name: &[u8]) -> Step {
    match path {
        [] => Step::Root,
        [Step::Root] => match name {
            b"Contents" => Step::Contents,
            b"IsTruncated" => Step::Field(Field::IsTruncated),
            b"NextContinuationToken" => Step::Field(Field::NextToken),
            b"EncodingType" => Step::Field(Field::EncodingType),
            _ => Step::Field(Field::Other),
        },
        [Step::Root, Step::Contents] => Step::Field(match name {
            b"Key" => Field::Key,
            b"Size" => Field::Size,
            b"ETag" => Field::ETag,
            b"LastModified" => Field::LastModified,
            _ => Field::Other,
        }),
        _ => Step::Field(Field::Other),
    }
}

fn field_at(path: &[Step]) -> Field {
    match path.last() {
        Some(Step::Field(field)) if path.len() <= 3 => *field,
        _ => Field::Other,
    }
}

/// Parses a `ListBucketResult` document. Elements it does not use are
/// skipped whatever they hold; a document that is not well-formed XML, or
/// whose root is not `ListBucketResult`, is an error naming what is wrong.
///
/// ETags and dates are read only when `kept` asks for them: a listing with
/// no use for them (the merge's) saves an allocation and a free per key
/// for the ETag, and a date parse (3% of its CPU) for LastModified.
pub(super) fn parse_list_page(xml: &[u8], kept: Kept) -> Result<ListedPage, String> {
    let mut reader = Reader::from_reader(xml);
    // A `<Contents>` element takes at least ~150 bytes (key, date, ETag,
    // size); sized ahead, a 1,000-key page is not moved as it grows.
    let mut page = ListedPage { objects: Vec::with_capacity((xml.len() / 150).min(1000)), ..ListedPage::default() };
    // The path from the root down, by local names (a namespace prefix, if
    // any, is not part of them).
    let mut path: Vec<Step> = Vec::with_capacity(8);
    let mut object: Option<ListedObject> = None;
    let mut field = Field::Other;
    // One buffer for every value: only the values kept as strings (a key,
    // an ETag, the token) are copied out of it, each in one allocation of
    // its exact size; sizes and dates are parsed where they lie. A page
    // has thousands of values, and allocations were most of the CPU the
    // listing spent outside the parser.
    let mut text = String::with_capacity(256);
    loop {
        let event = reader.read_event().map_err(|err| format!("at byte {}: {err}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                let local = start.local_name();
                let name = local.as_ref();
                if path.is_empty() && name != b"ListBucketResult" {
                    return Err(format!(
                        "the root element is <{}>, not <ListBucketResult>",
                        String::from_utf8_lossy(name)
                    ));
                }
                let next = step(&path, name);
                path.push(next);
                field = field_at(&path);
                text.clear();
                if next == Step::Contents {
                    object = Some(ListedObject::default());
                }
            }
            Event::Empty(empty) => {
                // <Key/>: an empty value.
                let local = empty.local_name();
                let next = step(&path, local.as_ref());
                path.push(next);
                let at = field_at(&path);
                path.pop();
                if kept.wants(at) {
                    assign(at, "", &mut page, object.as_mut())?;
                }
            }
            Event::Text(chars) if kept.wants(field) => {
                text.push_str(&chars.decode().map_err(|err| format!("text is not UTF-8: {err}"))?);
            }
            Event::CData(chars) if kept.wants(field) => {
                text.push_str(&chars.decode().map_err(|err| format!("CDATA is not UTF-8: {err}"))?);
            }
            Event::GeneralRef(reference) if kept.wants(field) => {
                if let Some(ch) =
                    reference.resolve_char_ref().map_err(|err| format!("bad character reference: {err}"))?
                {
                    text.push(ch);
                } else {
                    let name = reference.decode().map_err(|err| format!("entity name is not UTF-8: {err}"))?;
                    text.push(match name.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(format!("unknown entity &{other};")),
                    });
                }
            }
            Event::End(_) => {
                if path.last() == Some(&Step::Contents) {
                    if let Some(done) = object.take() {
                        page.objects.push(done);
                    }
                } else if kept.wants(field) {
                    assign(field, &text, &mut page, object.as_mut())?;
                    text.clear();
                }
                path.pop();
                field = field_at(&path);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err("the document ends inside an element".to_owned());
    }
    Ok(page)
}

fn assign(field: Field, value: &str, page: &mut ListedPage, object: Option<&mut ListedObject>) -> Result<(), String> {
    match (field, object) {
        (Field::Key, Some(object)) => object.key = value.to_owned(),
        (Field::Size, Some(object)) => {
            object.size = Some(value.trim().parse().map_err(|_| format!("<Size> is not a size: {value:?}"))?);
        }
        (Field::ETag, Some(object)) => object.etag = Some(value.to_owned()),
        (Field::LastModified, Some(object)) => {
            object.last_modified_ms = DateTime::from_str(value.trim(), Format::DateTime)
                .ok()
                .and_then(|t| t.to_millis().ok())
                .and_then(|ms| u64::try_from(ms).ok());
        }
        (Field::IsTruncated, _) => page.is_truncated = value.trim() == "true",
        (Field::NextToken, _) => page.next_token = Some(value.to_owned()),
        (Field::EncodingType, _) => page.url_encoded = value.trim() == "url",
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b-in</Name><Prefix>csvs/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>csvs/a+b%25.csv</Key><LastModified>2026-11-30T12:00:01.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <Size>42</Size><Owner><ID>abc</ID><DisplayName>Key</DisplayName></Owner><StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents><Key>csvs/&lt;&amp;&gt;&#x41;&#66;</Key><Size>0</Size><ETag>"e"</ETag></Contents>
  <Contents><Key/><Size>1</Size></Contents>
  <CommonPrefixes><Prefix>csvs/x/</Prefix></CommonPrefixes>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;

    #[test]
    fn reads_the_fields_a_listing_uses() {
        let page = parse_list_page(PAGE.as_bytes(), Kept::ALL).expect("parses");
        assert!(page.is_truncated && page.url_encoded);
        assert_eq!(page.next_token.as_deref(), Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
        assert_eq!(
            page.objects,
            vec![
                ListedObject {
                    key: "csvs/a+b%25.csv".into(),
                    size: Some(42),
                    etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
                    last_modified_ms: Some(1_796_040_001_000),
                },
                ListedObject {
                    key: "csvs/<&>AB".into(),
                    size: Some(0),
                    etag: Some("\"e\"".into()),
                    last_modified_ms: None
                },
                ListedObject { key: String::new(), size: Some(1), etag: None, last_modified_ms: None },
            ]
        );
    }

    #[test]
    fn etags_and_dates_are_left_out_when_not_wanted_and_nothing_else_is() {
        let with = parse_list_page(PAGE.as_bytes(), Kept::ALL).expect("parses");
        let kinds = [
            Kept { etags: false, last_modified: true },
            Kept { etags: true, last_modified: false },
            Kept { etags: false, last_modified: false },
        ];
        for kept in kinds {
            let without = parse_list_page(PAGE.as_bytes(), kept).expect("parses");
            let expected: Vec<ListedObject> = with
                .objects
                .iter()
                .map(|o| ListedObject {
                    etag: o.etag.clone().filter(|_| kept.etags),
                    last_modified_ms: o.last_modified_ms.filter(|_| kept.last_modified),
                    ..o.clone()
                })
                .collect();
            assert_eq!(without.objects, expected, "{kept:?}");
            assert_eq!((&with.next_token, with.is_truncated), (&without.next_token, without.is_truncated));
        }
    }

    #[test]
    fn a_namespace_prefix_and_no_encoding() {
        let xml = r#"<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:IsTruncated>false</s3:IsTruncated><s3:Contents><s3:Key>k 1</s3:Key><s3:Size>7</s3:Size></s3:Contents></s3:ListBucketResult>"#;
        let page = parse_list_page(xml.as_bytes(), Kept::ALL).expect("parses");
        assert!(!page.is_truncated && !page.url_encoded && page.next_token.is_none());
        assert_eq!(page.objects.len(), 1);
        assert_eq!((page.objects[0].key.as_str(), page.objects[0].size), ("k 1", Some(7)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse_list_page(b"<Error><Code>x</Code></Error>", Kept::ALL).unwrap_err().contains("<Error>"));
        assert!(
            parse_list_page(b"<ListBucketResult><Contents><Key>a</Key>", Kept::ALL)
                .unwrap_err()
                .contains("ends inside")
        );
        assert!(
            parse_list_page(b"<ListBucketResult><Contents><Size>x1</Size></Contents></ListBucketResult>", Kept::ALL)
                .unwrap_err()
                .contains("<Size>")
        );
        assert!(
            parse_list_page(b"<ListBucketResult><Contents><Key>&nope;</Key></Contents></ListBucketResult>", Kept::ALL)
                .unwrap_err()
                .contains("&nope;")
        );
    }
}
