//! Object and bucket operations through aws-sdk-s3 over real HTTP.

mod common;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier, Tag, Tagging,
    TaggingDirective,
};
use common::{copy_source, env, md5_hex, multipart_etag, status_and_code};

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn put_get_head_delete_round_trip_with_attributes() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let body = b"id,name\n1,ana\n".to_vec();
    let put = e
        .client
        .put_object()
        .bucket("bkt")
        .key("in/data.csv")
        .body(ByteStream::from(body.clone()))
        .content_type("text/csv")
        .metadata("owner", "ana")
        .metadata("run-id", "7")
        .tagging("team=data&stage=raw%20in")
        .send()
        .await
        .unwrap();
    let etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(put.e_tag(), Some(etag.as_str()));

    let got = e.client.get_object().bucket("bkt").key("in/data.csv").send().await.unwrap();
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(got.content_type(), Some("text/csv"));
    assert_eq!(got.content_length(), Some(body.len() as i64));
    assert_eq!(got.tag_count(), Some(2));
    let metadata: HashMap<String, String> = got.metadata().cloned().unwrap_or_default();
    assert_eq!(metadata.get("owner").map(String::as_str), Some("ana"));
    assert_eq!(metadata.get("run-id").map(String::as_str), Some("7"));
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());

    let head = e.client.head_object().bucket("bkt").key("in/data.csv").send().await.unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.content_type(), Some("text/csv"));

    let tags = e.client.get_object_tagging().bucket("bkt").key("in/data.csv").send().await.unwrap();
    let tags: Vec<(&str, &str)> = tags.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("team", "data"), ("stage", "raw in")]);

    let stored = e.s3.object("bkt", "in/data.csv").unwrap();
    assert_eq!(stored.data.as_ref(), body.as_slice());
    assert_eq!(stored.etag, etag);
    assert_eq!(stored.content_type.as_deref(), Some("text/csv"));
    assert_eq!(stored.metadata, BTreeMap::from([("owner".into(), "ana".into()), ("run-id".into(), "7".into())]));
    assert_eq!(stored.tags, [("team".into(), "data".into()), ("stage".into(), "raw in".into())]);

    e.client.delete_object().bucket("bkt").key("in/data.csv").send().await.unwrap();
    let err = e.client.get_object().bucket("bkt").key("in/data.csv").send().await.unwrap_err();
    assert!(err.as_service_error().is_some_and(|s| s.is_no_such_key()), "{err:?}");
    assert_eq!(status_and_code(&err).0, Some(404));
    assert!(e.s3.object("bkt", "in/data.csv").is_none());
    // Deleting a missing key succeeds, as on S3.
    e.client.delete_object().bucket("bkt").key("in/data.csv").send().await.unwrap();
}

#[tokio::test]
async fn ranges_and_read_conditions() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let etag = e.s3.put_object("bkt", "k", b"0123456789").unwrap();

    let part = e.client.get_object().bucket("bkt").key("k").range("bytes=2-5").send().await.unwrap();
    assert_eq!(part.content_range(), Some("bytes 2-5/10"));
    assert_eq!(part.body.collect().await.unwrap().into_bytes().as_ref(), b"2345");
    let suffix = e.client.get_object().bucket("bkt").key("k").range("bytes=-3").send().await.unwrap();
    assert_eq!(suffix.body.collect().await.unwrap().into_bytes().as_ref(), b"789");

    let err = e.client.get_object().bucket("bkt").key("k").range("bytes=10-20").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(416), Some("InvalidRange".into())));

    let err = e.client.get_object().bucket("bkt").key("k").if_match("\"abc\"").send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(412));
    let err = e.client.get_object().bucket("bkt").key("k").if_none_match(&etag).send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(304));
    let ok = e.client.get_object().bucket("bkt").key("k").if_match(&etag).send().await.unwrap();
    assert_eq!(ok.body.collect().await.unwrap().into_bytes().as_ref(), b"0123456789");
}

#[tokio::test]
async fn large_bodies_with_default_checksums_round_trip() {
    // The SDK's default flexible checksums send aws-chunked bodies with a
    // CRC trailer; 7 MiB also crosses the server's in-memory buffer size.
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let body = pattern(7 * MIB + 13, 5);
    let put = e.client.put_object().bucket("bkt").key("big").body(ByteStream::from(body.clone())).send().await.unwrap();
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&body)).as_str()));
    let got = e.client.get_object().bucket("bkt").key("big").send().await.unwrap();
    let got = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(got.len(), body.len());
    assert!(got.as_ref() == body.as_slice());
    let tail = e
        .client
        .get_object()
        .bucket("bkt")
        .key("big")
        .range(format!("bytes={}-", body.len() - 300_000))
        .send()
        .await
        .unwrap();
    let tail = tail.body.collect().await.unwrap().into_bytes();
    assert!(tail.as_ref() == &body[body.len() - 300_000..]);
}

#[tokio::test]
async fn unusual_keys_round_trip_and_list() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let long_key = format!("long/{}", "x".repeat(1024 - 5));
    assert_eq!(long_key.len(), 1024);
    let keys = [
        long_key.as_str(),
        "a",
        "a/b",
        "a/b/c",
        "with space/and+plus/100%/q?x=1&y=2#frag",
        "données/été/日本語.csv",
        "trailing/",
        "double//slash",
        "tab\tand~tilde",
    ];
    for (i, key) in keys.iter().enumerate() {
        e.client
            .put_object()
            .bucket("bkt")
            .key(*key)
            .body(ByteStream::from(format!("body {i}").into_bytes()))
            .send()
            .await
            .unwrap_or_else(|err| panic!("put {key:?}: {err:?}"));
    }
    for (i, key) in keys.iter().enumerate() {
        let got = e.client.get_object().bucket("bkt").key(*key).send().await.unwrap();
        let data = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(data.as_ref(), format!("body {i}").as_bytes(), "{key:?}");
    }
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(e.s3.keys("bkt"), expected);

    let listed = e.client.list_objects_v2().bucket("bkt").send().await.unwrap();
    let listed: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert_eq!(listed, expected);

    // With encoding-type=url the keys come back percent-encoded.
    let encoded = e
        .client
        .list_objects_v2()
        .bucket("bkt")
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .unwrap();
    let decoded: Vec<String> = encoded
        .contents()
        .iter()
        .map(|o| {
            let k = o.key().unwrap();
            assert!(!k.contains(' ') && k.is_ascii(), "not encoded: {k:?}");
            percent_encoding::percent_decode_str(k).decode_utf8().unwrap().into_owned()
        })
        .collect();
    assert_eq!(decoded, expected);

    let too_long = "y".repeat(1025);
    let err = e
        .client
        .put_object()
        .bucket("bkt")
        .key(&too_long)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err).1.as_deref(), Some("KeyTooLongError"));
    let err = e.client.create_multipart_upload().bucket("bkt").key(&too_long).send().await.unwrap_err();
    assert_eq!(status_and_code(&err).1.as_deref(), Some("KeyTooLongError"));
}

#[tokio::test]
async fn concurrent_if_none_match_puts_have_exactly_one_winner() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let attempts = (0..16).map(|i| {
        let client = e.client.clone();
        tokio::spawn(async move {
            let result = client
                .put_object()
                .bucket("bkt")
                .key("lock")
                .if_none_match("*")
                .body(ByteStream::from(format!("writer {i}").into_bytes()))
                .send()
                .await;
            (i, result.map_err(|err| status_and_code(&err)))
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for r in results {
        match r.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(status)) => assert_eq!(status, (Some(412), Some("PreconditionFailed".into()))),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = e.s3.object("bkt", "lock").unwrap();
    assert_eq!(stored.data.as_ref(), format!("writer {}", winners[0]).as_bytes());
}

#[tokio::test]
async fn if_match_puts_replace_only_the_expected_version() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let v1 = e.s3.put_object("bkt", "k", b"v1").unwrap();
    let v2 = e
        .client
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_match(&v1)
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    let err = e
        .client
        .put_object()
        .bucket("bkt")
        .key("k")
        .if_match(&v1)
        .body(ByteStream::from_static(b"v3"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(412));
    assert_eq!(e.s3.object("bkt", "k").unwrap().etag, v2.e_tag().unwrap());
    let err = e
        .client
        .put_object()
        .bucket("bkt")
        .key("missing")
        .if_match(&v1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchKey".into())));
    assert!(e.s3.object("bkt", "missing").is_none());
}

#[tokio::test]
async fn copy_object_conditions_and_directives() {
    let e = env().await;
    e.s3.create_bucket("src").unwrap();
    e.s3.create_bucket("dst").unwrap();
    let src_key = "dir/näme with space+plus.csv";
    let put = e
        .client
        .put_object()
        .bucket("src")
        .key(src_key)
        .body(ByteStream::from_static(b"payload"))
        .content_type("text/csv")
        .metadata("origin", "upstream")
        .tagging("k1=v1")
        .send()
        .await
        .unwrap();
    let src_etag = put.e_tag().unwrap().to_owned();
    let old_dest = e.s3.put_object("dst", "copy", b"old").unwrap();

    let err = e
        .client
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source(copy_source("src", src_key))
        .copy_source_if_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err), (Some(412), Some("PreconditionFailed".into())));
    let untouched = e.s3.object("dst", "copy").unwrap();
    assert_eq!((untouched.data.as_ref(), untouched.etag.as_str()), (&b"old"[..], old_dest.as_str()));

    // Destination condition: only copy over the version we expect.
    let err = e
        .client
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source(copy_source("src", src_key))
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(412));

    let copied = e
        .client
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source(copy_source("src", src_key))
        .copy_source_if_match(&src_etag)
        .if_match(&old_dest)
        .send()
        .await
        .unwrap();
    let result = copied.copy_object_result().unwrap();
    assert_eq!(result.e_tag(), Some(src_etag.as_str()));
    assert!(result.last_modified().is_some());
    let dest = e.s3.object("dst", "copy").unwrap();
    assert_eq!(dest.data.as_ref(), b"payload");
    assert_eq!(dest.content_type.as_deref(), Some("text/csv"));
    assert_eq!(dest.metadata.get("origin").map(String::as_str), Some("upstream"));
    assert_eq!(dest.tags, [("k1".to_owned(), "v1".to_owned())]);

    let replaced = e
        .client
        .copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source(copy_source("src", src_key))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .metadata("fresh", "yes")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("k2=v2")
        .send()
        .await;
    replaced.unwrap();
    let dest = e.s3.object("dst", "replaced").unwrap();
    assert_eq!(dest.content_type.as_deref(), Some("application/json"));
    assert_eq!(dest.metadata, BTreeMap::from([("fresh".to_owned(), "yes".to_owned())]));
    assert_eq!(dest.tags, [("k2".to_owned(), "v2".to_owned())]);

    let err = e
        .client
        .copy_object()
        .bucket("src")
        .key(src_key)
        .copy_source(copy_source("src", src_key))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err), (Some(400), Some("InvalidRequest".into())));

    let err =
        e.client.copy_object().bucket("dst").key("x").copy_source(copy_source("src", "nope")).send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchKey".into())));
}

#[tokio::test]
async fn multipart_upload_and_upload_part_copy_build_identical_objects() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let part1 = pattern(5 * MIB, 1);
    let part2 = pattern(MIB + 7, 2);

    let created = e
        .client
        .create_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .content_type("text/plain")
        .metadata("m", "1")
        .tagging("t=1")
        .send()
        .await
        .unwrap();
    let upload_id = created.upload_id().unwrap();
    let mut completed = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let out = e
            .client
            .upload_part()
            .bucket("bkt")
            .key("mp")
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.e_tag(), Some(format!("\"{}\"", md5_hex(data)).as_str()));
        completed.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
    }
    let parts = e.client.list_parts().bucket("bkt").key("mp").upload_id(upload_id).send().await.unwrap();
    let sizes: Vec<i64> = parts.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [part1.len() as i64, part2.len() as i64]);
    let done = e
        .client
        .complete_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .unwrap();
    let expected_etag = multipart_etag(&[&part1, &part2]);
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    let stored = e.s3.object("bkt", "mp").unwrap();
    let whole = [part1.as_slice(), part2.as_slice()].concat();
    assert!(stored.data.as_ref() == whole.as_slice());
    assert_eq!(stored.etag, expected_etag);
    assert_eq!(stored.content_type.as_deref(), Some("text/plain"));
    assert_eq!(stored.metadata.get("m").map(String::as_str), Some("1"));
    assert_eq!(stored.tags, [("t".to_owned(), "1".to_owned())]);

    // Rebuild the same object from ranges of the first: identical parts give
    // an identical body and multipart ETag.
    let created = e.client.create_multipart_upload().bucket("bkt").key("mp-copy").send().await.unwrap();
    let copy_id = created.upload_id().unwrap();
    let ranges = [(1, 0, part1.len() - 1), (2, part1.len(), whole.len() - 1)];
    let mut completed = Vec::new();
    for (n, first, last) in ranges {
        let out = e
            .client
            .upload_part_copy()
            .bucket("bkt")
            .key("mp-copy")
            .upload_id(copy_id)
            .part_number(n)
            .copy_source("bkt/mp")
            .copy_source_range(format!("bytes={first}-{last}"))
            .copy_source_if_match(&expected_etag)
            .send()
            .await
            .unwrap();
        let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap().to_owned();
        completed.push(CompletedPart::builder().part_number(n).e_tag(etag).build());
    }
    let done = e
        .client
        .complete_multipart_upload()
        .bucket("bkt")
        .key("mp-copy")
        .upload_id(copy_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .unwrap();
    assert_eq!(done.e_tag(), Some(expected_etag.as_str()));
    let copy = e.s3.object("bkt", "mp-copy").unwrap();
    assert!(copy.data.as_ref() == whole.as_slice());
    assert!(copy.etag.ends_with("-2\""));
}

#[tokio::test]
async fn multipart_errors() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let created = e.client.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap();
    let id = created.upload_id().unwrap();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let out = e
            .client
            .upload_part()
            .bucket("bkt")
            .key("k")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from_static(b"small"))
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
    }
    let complete = |parts: Vec<CompletedPart>| {
        e.client
            .complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let err = complete(parts.clone()).await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(400), Some("EntityTooSmall".into())));
    let reversed = vec![parts[1].clone(), parts[0].clone()];
    let err = complete(reversed).await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(400), Some("InvalidPartOrder".into())));
    let wrong_etag = vec![CompletedPart::builder().part_number(1).e_tag("\"00\"").build()];
    let err = complete(wrong_etag).await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(400), Some("InvalidPart".into())));
    // A single small part is allowed: the last part has no minimum.
    complete(vec![parts[0].clone()]).await.unwrap();
    assert_eq!(e.s3.object("bkt", "k").unwrap().data.as_ref(), b"small");

    let created = e.client.create_multipart_upload().bucket("bkt").key("k2").send().await.unwrap();
    let id = created.upload_id().unwrap();
    e.client.abort_multipart_upload().bucket("bkt").key("k2").upload_id(id).send().await.unwrap();
    let err = e
        .client
        .upload_part()
        .bucket("bkt")
        .key("k2")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchUpload".into())));
    assert!(e.s3.object("bkt", "k2").is_none());
}

#[tokio::test]
async fn delete_object_if_match() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let etag = e.s3.put_object("bkt", "k", b"data").unwrap();
    let err = e
        .client
        .delete_object()
        .bucket("bkt")
        .key("k")
        .if_match("\"ffffffffffffffffffffffffffffffff\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_and_code(&err), (Some(412), Some("PreconditionFailed".into())));
    assert_eq!(e.s3.object("bkt", "k").unwrap().data.as_ref(), b"data");
    e.client.delete_object().bucket("bkt").key("k").if_match(&etag).send().await.unwrap();
    assert!(e.s3.object("bkt", "k").is_none());
    let err = e.client.delete_object().bucket("bkt").key("k").if_match("*").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchKey".into())));
}

#[tokio::test]
async fn delete_objects_in_bulk_with_quiet_mode_and_per_key_errors() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let keys: Vec<String> = (0..1500).map(|i| format!("batch/{i:04}")).collect();
    for k in &keys {
        e.s3.put_object("bkt", k, k.as_bytes()).unwrap();
    }
    let ids = |keys: &[String]| -> Vec<ObjectIdentifier> {
        keys.iter().map(|k| ObjectIdentifier::builder().key(k).build().unwrap()).collect()
    };
    let mut first = ids(&keys[..1000]);
    first.push(ObjectIdentifier::builder().key("never-existed").build().unwrap());
    let out = e
        .client
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(first)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 1001);
    assert!(out.errors().is_empty());
    assert_eq!(e.s3.keys("bkt").len(), 500);

    let keep = keys[1000].clone();
    let mut rest = ids(&keys[1001..]);
    rest.push(ObjectIdentifier::builder().key(&keep).e_tag("\"00000000000000000000000000000000\"").build().unwrap());
    let out = e
        .client
        .delete_objects()
        .bucket("bkt")
        .delete(Delete::builder().set_objects(Some(rest)).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty(), "quiet mode lists no deletions");
    let errors: Vec<(Option<&str>, Option<&str>)> = out.errors().iter().map(|e| (e.key(), e.code())).collect();
    assert_eq!(errors, [(Some(keep.as_str()), Some("PreconditionFailed"))]);
    assert_eq!(e.s3.keys("bkt"), [keep]);
}

#[tokio::test]
async fn tagging_operations_keep_body_and_etag() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let etag = e.s3.put_object("bkt", "k", b"body").unwrap();
    let before = e.s3.object("bkt", "k").unwrap();
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("a").value("1").build().unwrap())
        .tag_set(Tag::builder().key("b").value("2").build().unwrap())
        .build()
        .unwrap();
    e.client.put_object_tagging().bucket("bkt").key("k").tagging(tagging).send().await.unwrap();
    let after = e.s3.object("bkt", "k").unwrap();
    assert_eq!(after.tags, [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
    assert_eq!(
        (after.data, after.etag.as_str(), after.last_modified),
        (before.data, etag.as_str(), before.last_modified)
    );
    e.client.delete_object_tagging().bucket("bkt").key("k").send().await.unwrap();
    let got = e.client.get_object_tagging().bucket("bkt").key("k").send().await.unwrap();
    assert!(got.tag_set().is_empty());
    let err = e.client.get_object_tagging().bucket("bkt").key("nope").send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(404));
}

#[tokio::test]
async fn bucket_operations() {
    let e = env().await;
    e.client.create_bucket().bucket("one").send().await.unwrap();
    let err = e.client.create_bucket().bucket("one").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(409), Some("BucketAlreadyOwnedByYou".into())));
    e.client.head_bucket().bucket("one").send().await.unwrap();
    let err = e.client.head_bucket().bucket("missing").send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(404));
    e.client.get_bucket_location().bucket("one").send().await.unwrap();
    e.client.create_bucket().bucket("two").send().await.unwrap();
    let listed = e.client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["one", "two"]);

    e.s3.put_object("one", "k", b"x").unwrap();
    let err = e.client.delete_bucket().bucket("one").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(409), Some("BucketNotEmpty".into())));
    e.client.delete_object().bucket("one").key("k").send().await.unwrap();
    e.client.delete_bucket().bucket("one").send().await.unwrap();
    let err =
        e.client.put_object().bucket("one").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchBucket".into())));
    let err = e.client.list_objects_v2().bucket("one").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(404), Some("NoSuchBucket".into())));
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let bad = common::client_with(
        &e.s3.endpoint(),
        e.s3.access_key(),
        "not-the-secret",
        aws_sdk_s3::config::retry::RetryConfig::disabled(),
    );
    let err = bad.list_objects_v2().bucket("bkt").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(403), Some("SignatureDoesNotMatch".into())));
    let err = bad.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(403));
    assert!(e.s3.keys("bkt").is_empty());
}

/// S3 reads `+` in x-amz-copy-source as a space (clients such as s5cmd
/// form-encode keys); a literal `+` arrives as `%2B`.
#[tokio::test]
async fn copy_source_plus_is_a_space_and_percent_2b_a_plus() {
    let e = env().await;
    e.s3.create_bucket("bkt").expect("bucket");
    e.s3.put_object("bkt", "day 1/a.csv", b"space").expect("put");
    e.s3.put_object("bkt", "c++/a.csv", b"plus").expect("put");
    e.client.copy_object().bucket("bkt").key("out1").copy_source("bkt/day+1/a.csv").send().await.expect("copy +");
    e.client.copy_object().bucket("bkt").key("out2").copy_source("bkt/c%2B%2B/a.csv").send().await.expect("copy %2B");
    assert_eq!(e.s3.object("bkt", "out1").expect("out1").data.as_ref(), b"space");
    assert_eq!(e.s3.object("bkt", "out2").expect("out2").data.as_ref(), b"plus");
}
