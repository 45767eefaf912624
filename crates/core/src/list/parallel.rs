//! A listing with many ListObjectsV2 calls in flight over disjoint key
//! ranges, yielding every key once and in key order, with memory bounded
//! whatever the number of keys.
//!
//! Ranges start at the prefix's folders when it has them (`Delimiter=/`,
//! a few levels down: date partitions), else as one range. Each page a
//! range returns is also a sample of how densely keys sit there: while
//! fewer ranges are open than calls may be in flight, or when it is the
//! leftmost range still to list, the rest of it is cut at points that
//! sample predicts to be a few pages apart
//! (`keyspace.rs`), and every part is listed from its own `StartAfter`.
//! Flat sequential keys, UUIDs and date folders all spread this way within
//! a few round trips, with no need to know their shape. A folder's range
//! ends at the next folder, so one page cannot say where its keys stop:
//! there, fewer parts are cut and each first asks for a few keys.
//!
//! Order and memory: ranges are kept in key order and calls go to the
//! leftmost ranges first; keys are handed on only from the leftmost range,
//! so the consumer sees exactly what a serial listing would. Ranges to the
//! right may run ahead only until [`MAX_BUFFERED_KEYS`] are held; the
//! first [`FRONT_RANGES`] are always listed (the leftmost cut into parts),
//! so the listing never falls back to one call at a time.
//!
//! The listing runs on its own task, each call on a task of its own, so
//! pages keep arriving (and parse on every core) while the consumer works;
//! the consumer's pace bounds it through a small channel.

use super::keyspace::{Cuts, Sample};
use super::{From, ListOptions, ObjectSummary, Page, call, decode_listed, fetch_page, list_objects};
use crate::error::ListError;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::EncodingType;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Keys listed but not yet handed on, at most (plus one page per call in
/// flight): about 130 bytes each. Once it is full only the front ranges
/// are listed, and the listing runs at their pace: in the listing bench
/// (1M UUID keys, 20 ms a call) 32,000 took 4.3 s, 64,000 took 3.6-3.9 s.
/// Peak RSS at 1M keys, the median of three runs, is 1.19-1.43x the
/// median at 100k (single runs up to 1.62x: the README's listing table)
/// because large blocks are kept off the heap (the batch-generator's
/// `keep_large_blocks_off_the_heap`); without that, 32,000 keys already
/// made single runs 1.45-1.5x.
const MAX_BUFFERED_KEYS: usize = 64_000;
/// Ranges at the front of the listing listed whatever the buffer holds;
/// the leftmost is cut into parts so that this many calls can work on it.
const FRONT_RANGES: usize = 16;
/// Ranges cut from the open end of the listing are to hold about this many
/// pages: each range's last call returns a partial page (longer ranges
/// waste fewer calls), while parts reach the first calls sooner when short.
const PAGES_PER_RANGE: u128 = 4;
/// S3's page size when MaxKeys is not given.
const S3_PAGE: i32 = 1000;
/// A range's last call asks for this many times the keys expected to be
/// left, plus [`LIMIT_SLACK`].
const LIMIT_MARGIN: f64 = 1.2;
const LIMIT_SLACK: f64 = 16.0;
/// The first call of a part whose keys may not exist (see
/// [`Cuts::guessed`]) asks for this many.
const PROBE_KEYS: i32 = 100;
/// At most this many cuts where they guess how far keys reach: each part
/// past the keys costs a call.
const GUESSED_CUTS: usize = 4;
/// Folder levels looked at before listing starts.
const SEED_DEPTH: usize = 4;
/// Folders to start with, per call in flight. Enough that 360 date folders
/// each start a range of their own (at 4 a call, three days shared a range
/// and cuts predicted from one day's keys missed the next days': 1,543
/// calls and 4.7 s for 1M dated keys, against 1,167 and 2.5 s at 16); few
/// enough that folders smaller than a page waste at most a few hundred calls.
const SEED_RANGES_PER_CALL: usize = 16;
/// A level with more folders than this is not looked into.
const SEED_EXPANSIONS: usize = 256;
/// Chunks of keys waiting for the consumer.
const CHANNEL_CHUNKS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    InFlight,
    Done,
}

/// Keys greater than `after` and at most `upto` (to the end when `None`).
struct Range {
    after: String,
    upto: Option<String>,
    /// Listed and not yet handed on, as the pages came: appended to one
    /// vector, a range's keys were copied as it grew, into blocks larger
    /// than glibc's mmap threshold.
    pages: Vec<Vec<ObjectSummary>>,
    state: State,
    /// The next call's page size, when fewer keys than a page are expected
    /// to be left (see [`page_limit`]).
    max_keys: Option<i32>,
    /// Set when `upto` is a cut that guessed where keys stop (see
    /// [`Cuts::guessed`]): cuts inside such a range guess too.
    guessed_end: bool,
}

struct Shared {
    client: Client,
    bucket: String,
    prefix: String,
    options: ListOptions,
}

/// Every object under `prefix`, in key order, exactly as [`list_objects`]
/// yields them, with up to `parallelism` ListObjectsV2 calls in flight.
/// Must be called inside a Tokio runtime. Dropping the stream stops the
/// listing.
pub fn list_objects_parallel(
    client: &Client,
    bucket: &str,
    prefix: &str,
    options: ListOptions,
    parallelism: usize,
) -> BoxStream<'static, Result<ObjectSummary, ListError>> {
    if parallelism <= 1 {
        return list_objects(client, bucket, prefix, options);
    }
    let shared =
        Arc::new(Shared { client: client.clone(), bucket: bucket.to_owned(), prefix: prefix.to_owned(), options });
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(drive(shared, parallelism, tx));
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) })
        .flat_map(|chunk: Result<Vec<ObjectSummary>, ListError>| match chunk {
            Ok(objects) => stream::iter(objects.into_iter().map(Ok)).left_stream(),
            Err(err) => stream::iter([Err(err)]).right_stream(),
        })
        .boxed()
}

type Chunk = Result<Vec<ObjectSummary>, ListError>;

async fn drive(shared: Arc<Shared>, parallelism: usize, tx: mpsc::Sender<Chunk>) {
    let start_after = shared.options.start_after.clone().unwrap_or_default();
    let folders = match folder_cuts(&shared, parallelism).await {
        Ok(folders) => folders,
        Err(err) => {
            let _ = tx.send(Err(err)).await;
            return;
        }
    };
    // Ranges are keyed by where they start; every later cut lies inside
    // the range it cuts, so the map's key order is the ranges' order.
    let mut bounds: Vec<String> = vec![String::new()];
    bounds.extend(folders.into_iter().filter(|folder| *folder > start_after));
    let mut ends: Vec<Option<String>> = bounds.iter().skip(1).cloned().map(Some).collect();
    ends.push(None);
    let mut ranges: BTreeMap<String, Range> = bounds
        .into_iter()
        .zip(ends)
        .map(|(id, upto)| {
            let after = if id.is_empty() { start_after.clone() } else { id.clone() };
            // Keys before the first folder are only the files beside the
            // folders, often none: its first call asks for a few, not a
            // page of the first folder's keys.
            let max_keys = (id.is_empty() && upto.is_some()).then(|| probe_keys(&shared.options));
            (id, Range { after, upto, pages: Vec::new(), state: State::Idle, max_keys, guessed_end: false })
        })
        .collect();
    // Dropped on every way out, which aborts the calls still in flight.
    let mut in_flight = JoinSet::new();
    let mut buffered = 0usize;
    loop {
        // Hand on what the leftmost ranges hold.
        while let Some(mut front) = ranges.first_entry() {
            let range = front.get_mut();
            for keys in std::mem::take(&mut range.pages) {
                buffered -= keys.len();
                let wanted: Vec<ObjectSummary> = keys.into_iter().filter(|o| shared.options.wanted(&o.key)).collect();
                if !wanted.is_empty() && tx.send(Ok(wanted)).await.is_err() {
                    return; // the consumer is gone
                }
            }
            if front.get().state == State::Done {
                front.remove();
            } else {
                break;
            }
        }
        if ranges.is_empty() {
            return;
        }

        // The first ranges still to list are always listed: the keys held
        // back wait for them. Past those, ranges run ahead only while the
        // buffer has room.
        let mut still_to_list = 0;
        for (id, range) in &mut ranges {
            if in_flight.len() >= parallelism {
                break;
            }
            if range.state == State::Done {
                continue;
            }
            let near_front = still_to_list < FRONT_RANGES;
            still_to_list += 1;
            if range.state == State::Idle && (near_front || buffered < MAX_BUFFERED_KEYS) {
                range.state = State::InFlight;
                let (shared, id, after) = (shared.clone(), id.clone(), range.after.clone());
                let max_keys = range.max_keys.or(shared.options.page_size);
                // Each call on a task of its own: a page of 1,000 keys takes
                // milliseconds of CPU to parse, and on more than one vCPU
                // the pages parse side by side.
                in_flight.spawn(async move {
                    let from = From::After(Some(after.as_str()));
                    let page =
                        fetch_page(&shared.client, &shared.bucket, &shared.prefix, from, max_keys, &shared.options);
                    (id, page.await)
                });
            }
        }

        // The leftmost range is never Done here and is dispatched whenever
        // Idle, so something is always in flight.
        let (id, page) = match in_flight.join_next().await {
            Some(Ok(done)) => done,
            Some(Err(err)) => std::panic::resume_unwind(err.into_panic()),
            None => return,
        };
        match page.and_then(|page| take_page(&shared, &mut ranges, &id, page, parallelism)) {
            Ok(held) => buffered += held,
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
        }
    }
}

/// Folders under the prefix, found with `Delimiter=/` a level at a time
/// until there are enough to keep `parallelism` calls busy, in key order:
/// date-partitioned keys (`csvs/2026/11/30/…`) are cut at their folders
/// before the first key is listed. Only the first page of each folder is
/// read, so a folder of a million flat keys costs one call; keys without
/// folders give none, and the listing cuts them as it goes instead.
async fn folder_cuts(shared: &Shared, parallelism: usize) -> Result<Vec<String>, ListError> {
    let wanted = parallelism.saturating_mul(SEED_RANGES_PER_CALL);
    let mut folders = vec![shared.prefix.clone()];
    for _ in 0..SEED_DEPTH {
        if folders.len() >= wanted || folders.len() > SEED_EXPANSIONS {
            break;
        }
        let expanded: Vec<Vec<String>> = stream::iter(folders.iter().cloned())
            .map(|folder| async move { subfolders(shared, &folder).await.map(|found| (folder, found)) })
            .buffered(parallelism)
            .map_ok(|(folder, found)| if found.is_empty() { vec![folder] } else { found })
            .try_collect()
            .await?;
        let next: Vec<String> = expanded.into_iter().flatten().collect();
        if next == folders {
            break;
        }
        folders = next;
    }
    // The prefix itself bounds nothing.
    folders.retain(|folder| *folder != shared.prefix);
    // Many folders smaller than a page would each cost a call of their
    // own; every few are joined into one range instead.
    let every = folders.len().div_ceil(wanted.max(1)).max(1);
    Ok(folders.into_iter().step_by(every).collect())
}

/// The first page of folders directly under `folder`.
async fn subfolders(shared: &Shared, folder: &str) -> Result<Vec<String>, ListError> {
    let page =
        call(&shared.client, &shared.bucket, folder, &shared.options, None, |request| request.delimiter("/")).await?;
    let encoded = page.encoding_type() == Some(&EncodingType::Url);
    page.common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .map(|raw| decode_listed(&shared.bucket, folder, raw.to_owned(), encoded))
        .collect()
}

/// Files a page under its range, cuts the rest of the range when more
/// calls could be in flight, and returns how many keys it now holds.
fn take_page(
    shared: &Shared,
    ranges: &mut BTreeMap<String, Range>,
    id: &str,
    page: Page,
    parallelism: usize,
) -> Result<usize, ListError> {
    let open = ranges.values().filter(|r| r.state != State::Done).count();
    // The leftmost range still to list holds back every key after it, so
    // it is cut even when enough ranges are open: otherwise, once ranges
    // to its right fill the buffer, it would be listed a page at a time.
    let front = ranges.range::<str, _>((Bound::Unbounded, Bound::Excluded(id))).all(|(_, r)| r.state == State::Done);
    let Some(range) = ranges.get_mut(id) else { return Ok(0) };
    let Page { mut objects, next_token } = page;
    let more = next_token.is_some();
    let Some(last) = objects.last().map(|o| o.key.clone()) else {
        if more {
            return Err(ListError::EmptyTruncatedPage {
                bucket: shared.bucket.clone(),
                prefix: shared.prefix.clone(),
                after: range.after.clone(),
            });
        }
        range.state = State::Done;
        return Ok(0);
    };
    let upto = range.upto.as_deref();
    let past_end = upto.is_some_and(|upto| last.as_str() > upto);
    let mut overflow = objects.split_off(objects.partition_point(|o| upto.is_none_or(|upto| o.key.as_str() <= upto)));
    let mut held = objects.len();
    if !objects.is_empty() {
        range.pages.push(objects);
    }
    if past_end || !more {
        range.state = State::Done;
    } else {
        range.after = last.clone();
        range.state = State::Idle;
        let wanted = if open < parallelism {
            parallelism - open
        } else if front {
            FRONT_RANGES
        } else {
            0
        };
        // This page's keys (the range goes on past them: not past_end) say
        // where to cut and how many keys a bounded range has left; an open
        // range with nothing to cut needs neither.
        let sample = if wanted > 0 || range.upto.is_some() {
            range.pages.last().and_then(|page| Sample::of(page.iter().map(|o| o.key.as_str())))
        } else {
            None
        };
        let limit =
            |after: &str, upto: Option<&str>| page_limit(sample.as_ref(), after, upto, shared.options.page_size);
        let cut = |count: usize| match &sample {
            Some(sample) if count > 0 => sample.cut_points(range.upto.as_deref(), PAGES_PER_RANGE, count),
            _ => Cuts { points: Vec::new(), guessed: false },
        };
        let mut cuts = cut(wanted);
        let guessed = cuts.guessed || range.guessed_end;
        if guessed && cuts.points.len() > GUESSED_CUTS {
            cuts = cut(GUESSED_CUTS);
        }
        let cuts = cuts.points;
        let mut parts = Vec::with_capacity(cuts.len());
        if let Some(first_cut) = cuts.first() {
            range.guessed_end = guessed;
            let end = range.upto.replace(first_cut.clone());
            let mut ends: Vec<Option<String>> = cuts.iter().skip(1).cloned().map(Some).collect();
            ends.push(end);
            // A part can hold fewer keys than the cuts meant (the cuts'
            // line and the estimate's differ in their "ends here" digits
            // and the bounds' characters), and a full first page from it
            // was mostly the next part's keys: its first call asks for the
            // keys expected. Where the cuts guessed how far keys reach, it
            // asks for a few: a part with none then costs a few of the next
            // parts' keys, not a page, and one with keys asks for pages
            // from its second call on.
            for (start, upto) in cuts.into_iter().zip(ends) {
                let max_keys = limit(&start, upto.as_deref());
                let probe = probe_keys(&shared.options);
                let max_keys = if guessed { Some(max_keys.map_or(probe, |n| n.min(probe))) } else { max_keys };
                let state = State::Idle;
                parts.push(Range { after: start, upto, pages: Vec::new(), state, max_keys, guessed_end: guessed });
            }
        }
        range.max_keys = limit(&range.after, range.upto.as_deref());
        for part in parts {
            ranges.insert(part.after.clone(), part);
        }
    }
    // A page that ran past its range's end holds every key from there to
    // its last: the first keys of the ranges that follow. Those not asking
    // yet take them and need not ask again (folders smaller than a page
    // cost no extra call); a range whose call is in flight gets them from
    // that call, and a finished one has them.
    for (_, later) in ranges.range_mut::<str, _>((Bound::Excluded(id), Bound::Unbounded)) {
        if overflow.is_empty() {
            break;
        }
        let mine = overflow.partition_point(|o| later.upto.as_deref().is_none_or(|upto| o.key.as_str() <= upto));
        let rest = overflow.split_off(mine);
        if later.state == State::Idle {
            overflow.retain(|o| o.key > later.after);
            if let Some(o) = overflow.last() {
                later.after = o.key.clone();
            }
            held += overflow.len();
            if !overflow.is_empty() {
                later.pages.push(std::mem::take(&mut overflow));
            }
            if !rest.is_empty() {
                later.state = State::Done;
            }
        }
        overflow = rest;
    }
    if !more {
        // Nothing exists after this page's last key: every range to the
        // right that has not asked yet was handed its keys above.
        for (_, later) in ranges.range_mut::<str, _>((Bound::Excluded(id), Bound::Unbounded)) {
            if later.state == State::Idle {
                later.state = State::Done;
            }
        }
    }
    Ok(held)
}

/// The page size of a call to a range that may hold no keys.
fn probe_keys(options: &ListOptions) -> i32 {
    PROBE_KEYS.min(options.page_size.unwrap_or(S3_PAGE))
}

/// The page size for a range's next call when the keys left in it, at
/// the density of the page just listed (`sample`), are fewer than a page:
/// S3 cannot stop a page at the range's end, and a full page from a
/// range's last call was mostly the next range's keys, sent and parsed
/// twice: in the listing bench, local-s3 sent 1.31-1.36M objects for 1M
/// sequential keys and 1.18-1.20M for 1M UUIDs; with this, 1.14-1.15M
/// and 1.10M. The margin covers the estimate's noise; falling short costs one
/// more call, never a key.
fn page_limit(sample: Option<&Sample>, after: &str, upto: Option<&str>, page_size: Option<i32>) -> Option<i32> {
    let page = f64::from(page_size.unwrap_or(S3_PAGE));
    let expected = sample?.keys_between(after, upto?)?;
    let limit = (expected * LIMIT_MARGIN + LIMIT_SLACK).ceil();
    // `limit < page` is false for a NaN or a huge estimate (no limit), so
    // the cast below never saturates.
    (limit < page).then_some(limit as i32).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_limit_only_where_fewer_keys_than_a_page_are_left() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("csvs/f{i:07}.csv")).collect();
        let sample = Sample::of(keys[..1000].iter().map(String::as_str));
        let density = sample.as_ref();
        let limit = page_limit(density, &keys[999], Some(&keys[1_299]), None).expect("a limit");
        assert!((300..=400).contains(&limit), "{limit}");
        assert_eq!(page_limit(density, &keys[999], Some(&keys[5_000]), None), None);
        assert_eq!(page_limit(density, &keys[999], None, None), None);
        // Never above the listing's own page size.
        assert_eq!(page_limit(density, &keys[999], Some(&keys[1_299]), Some(100)), None);
        let small = page_limit(density, &keys[999], Some(&keys[1_049]), Some(100)).expect("a limit");
        assert!((50..100).contains(&small), "{small}");
    }
}
