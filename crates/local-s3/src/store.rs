//! The storage engine: an in-memory index per bucket over immutable files.
//!
//! Layout under the root directory:
//!
//! ```text
//! ROOT/<bucket>/<hh>/<sha256(key)>-<generation>   one file per stored version
//! ROOT/<bucket>/<hh>/.tmp-<id>                     a body being received
//! ROOT/.uploads/<upload-id>/part-<n>-<generation>  multipart parts
//! ```
//!
//! File names never contain the key's text, so any key S3 accepts (1,024
//! bytes, `a` beside `a/b`, any Unicode) can be stored. Each object file holds
//! the body followed by a JSON footer with the key and its metadata, then the
//! footer's length and a magic number; the index is rebuilt from those
//! footers at startup. A committed file is never modified: a write goes to a
//! temp file beside its final name, which is renamed into place while the
//! bucket's index lock is held; that is what makes conditional writes
//! atomic. (Same-directory renames also avoid the file-system-wide lock
//! Linux takes for renames across directories.) The replaced file is
//! unlinked after the lock is released; a reader that already opened it keeps
//! reading the old version, as POSIX allows.
//!
//! Nothing is fsynced: this store serves tests, not durability.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

const FOOTER_MAGIC: &[u8; 8] = b"LS3META1";
/// Footer trailer: u32 little-endian JSON length, then the magic.
const TRAILER_LEN: u64 = 12;
/// Bodies are buffered in memory up to this size before being written out,
/// so a small PUT costs a single trip to the blocking pool.
const FLUSH_THRESHOLD: usize = 1 << 20;
const TMP_PREFIX: &str = ".tmp-";
const UPLOADS_DIR: &str = ".uploads";

pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave the index half-updated
    // (every update is a single map operation), so poisoning is ignored.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The user-controlled attributes of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectAttrs {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<(String, String)>,
}

/// One stored object version as the index knows it.
#[derive(Debug)]
pub(crate) struct ObjectMeta {
    pub size: u64,
    /// Unquoted: a hex MD5, or `<hex>-<parts>` for multipart objects.
    pub etag: String,
    pub last_modified: SystemTime,
    pub attrs: ObjectAttrs,
    /// Distinguishes versions of one key; also names the data file.
    pub generation: u64,
}

#[derive(Serialize, Deserialize)]
struct Footer {
    key: String,
    etag: String,
    mtime_secs: u64,
    mtime_nanos: u32,
    #[serde(flatten)]
    attrs: ObjectAttrs,
}

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EtagMatch {
    Any,
    Etag(String),
}

impl EtagMatch {
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            EtagMatch::Any => true,
            EtagMatch::Etag(e) => e == etag,
        }
    }
}

/// Conditions checked under the index lock when a write or delete commits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Precondition {
    pub if_match: Option<EtagMatch>,
    pub if_none_match: Option<EtagMatch>,
    /// Internal: the write only applies to this exact version (used for
    /// read-modify-write updates such as tagging).
    pub generation: Option<u64>,
    pub if_match_size: Option<u64>,
    pub if_match_last_modified: Option<SystemTime>,
}

impl Precondition {
    fn check(&self, current: Option<&ObjectMeta>, bucket: &str, key: &str) -> Result<()> {
        let failed = || Error::PreconditionFailed { bucket: bucket.to_owned(), key: key.to_owned() };
        let needs_existing =
            self.if_match.is_some() || self.if_match_size.is_some() || self.if_match_last_modified.is_some();
        match current {
            None if needs_existing => Err(Error::NoSuchKey { bucket: bucket.to_owned(), key: key.to_owned() }),
            None if self.generation.is_some() => Err(failed()),
            None => Ok(()),
            Some(cur)
                if self.if_match.as_ref().is_some_and(|m| !m.matches(&cur.etag))
                    || self.if_none_match.as_ref().is_some_and(|m| m.matches(&cur.etag))
                    || self.generation.is_some_and(|g| g != cur.generation)
                    || self.if_match_size.is_some_and(|s| s != cur.size)
                    || self.if_match_last_modified.is_some_and(|t| !same_second(t, cur.last_modified)) =>
            {
                Err(failed())
            }
            Some(_) => Ok(()),
        }
    }
}

/// HTTP dates carry whole seconds, so time conditions compare at that precision.
fn same_second(a: SystemTime, b: SystemTime) -> bool {
    unix_secs(a) == unix_secs(b)
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct BucketState {
    /// Set under the lock when the bucket is deleted, so a write that looked
    /// the bucket up just before cannot commit into a removed directory.
    deleted: bool,
    objects: BTreeMap<String, Arc<ObjectMeta>>,
}

pub(crate) struct Bucket {
    pub name: String,
    pub created: SystemTime,
    dir: PathBuf,
    state: RwLock<BucketState>,
}

impl Bucket {
    fn object_path(&self, key: &str, generation: u64) -> PathBuf {
        object_path(&self.dir, key, generation)
    }
}

fn object_path(bucket_dir: &Path, key: &str, generation: u64) -> PathBuf {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    let mut path = bucket_dir.join(&hash[..2]);
    path.push(format!("{hash}-{generation}"));
    path
}

/// A part of a multipart upload.
#[derive(Debug, Clone)]
pub(crate) struct PartMeta {
    pub size: u64,
    /// Unquoted hex MD5 of the part.
    pub etag: String,
    md5: [u8; 16],
    pub last_modified: SystemTime,
    path: PathBuf,
}

pub(crate) struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub attrs: ObjectAttrs,
    dir: PathBuf,
    parts: Mutex<BTreeMap<i32, PartMeta>>,
}

/// A body being received: buffered in memory, spilled to a temp file once
/// large, hashed as it arrives. Dropping it without committing removes the
/// temp file.
pub(crate) struct Staging {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    md5: Md5,
    size: u64,
    /// Set when the ETag is known without hashing (copies of single-part objects).
    etag: Option<String>,
    committed: bool,
    /// For parts: the upload whose directory must not be re-created if it
    /// was removed by an abort meanwhile.
    upload_id: Option<String>,
}

impl Staging {
    pub fn push(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.buf.extend_from_slice(data);
        self.size += data.len() as u64;
    }

    /// Still entirely in memory and small enough that committing it is a
    /// few cheap syscalls.
    pub fn is_small(&self) -> bool {
        self.file.is_none() && self.buf.len() <= 64 * 1024
    }

    pub fn wants_flush(&self) -> bool {
        self.buf.len() >= FLUSH_THRESHOLD
    }

    fn file(&mut self) -> Result<&mut File> {
        match &mut self.file {
            Some(f) => Ok(f),
            slot => {
                let open = || File::options().write(true).create_new(true).open(&self.path);
                let file = match open() {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if let Some(upload_id) = &self.upload_id {
                            return Err(Error::NoSuchUpload { upload_id: upload_id.clone() });
                        }
                        // Hash directories are created on first use; only that
                        // level, so a concurrently deleted bucket stays deleted.
                        if let Some(parent) = self.path.parent() {
                            match fs::create_dir(parent) {
                                Ok(()) => {}
                                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                                Err(e) => return Err(Error::io(parent, e)),
                            }
                        }
                        open().map_err(|e| Error::io(&self.path, e))?
                    }
                    Err(e) => return Err(Error::io(&self.path, e)),
                };
                Ok(slot.insert(file))
            }
        }
    }

    /// Writes the buffered bytes to the temp file. Blocking.
    pub fn flush(&mut self) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let path = self.path.clone();
        self.file()?.write_all(&buf).map_err(|e| Error::io(path, e))?;
        // Keep the allocation for the next chunk.
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    /// Appends `len` bytes of `src` from its current position. Hashes them
    /// unless the ETag is already known, in which case the kernel copies.
    fn copy_from(&mut self, src: &mut File, src_path: &Path, len: u64, hash: bool) -> Result<()> {
        self.flush()?;
        let dst_path = self.path.clone();
        if hash {
            let mut chunk = vec![0u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
                let n = src.read(&mut chunk[..want]).map_err(|e| Error::io(src_path, e))?;
                if n == 0 {
                    return Err(Error::Corrupt {
                        path: src_path.to_owned(),
                        reason: "file shorter than its index entry".into(),
                    });
                }
                self.md5.update(&chunk[..n]);
                self.file()?.write_all(&chunk[..n]).map_err(|e| Error::io(&dst_path, e))?;
                left -= n as u64;
            }
        } else {
            let dst = self.file()?;
            let copied = io::copy(&mut Read::by_ref(src).take(len), dst).map_err(|e| Error::io(&dst_path, e))?;
            if copied != len {
                return Err(Error::Corrupt {
                    path: src_path.to_owned(),
                    reason: "file shorter than its index entry".into(),
                });
            }
        }
        self.size += len;
        Ok(())
    }

    fn digest(&mut self) -> [u8; 16] {
        std::mem::take(&mut self.md5).finalize().into()
    }

    /// Content-MD5 check for PUT/UploadPart; consumes the running hash, so
    /// the ETag is fixed from here on.
    pub fn md5_hex(&mut self) -> String {
        if let Some(e) = &self.etag {
            return e.clone();
        }
        let e = hex::encode(self.digest());
        self.etag = Some(e.clone());
        e
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed && self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What a listing asks for; `after` is the exclusive start (start-after,
/// marker or decoded continuation token).
pub(crate) struct ListParams<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub after: Option<&'a str>,
    pub max_keys: usize,
}

/// What a listing shows of one object, copied out under the bucket's
/// lock: a page of plain values costs no reference counting to build or
/// to drop (the listing bench's server spent 5% of its CPU dropping a
/// page of `Arc<ObjectMeta>`s).
pub(crate) struct ListedMeta {
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
}

#[derive(Default)]
pub(crate) struct ListPage {
    pub objects: Vec<(String, ListedMeta)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned; where the next page starts.
    pub last: Option<String>,
}

pub(crate) struct Store {
    root: PathBuf,
    uploads_dir: PathBuf,
    buckets: RwLock<BTreeMap<String, Arc<Bucket>>>,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
    next_id: AtomicU64,
    min_part_size: u64,
    /// Objects returned by listings, for [`crate::LocalS3::objects_listed`].
    listed: AtomicU64,
}

impl Store {
    /// Opens (creating if needed) a root directory and rebuilds the index
    /// from the object files in it. Temp files and unfinished multipart
    /// uploads of a previous run are discarded.
    pub fn open(root: &Path, min_part_size: u64) -> Result<Store> {
        let root_err = |source| Error::Root { path: root.to_owned(), source };
        fs::create_dir_all(root).map_err(root_err)?;
        let uploads_dir = root.join(UPLOADS_DIR);
        match fs::remove_dir_all(&uploads_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&uploads_dir, e)),
        }
        fs::create_dir(&uploads_dir).map_err(|e| Error::io(&uploads_dir, e))?;

        let mut buckets = BTreeMap::new();
        let mut max_generation = 0;
        for entry in fs::read_dir(root).map_err(root_err)? {
            let entry = entry.map_err(root_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !entry.file_type().map_err(root_err)?.is_dir() {
                continue;
            }
            let (bucket, max_gen) = load_bucket(name, &entry.path())?;
            max_generation = max_generation.max(max_gen);
            buckets.insert(name.to_owned(), Arc::new(bucket));
        }

        // Ids only need to be unique within the root; starting from the clock
        // as well keeps them growing across restarts even if files vanish.
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2));
        Ok(Store {
            root: root.to_owned(),
            uploads_dir,
            buckets: RwLock::new(buckets),
            uploads: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(clock.max(max_generation + 1)),
            min_part_size,
            listed: AtomicU64::new(0),
        })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn bucket(&self, name: &str) -> Result<Arc<Bucket>> {
        read_lock(&self.buckets).get(name).cloned().ok_or_else(|| Error::NoSuchBucket { bucket: name.to_owned() })
    }

    pub fn create_bucket(&self, name: &str) -> Result<()> {
        if !s3s::path::check_bucket_name(name) {
            return Err(Error::InvalidBucketName { bucket: name.to_owned() });
        }
        let mut buckets = write_lock(&self.buckets);
        if buckets.contains_key(name) {
            return Err(Error::BucketAlreadyOwnedByYou { bucket: name.to_owned() });
        }
        let dir = self.root.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // Left over from a bucket whose directory could not be removed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
        buckets.insert(
            name.to_owned(),
            Arc::new(Bucket {
                name: name.to_owned(),
                created: SystemTime::now(),
                dir,
                state: RwLock::new(BucketState { deleted: false, objects: BTreeMap::new() }),
            }),
        );
        Ok(())
    }

    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        let mut buckets = write_lock(&self.buckets);
        let bucket = buckets.get(name).cloned().ok_or_else(|| Error::NoSuchBucket { bucket: name.to_owned() })?;
        {
            let mut state = write_lock(&bucket.state);
            if !state.objects.is_empty() {
                return Err(Error::BucketNotEmpty { bucket: name.to_owned() });
            }
            state.deleted = true;
        }
        buckets.remove(name);
        drop(buckets);
        fs::remove_dir_all(&bucket.dir).map_err(|e| Error::io(&bucket.dir, e))
    }

    pub fn list_buckets(&self) -> Vec<(String, SystemTime)> {
        read_lock(&self.buckets).values().map(|b| (b.name.clone(), b.created)).collect()
    }

    fn staging_at(&self, dir: &Path, upload_id: Option<String>) -> Staging {
        Staging {
            path: dir.join(format!("{TMP_PREFIX}{}", self.next_id())),
            file: None,
            buf: Vec::new(),
            md5: Md5::new(),
            size: 0,
            etag: None,
            committed: false,
            upload_id,
        }
    }

    /// A staging file for a new version of `key`, beside its final name.
    pub fn staging(&self, bucket: &str, key: &str) -> Result<Staging> {
        let b = self.bucket(bucket)?;
        let final_path = b.object_path(key, 0);
        let dir = final_path.parent().unwrap_or(&b.dir);
        Ok(self.staging_at(dir, None))
    }

    /// A staging file for a part of `upload`.
    pub fn part_staging(&self, upload: &Upload) -> Staging {
        self.staging_at(&upload.dir, Some(upload.id.clone()))
    }

    /// Makes a staged body the current version of `key`, if `cond` holds.
    /// `last_modified` is kept for metadata-only rewrites. Blocking.
    pub fn commit(
        &self,
        bucket: &str,
        key: &str,
        mut staging: Staging,
        attrs: ObjectAttrs,
        cond: &Precondition,
        last_modified: Option<SystemTime>,
    ) -> Result<Arc<ObjectMeta>> {
        let bucket_ref = self.bucket(bucket)?;
        let etag = staging.md5_hex();
        let last_modified = last_modified.unwrap_or_else(SystemTime::now);
        let since_epoch = last_modified.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let footer = Footer {
            key: key.to_owned(),
            etag: etag.clone(),
            mtime_secs: since_epoch.as_secs(),
            mtime_nanos: since_epoch.subsec_nanos(),
            attrs,
        };
        let mut tail = serde_json::to_vec(&footer).map_err(|e| Error::Corrupt {
            path: staging.path.clone(),
            reason: format!("cannot encode metadata: {e}"),
        })?;
        let json_len =
            u32::try_from(tail.len()).map_err(|_| Error::InvalidArgument("object metadata is too large".into()))?;
        tail.extend_from_slice(&json_len.to_le_bytes());
        tail.extend_from_slice(FOOTER_MAGIC);
        staging.buf.extend_from_slice(&tail);
        staging.flush()?;
        // Close before renaming so no descriptor to the temp name lingers.
        staging.file = None;
        staging.committed = true;

        let generation = self.next_id();
        let final_path = bucket_ref.object_path(key, generation);
        let meta = Arc::new(ObjectMeta { size: staging.size, etag, last_modified, attrs: footer.attrs, generation });

        let outcome = (|| {
            let mut state = write_lock(&bucket_ref.state);
            if state.deleted {
                return Err(Error::NoSuchBucket { bucket: bucket.to_owned() });
            }
            cond.check(state.objects.get(key).map(|m| &**m), bucket, key)?;
            fs::rename(&staging.path, &final_path).map_err(|e| Error::io(&final_path, e))?;
            Ok(state.objects.insert(key.to_owned(), Arc::clone(&meta)))
        })();
        match outcome {
            Ok(old) => {
                if let Some(old) = old {
                    let old_path = bucket_ref.object_path(key, old.generation);
                    if let Err(e) = fs::remove_file(&old_path) {
                        tracing::warn!(path = %old_path.display(), error = %e, "cannot remove replaced object file");
                    }
                }
                Ok(meta)
            }
            Err(e) => {
                let _ = fs::remove_file(&staging.path);
                Err(e)
            }
        }
    }

    pub fn stat(&self, bucket: &str, key: &str) -> Result<Arc<ObjectMeta>> {
        let b = self.bucket(bucket)?;
        let state = read_lock(&b.state);
        state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NoSuchKey { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// Looks up and opens the current version of an object. The file is
    /// opened under the index lock, so it cannot have been unlinked by a
    /// concurrent overwrite in between.
    pub fn open_object(&self, bucket: &str, key: &str) -> Result<(Arc<ObjectMeta>, File, PathBuf)> {
        let b = self.bucket(bucket)?;
        let state = read_lock(&b.state);
        let meta = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NoSuchKey { bucket: bucket.to_owned(), key: key.to_owned() })?;
        let path = b.object_path(key, meta.generation);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        Ok((meta, file, path))
    }

    /// Reads a byte range of an open object file. Blocking.
    pub fn read_range(file: &mut File, path: &Path, start: u64, len: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| Error::InvalidArgument("range too large".into()))?;
        let mut data = vec![0u8; len];
        file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut data).map_err(|e| Error::io(path, e))?;
        Ok(data)
    }

    /// Copies `[offset, offset+len)` of an open object into `staging`;
    /// `etag` is passed when the copy is the whole single-part object, whose
    /// ETag is then unchanged. Blocking.
    pub fn stage_copy(
        mut staging: Staging,
        src: &mut File,
        src_path: &Path,
        offset: u64,
        len: u64,
        etag: Option<String>,
    ) -> Result<Staging> {
        src.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(src_path, e))?;
        let hash = etag.is_none();
        staging.copy_from(src, src_path, len, hash)?;
        staging.etag = etag;
        Ok(staging)
    }

    /// Deletes `key` if `cond` holds; returns whether it existed. Blocking.
    pub fn delete(&self, bucket: &str, key: &str, cond: &Precondition) -> Result<bool> {
        let mut results = self.delete_many(bucket, vec![(key.to_owned(), cond.clone())])?;
        results.pop().unwrap_or(Ok(false))
    }

    /// Deletes many keys under one lock acquisition; per-key results.
    pub fn delete_many(&self, bucket: &str, items: Vec<(String, Precondition)>) -> Result<Vec<Result<bool>>> {
        let b = self.bucket(bucket)?;
        let mut results = Vec::with_capacity(items.len());
        let mut removed = Vec::new();
        {
            let mut state = write_lock(&b.state);
            if state.deleted {
                return Err(Error::NoSuchBucket { bucket: bucket.to_owned() });
            }
            for (key, cond) in items {
                let current = state.objects.get(&key).map(|m| &**m);
                if let Err(e) = cond.check(current, bucket, &key) {
                    results.push(Err(e));
                    continue;
                }
                match state.objects.remove(&key) {
                    Some(old) => {
                        removed.push(b.object_path(&key, old.generation));
                        results.push(Ok(true));
                    }
                    None => results.push(Ok(false)),
                }
            }
        }
        for path in removed {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove deleted object file");
            }
        }
        Ok(results)
    }

    /// Rewrites an object's attributes without changing its body, ETag or
    /// Last-Modified (as tagging updates do on S3). Blocking.
    pub fn update_attrs(&self, bucket: &str, key: &str, update: impl Fn(&mut ObjectAttrs)) -> Result<Arc<ObjectMeta>> {
        loop {
            let (meta, mut file, path) = self.open_object(bucket, key)?;
            let staging = self.staging(bucket, key)?;
            let staging = Self::stage_copy(staging, &mut file, &path, 0, meta.size, Some(meta.etag.clone()))?;
            let mut attrs = meta.attrs.clone();
            update(&mut attrs);
            let cond = Precondition { generation: Some(meta.generation), ..Precondition::default() };
            match self.commit(bucket, key, staging, attrs, &cond, Some(meta.last_modified)) {
                // Overwritten meanwhile: apply the update to the new version.
                Err(Error::PreconditionFailed { .. }) => continue,
                other => return other,
            }
        }
    }

    pub fn list(&self, bucket: &str, params: &ListParams<'_>) -> Result<ListPage> {
        let b = self.bucket(bucket)?;
        let state = read_lock(&b.state);
        let page = list_page(&state.objects, params);
        self.listed.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
        Ok(page)
    }

    pub fn objects_listed(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }

    pub fn reset_objects_listed(&self) {
        self.listed.store(0, Ordering::Relaxed);
    }

    pub fn keys(&self, bucket: &str) -> Result<Vec<String>> {
        let b = self.bucket(bucket)?;
        let state = read_lock(&b.state);
        Ok(state.objects.keys().cloned().collect())
    }

    pub fn create_upload(&self, bucket: &str, key: &str, attrs: ObjectAttrs) -> Result<Arc<Upload>> {
        self.bucket(bucket)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let dir = self.uploads_dir.join(&id);
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let upload = Arc::new(Upload {
            id: id.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            attrs,
            dir,
            parts: Mutex::new(BTreeMap::new()),
        });
        lock(&self.uploads).insert(id, Arc::clone(&upload));
        Ok(upload)
    }

    pub fn upload(&self, upload_id: &str, bucket: &str, key: &str) -> Result<Arc<Upload>> {
        lock(&self.uploads)
            .get(upload_id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .cloned()
            .ok_or_else(|| Error::NoSuchUpload { upload_id: upload_id.to_owned() })
    }

    /// Stores a part, replacing any earlier part with the same number. Blocking.
    pub fn put_part(&self, upload: &Upload, part_number: i32, mut staging: Staging) -> Result<PartMeta> {
        let etag = staging.md5_hex();
        let mut md5 = [0u8; 16];
        hex::decode_to_slice(&etag, &mut md5).map_err(|_| Error::Task("part hash is not hex".into()))?;
        // Parts get no footer; an empty part still needs its file.
        staging.flush()?;
        staging.file = None;
        let path = upload.dir.join(format!("part-{part_number}-{}", self.next_id()));
        if let Err(e) = fs::rename(&staging.path, &path) {
            return Err(if e.kind() == io::ErrorKind::NotFound {
                // Aborted or completed while this part was arriving.
                Error::NoSuchUpload { upload_id: upload.id.clone() }
            } else {
                Error::io(&path, e)
            });
        }
        staging.committed = true;
        let part = PartMeta { size: staging.size, etag, md5, last_modified: SystemTime::now(), path };
        if let Some(old) = lock(&upload.parts).insert(part_number, part.clone()) {
            let _ = fs::remove_file(old.path);
        }
        Ok(part)
    }

    pub fn list_parts(&self, upload: &Upload) -> Vec<(i32, PartMeta)> {
        lock(&upload.parts).iter().map(|(n, p)| (*n, p.clone())).collect()
    }

    /// Concatenates the listed parts into the object. Blocking.
    pub fn complete_upload(
        &self,
        upload: &Upload,
        listed: &[(i32, String)],
        cond: &Precondition,
    ) -> Result<Arc<ObjectMeta>> {
        let invalid = |reason: String| Error::InvalidPart { upload_id: upload.id.clone(), reason };
        if listed.is_empty() {
            return Err(Error::InvalidRequest("You must specify at least one part".into()));
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Error::InvalidPartOrder { upload_id: upload.id.clone() });
        }
        let parts: Vec<(i32, PartMeta)> = {
            let stored = lock(&upload.parts);
            listed
                .iter()
                .map(|(n, etag)| match stored.get(n) {
                    Some(p) if p.etag == *etag => Ok((*n, p.clone())),
                    Some(_) => Err(invalid(format!("ETag of part {n} does not match"))),
                    None => Err(invalid(format!("part {n} was not uploaded"))),
                })
                .collect::<Result<_>>()?
        };
        for (n, p) in &parts[..parts.len() - 1] {
            if p.size < self.min_part_size {
                return Err(Error::EntityTooSmall {
                    upload_id: upload.id.clone(),
                    part_number: *n,
                    size: p.size,
                    min: self.min_part_size,
                });
            }
        }

        let mut staging = self.staging(&upload.bucket, &upload.key)?;
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        for (_, p) in &parts {
            let mut f = File::open(&p.path).map_err(|e| Error::io(&p.path, e))?;
            staging.copy_from(&mut f, &p.path, p.size, false)?;
            md5s.extend_from_slice(&p.md5);
        }
        staging.etag = Some(format!("{}-{}", hex::encode(Md5::digest(&md5s)), parts.len()));
        let meta = self.commit(&upload.bucket, &upload.key, staging, upload.attrs.clone(), cond, None)?;
        self.discard_upload(&upload.id);
        Ok(meta)
    }

    pub fn abort_upload(&self, upload: &Upload) {
        self.discard_upload(&upload.id);
    }

    fn discard_upload(&self, upload_id: &str) {
        if let Some(upload) = lock(&self.uploads).remove(upload_id)
            && let Err(e) = fs::remove_dir_all(&upload.dir)
        {
            tracing::warn!(dir = %upload.dir.display(), error = %e, "cannot remove upload directory");
        }
    }
}

/// The smallest string greater than every string starting with `prefix`,
/// used to jump over a rolled-up common prefix in O(log n).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut s = prefix.to_owned();
    while let Some(c) = s.pop() {
        let mut next = u32::from(c) + 1;
        if next == 0xD800 {
            next = 0xE000;
        }
        if let Some(n) = char::from_u32(next) {
            s.push(n);
            return Some(s);
        }
    }
    None
}

fn list_page(objects: &BTreeMap<String, Arc<ObjectMeta>>, params: &ListParams<'_>) -> ListPage {
    let mut page = ListPage::default();
    if params.max_keys == 0 {
        return page;
    }
    let prefix = params.prefix;
    let delimiter = params.delimiter.filter(|d| !d.is_empty());
    let after = params.after;
    let mut lower: Bound<String> = match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
        _ => Bound::Included(prefix.to_owned()),
    };
    // Only needed when a common prefix has no successor string.
    let mut skip_under: Option<String> = None;
    // Borrowed until the page is done: one copy of the last name, not one
    // per key.
    let mut last: Option<&str> = None;
    let mut count = 0;
    'pages: loop {
        let mut jump = None;
        let range = objects.range::<str, _>((lower.as_ref().map(String::as_str), Bound::Unbounded));
        for (key, meta) in range {
            // Keys sharing a prefix are contiguous, so the first key past
            // the prefix ends the listing.
            if !key.starts_with(prefix) {
                break 'pages;
            }
            if let Some(s) = &skip_under {
                if key.starts_with(s.as_str()) {
                    continue;
                }
                skip_under = None;
            }
            if let Some(d) = delimiter
                && let Some(i) = key[prefix.len()..].find(d)
            {
                let cp = &key[..prefix.len() + i + d.len()];
                // A common prefix at or before the start point was returned by
                // an earlier page (S3 semantics for marker/continuation).
                if after.is_none_or(|a| cp > a) {
                    if count == params.max_keys {
                        page.truncated = true;
                        break 'pages;
                    }
                    page.prefixes.push(cp.to_owned());
                    last = Some(cp);
                    count += 1;
                }
                match prefix_successor(cp) {
                    Some(next) => {
                        jump = Some(next);
                        break;
                    }
                    None => {
                        skip_under = Some(cp.to_owned());
                        continue;
                    }
                }
            }
            if count == params.max_keys {
                page.truncated = true;
                break 'pages;
            }
            let listed = ListedMeta { size: meta.size, etag: meta.etag.clone(), last_modified: meta.last_modified };
            page.objects.push((key.clone(), listed));
            last = Some(key);
            count += 1;
        }
        match jump {
            Some(next) => lower = Bound::Included(next),
            None => break,
        }
    }
    page.last = last.map(str::to_owned);
    page
}

/// Rebuilds one bucket's index from its object files; returns the highest
/// generation seen.
fn load_bucket(name: &str, dir: &Path) -> Result<(Bucket, u64)> {
    let mut objects: BTreeMap<String, Arc<ObjectMeta>> = BTreeMap::new();
    let mut max_generation = 0;
    let created =
        fs::metadata(dir).and_then(|m| m.created().or_else(|_| m.modified())).unwrap_or_else(|_| SystemTime::now());
    for sub in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let sub = sub.map_err(|e| Error::io(dir, e))?;
        let sub_path = sub.path();
        if !sub.file_type().map_err(|e| Error::io(&sub_path, e))?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&sub_path).map_err(|e| Error::io(&sub_path, e))? {
            let entry = entry.map_err(|e| Error::io(&sub_path, e))?;
            let path = entry.path();
            let file_name = entry.file_name();
            if file_name.to_str().is_some_and(|n| n.starts_with(TMP_PREFIX)) {
                // A body whose write never committed.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(generation) =
                file_name.to_str().and_then(|n| n.rsplit_once('-')).and_then(|(_, g)| g.parse::<u64>().ok())
            else {
                tracing::warn!(path = %path.display(), "ignoring unexpected file in bucket directory");
                continue;
            };
            let (key, meta) = read_footer(&path, generation)?;
            max_generation = max_generation.max(generation);
            // Two versions of one key only survive a crash between rename
            // and unlink; the newer generation is the committed one.
            let stale = match objects.get(&key) {
                Some(existing) if existing.generation > generation => Some(path.clone()),
                Some(existing) => {
                    let old = object_path(dir, &key, existing.generation);
                    objects.insert(key, Arc::new(meta));
                    Some(old)
                }
                None => {
                    objects.insert(key, Arc::new(meta));
                    None
                }
            };
            if let Some(stale) = stale {
                let _ = fs::remove_file(stale);
            }
        }
    }
    let bucket = Bucket {
        name: name.to_owned(),
        created,
        dir: dir.to_owned(),
        state: RwLock::new(BucketState { deleted: false, objects: in_key_order(objects) }),
    };
    Ok((bucket, max_generation))
}

/// The index with each key, its metadata and its ETag allocated in key
/// order, next to each other. Loaded in directory order they lay scattered
/// over the heap, and a listing, which reads them in key order, missed the
/// cache on nearly every one: comparing keys was 18% of local-s3's CPU
/// listing a million UUID keys.
fn in_key_order(objects: BTreeMap<String, Arc<ObjectMeta>>) -> BTreeMap<String, Arc<ObjectMeta>> {
    // Copies first, then the originals freed: freed as it went, each copy
    // would reuse the hole its original left.
    objects
        .iter()
        .map(|(key, meta)| {
            let copy = ObjectMeta {
                size: meta.size,
                etag: meta.etag.clone(),
                last_modified: meta.last_modified,
                attrs: meta.attrs.clone(),
                generation: meta.generation,
            };
            (key.clone(), Arc::new(copy))
        })
        .collect()
}

fn read_footer(path: &Path, generation: u64) -> Result<(String, ObjectMeta)> {
    let corrupt = |reason: &str| Error::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < TRAILER_LEN {
        return Err(corrupt("shorter than the footer trailer"));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(|e| Error::io(path, e))?;
    if &trailer[4..] != FOOTER_MAGIC {
        return Err(corrupt("footer magic missing"));
    }
    let json_len = u64::from(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]));
    let Some(size) = len.checked_sub(TRAILER_LEN + json_len) else {
        return Err(corrupt("footer length exceeds file size"));
    };
    let mut json = vec![0u8; usize::try_from(json_len).map_err(|_| corrupt("footer too large"))?];
    file.seek(SeekFrom::Start(size)).and_then(|_| file.read_exact(&mut json)).map_err(|e| Error::io(path, e))?;
    let footer: Footer =
        serde_json::from_slice(&json).map_err(|e| corrupt(&format!("footer is not valid JSON: {e}")))?;
    let meta = ObjectMeta {
        size,
        etag: footer.etag,
        last_modified: UNIX_EPOCH + Duration::new(footer.mtime_secs, footer.mtime_nanos),
        attrs: footer.attrs,
        generation,
    };
    Ok((footer.key, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Arc<ObjectMeta> {
        Arc::new(ObjectMeta {
            size: 0,
            etag: String::new(),
            last_modified: UNIX_EPOCH,
            attrs: ObjectAttrs::default(),
            generation: 0,
        })
    }

    fn index(keys: &[&str]) -> BTreeMap<String, Arc<ObjectMeta>> {
        keys.iter().map(|k| ((*k).to_owned(), meta())).collect()
    }

    fn names(page: &ListPage) -> (Vec<&str>, Vec<&str>) {
        (page.objects.iter().map(|(k, _)| k.as_str()).collect(), page.prefixes.iter().map(String::as_str).collect())
    }

    #[test]
    fn successor_skips_everything_under_the_prefix() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }

    #[test]
    fn delimiter_pages_resume_after_common_prefixes() {
        let objects = index(&["a", "a/b", "a/c/d", "b/1", "b/2", "c"]);
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let params = ListParams { prefix: "", delimiter: Some("/"), after: after.as_deref(), max_keys: 1 };
            let page = list_page(&objects, &params);
            let (keys, prefixes) = names(&page);
            seen.extend(keys.iter().map(|k| format!("K:{k}")));
            seen.extend(prefixes.iter().map(|p| format!("P:{p}")));
            if !page.truncated {
                break;
            }
            after = page.last.clone();
        }
        assert_eq!(seen, ["K:a", "P:a/", "P:b/", "K:c"]);
    }

    #[test]
    fn prefix_with_delimiter_lists_keys_ending_in_the_delimiter() {
        let objects = index(&["a/", "a/b", "a/c/d", "a/c/e", "ab"]);
        let params = ListParams { prefix: "a/", delimiter: Some("/"), after: None, max_keys: 1000 };
        let page = list_page(&objects, &params);
        assert_eq!(names(&page), (vec!["a/", "a/b"], vec!["a/c/"]));
        assert!(!page.truncated);
    }

    #[test]
    fn start_after_before_prefix_starts_at_prefix() {
        let objects = index(&["a1", "b1", "b2", "c1"]);
        let params = ListParams { prefix: "b", delimiter: None, after: Some("a9"), max_keys: 1000 };
        assert_eq!(names(&list_page(&objects, &params)).0, ["b1", "b2"]);
    }
}
