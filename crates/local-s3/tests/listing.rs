//! ListObjectsV2 and ListObjects over several pages.

mod common;

use common::{env, status_and_code};

/// 2,700 keys in three top-level "directories" plus a few root keys.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..2700).map(|i| format!("p/{}/{i:05}.csv", i % 3)).collect();
    keys.extend(["a.txt".to_owned(), "p.txt".to_owned(), "q/x".to_owned()]);
    keys.sort();
    keys
}

async fn loaded() -> (common::Env, Vec<String>) {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let keys = keys();
    for k in &keys {
        e.s3.put_object("bkt", k, k.as_bytes()).unwrap();
    }
    (e, keys)
}

#[tokio::test]
async fn v2_pages_through_every_key_with_etags() {
    let (e, keys) = loaded().await;
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let page = e.client.list_objects_v2().bucket("bkt").set_continuation_token(token.clone()).send().await.unwrap();
        pages += 1;
        assert_eq!(page.key_count(), Some(page.contents().len() as i32));
        for o in page.contents() {
            let key = o.key().unwrap();
            let expected = e.s3.object("bkt", key).unwrap();
            assert_eq!(o.e_tag(), Some(expected.etag.as_str()), "{key}");
            assert_eq!(o.size(), Some(key.len() as i64));
            assert!(o.last_modified().is_some());
            assert_eq!(o.storage_class().map(|s| s.as_str()), Some("STANDARD"));
            listed.push(key.to_owned());
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        assert_eq!(page.contents().len(), 1000);
        token = page.next_continuation_token().map(str::to_owned);
        assert!(token.is_some());
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, keys);
}

#[tokio::test]
async fn v2_prefix_delimiter_start_after_and_small_pages() {
    let (e, keys) = loaded().await;

    let out = e.client.list_objects_v2().bucket("bkt").prefix("p/1/").send().await.unwrap();
    let listed: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    let expected: Vec<&str> = keys.iter().filter(|k| k.starts_with("p/1/")).map(String::as_str).collect();
    assert_eq!(listed, expected);
    assert_eq!(listed.len(), 900);

    let out = e.client.list_objects_v2().bucket("bkt").delimiter("/").send().await.unwrap();
    let top: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(top, ["a.txt", "p.txt"]);
    assert_eq!(prefixes, ["p/", "q/"]);
    assert_eq!(out.key_count(), Some(4));

    let out = e.client.list_objects_v2().bucket("bkt").prefix("p/").delimiter("/").send().await.unwrap();
    let prefixes: Vec<&str> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["p/0/", "p/1/", "p/2/"]);
    assert!(out.contents().is_empty());

    let out = e.client.list_objects_v2().bucket("bkt").start_after("p/2/02690.csv").send().await.unwrap();
    let listed: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    let expected: Vec<&str> = keys.iter().filter(|k| k.as_str() > "p/2/02690.csv").map(String::as_str).collect();
    assert_eq!(listed, expected);

    // Two entries per page with a delimiter: prefixes and keys interleave
    // across pages without repeats or gaps.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = e
            .client
            .list_objects_v2()
            .bucket("bkt")
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        seen.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_owned));
        seen.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(str::to_owned));
        token = page.next_continuation_token().map(str::to_owned);
        if page.is_truncated() != Some(true) {
            break;
        }
    }
    assert_eq!(seen, ["a.txt", "p.txt", "p/", "q/"]);

    let err = e.client.list_objects_v2().bucket("bkt").continuation_token("not base64!").send().await.unwrap_err();
    assert_eq!(status_and_code(&err).0, Some(400));
}

#[tokio::test]
async fn v1_pages_with_markers() {
    let (e, keys) = loaded().await;
    let mut listed = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = e.client.list_objects().bucket("bkt").max_keys(700).set_marker(marker.clone()).send().await.unwrap();
        listed.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_owned));
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = page.next_marker().map(str::to_owned).or_else(|| listed.last().cloned());
    }
    assert_eq!(listed, keys);

    let out = e.client.list_objects().bucket("bkt").prefix("p/").delimiter("/").send().await.unwrap();
    let prefixes: Vec<&str> = out.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["p/0/", "p/1/", "p/2/"]);
}
