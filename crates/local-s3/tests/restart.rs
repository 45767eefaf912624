//! Starting on an existing root rebuilds the index from the object files.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{client, multipart_etag};
use local_s3::{LocalS3, Options};

#[tokio::test]
async fn restart_on_the_same_root_restores_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let long_key = "k".repeat(1024);
    let first = LocalS3::start(dir.path()).await.unwrap();
    first.create_bucket("alpha").unwrap();
    first.create_bucket("empty").unwrap();
    let c = client(&first);
    c.put_object()
        .bucket("alpha")
        .key("a")
        .body(ByteStream::from_static(b"first"))
        .content_type("text/csv")
        .metadata("m", "v")
        .tagging("t=1")
        .send()
        .await
        .unwrap();
    first.put_object("alpha", "a/b", b"nested").unwrap();
    first.put_object("alpha", &long_key, b"long").unwrap();
    first.put_object("alpha", "overwritten", b"old").unwrap();
    first.put_object("alpha", "overwritten", b"new").unwrap();
    first.put_object("alpha", "deleted", b"gone").unwrap();
    c.delete_object().bucket("alpha").key("deleted").send().await.unwrap();

    let part = vec![7u8; 5 * 1024 * 1024];
    let up = c.create_multipart_upload().bucket("alpha").key("mp").send().await.unwrap();
    let id = up.upload_id().unwrap();
    let mut parts = Vec::new();
    for n in 1..=2 {
        let out = c
            .upload_part()
            .bucket("alpha")
            .key("mp")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
    }
    c.complete_multipart_upload()
        .bucket("alpha")
        .key("mp")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap();
    // An unfinished upload does not survive a restart.
    let pending = c.create_multipart_upload().bucket("alpha").key("pending").send().await.unwrap();

    let keys_before = first.keys("alpha");
    let objects_before: Vec<_> = keys_before.iter().map(|k| first.object("alpha", k).unwrap()).collect();
    first.shutdown().await;

    let second = LocalS3::start_with(Options::new(dir.path())).await.unwrap();
    assert_eq!(second.keys("alpha"), keys_before);
    let mut expected_keys =
        vec!["a".to_owned(), "a/b".to_owned(), long_key.clone(), "mp".to_owned(), "overwritten".to_owned()];
    expected_keys.sort();
    assert_eq!(keys_before, expected_keys);
    for (k, before) in keys_before.iter().zip(&objects_before) {
        assert_eq!(second.object("alpha", k).as_ref(), Some(before), "{k}");
    }
    let a = second.object("alpha", "a").unwrap();
    assert_eq!(a.content_type.as_deref(), Some("text/csv"));
    assert_eq!(a.tags, [("t".to_owned(), "1".to_owned())]);
    assert_eq!(second.object("alpha", "overwritten").unwrap().data.as_ref(), b"new");
    assert_eq!(second.object("alpha", "mp").unwrap().etag, multipart_etag(&[&part, &part]));

    let c = client(&second);
    let buckets = c.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alpha", "empty"]);
    let listed = c.list_objects_v2().bucket("alpha").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(5));
    let err = c
        .upload_part()
        .bucket("alpha")
        .key("pending")
        .upload_id(pending.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::status_and_code(&err).0, Some(404));

    // Writes after the restart supersede the reloaded versions, and survive
    // another restart.
    second.put_object("alpha", "overwritten", b"newest").unwrap();
    drop(second);
    let third = LocalS3::start(dir.path()).await.unwrap();
    assert_eq!(third.object("alpha", "overwritten").unwrap().data.as_ref(), b"newest");
    assert_eq!(third.keys("alpha"), expected_keys);
}

#[tokio::test]
async fn an_unusable_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let root = file.join("root");
    let err = LocalS3::start(&root).await.unwrap_err();
    assert!(err.to_string().contains(&root.display().to_string()), "{err}");
}

#[tokio::test]
async fn uncommitted_bodies_are_discarded_and_damaged_files_reported() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalS3::start(dir.path()).await.unwrap();
    first.create_bucket("bkt").unwrap();
    first.put_object("bkt", "k", b"kept").unwrap();
    first.shutdown().await;

    // A crash mid-write leaves a temp file next to the committed ones.
    let hash_dir = std::fs::read_dir(dir.path().join("bkt")).unwrap().next().unwrap().unwrap().path();
    let leftover = hash_dir.join(".tmp-42");
    std::fs::write(&leftover, b"half a body").unwrap();
    let second = LocalS3::start(dir.path()).await.unwrap();
    assert_eq!(second.keys("bkt"), ["k"]);
    assert!(!leftover.exists());
    second.shutdown().await;

    let damaged = hash_dir.join(format!("{}-1", "0".repeat(64)));
    std::fs::write(&damaged, b"no footer here").unwrap();
    let err = LocalS3::start(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains(&damaged.display().to_string()), "{err}");
}
