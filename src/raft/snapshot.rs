//! Snapshot files: one format for files under `<data_dir>/snapshots/`, for openraft's
//! `install_snapshot`/`get_current_snapshot`, and for `GET`/`PUT /v1/snapshot`.
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "MUSTSNAP"
//! 8       4     format version (2)
//! 12      4     meta length M
//! 16      8     body length B
//! 24      4     CRC32C of every byte from offset 32 to the end (meta, padding, body)
//! 28      4     CRC32C of bytes 0..28
//! 32      M     meta: openraft's SnapshotMeta (last log id, membership, snapshot id), JSON
//! ...     0-15  zero padding, so the body starts at a multiple of 16
//! ...     B     body: the applier's image (Muster: an rkyv archive of `muster_shards::image::Image`)
//! ```
//!
//! The file ends exactly after the body; anything else (short, long, bad magic, unknown version,
//! either checksum wrong) is refused. The body starts 16-aligned so that a memory-mapped file
//! can be validated and read by rkyv in place.
//!
//! # The store
//!
//! Snapshots are named `<index:020>-<term:020>.snap`, written to a `.tmp` name, `fsync`ed,
//! renamed, then the directory is `fsync`ed: a crash leaves either the old set or the new one,
//! and a leftover `.tmp` is removed at the next open. The newest [`RETAIN`] are kept. On start the
//! newest one that validates is loaded; a corrupt one is reported loudly and the previous one is
//! tried. That fallback works because the raft log is never purged past the older retained
//! snapshot ([`SnapshotStore::purge_cap`]).
//!
//! All file work runs on glommio's blocking-thread pool (`spawn_blocking`), never on a reactor.

use std::cell::{Cell, RefCell};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::types::{term_of, LogId, SnapshotMeta};

pub const MAGIC: [u8; 8] = *b"MUSTSNAP";
/// 2: the image gained config entries (its archive layout changed).
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 32;
const BODY_ALIGN: usize = 16;
/// Snapshots kept on disk; the older one is the fallback when the newer fails to validate.
pub const RETAIN: usize = 2;
const SNAPSHOT_DIR: &str = "snapshots";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";

/// Why a snapshot file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotFileError {
    #[error("snapshot is {0} bytes, shorter than its 32-byte header")]
    TooShort(usize),
    #[error("not a Muster snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot header checksum mismatch")]
    HeaderChecksum,
    #[error("snapshot is {actual} bytes but its header says {expected}: truncated or padded")]
    Length { expected: u64, actual: u64 },
    #[error("snapshot checksum mismatch: the file is corrupt")]
    DataChecksum,
    #[error("corrupt snapshot metadata: {0}")]
    Meta(String),
    #[error("snapshot image rejected: {0}")]
    Image(String),
}

fn body_offset(meta_len: usize) -> usize {
    (HEADER_LEN + meta_len).next_multiple_of(BODY_ALIGN)
}

/// Encodes a snapshot file around `body`.
pub fn encode(meta: &SnapshotMeta, body: &[u8]) -> Result<Vec<u8>, SnapshotFileError> {
    let meta_json =
        simd_json::serde::to_vec(meta).map_err(|e| SnapshotFileError::Meta(e.to_string()))?;
    let meta_len = u32::try_from(meta_json.len())
        .map_err(|_| SnapshotFileError::Meta("metadata larger than 4 GiB".into()))?;
    let off = body_offset(meta_json.len());
    let mut out = Vec::with_capacity(off + body.len());
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.extend_from_slice(&meta_json);
    out.resize(off, 0);
    out.extend_from_slice(body);
    let data_crc = crc32c::crc32c(&out[HEADER_LEN..]);
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&meta_len.to_le_bytes());
    out[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[24..28].copy_from_slice(&data_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[..28]);
    out[28..32].copy_from_slice(&header_crc.to_le_bytes());
    Ok(out)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The header's meta length and body length, after checking magic, version and header CRC.
fn check_header(data: &[u8]) -> Result<(usize, u64), SnapshotFileError> {
    if data.len() < HEADER_LEN {
        return Err(SnapshotFileError::TooShort(data.len()));
    }
    if data[..8] != MAGIC {
        return Err(SnapshotFileError::BadMagic);
    }
    if crc32c::crc32c(&data[..28]) != le_u32(data, 28) {
        return Err(SnapshotFileError::HeaderChecksum);
    }
    let version = le_u32(data, 8);
    if version != VERSION {
        return Err(SnapshotFileError::UnsupportedVersion(version));
    }
    let meta_len = le_u32(data, 12) as usize;
    let body_len = u64::from_le_bytes(data[16..24].try_into().expect("8 bytes"));
    Ok((meta_len, body_len))
}

fn parse_meta(data: &[u8], meta_len: usize) -> Result<SnapshotMeta, SnapshotFileError> {
    let end = HEADER_LEN + meta_len;
    let mut json = data
        .get(HEADER_LEN..end)
        .ok_or(SnapshotFileError::Length {
            expected: end as u64,
            actual: data.len() as u64,
        })?
        .to_vec();
    simd_json::serde::from_slice(&mut json).map_err(|e| SnapshotFileError::Meta(e.to_string()))
}

/// Validates a whole snapshot file; returns its metadata and (a borrow of) its body.
pub fn decode(data: &[u8]) -> Result<(SnapshotMeta, &[u8]), SnapshotFileError> {
    let (meta_len, body_len) = check_header(data)?;
    let off = body_offset(meta_len);
    let expected = (off as u64).saturating_add(body_len);
    if expected != data.len() as u64 {
        return Err(SnapshotFileError::Length {
            expected,
            actual: data.len() as u64,
        });
    }
    if crc32c::crc32c(&data[HEADER_LEN..]) != le_u32(data, 24) {
        return Err(SnapshotFileError::DataChecksum);
    }
    let meta = parse_meta(data, meta_len)?;
    Ok((meta, &data[off..]))
}

/// Reads only the metadata (header checked, data checksum not): for listing and caps.
pub fn peek_meta(head: &[u8]) -> Result<SnapshotMeta, SnapshotFileError> {
    let (meta_len, _) = check_header(head)?;
    parse_meta(head, meta_len)
}

/// Muster's snapshot body: the rkyv archive of the merged shard image.
pub fn image_to_body(image: &muster_shards::image::Image) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(image)
        .map(|v| v.into_vec())
        .unwrap_or_else(|e| unreachable!("rkyv cannot fail to serialize owned data: {e}"))
}

/// Validates (rkyv bytecheck) and deserializes a snapshot body. The body is copied to an
/// aligned buffer only when it is not already 16-aligned (a mapped file always is).
pub fn image_from_body(body: &[u8]) -> Result<muster_shards::image::Image, String> {
    with_archive(body, |archived| {
        rkyv::deserialize::<muster_shards::image::Image, rkyv::rancor::Error>(archived)
            .map_err(|e| format!("cannot read image archive: {e}"))
    })
}

/// Validates a snapshot body (rkyv bytecheck) without building the image: for callers that
/// only accept or refuse the file and let the applier decode it.
pub fn check_body(body: &[u8]) -> Result<(), String> {
    with_archive(body, |_| Ok(()))
}

fn with_archive<T>(
    body: &[u8],
    f: impl FnOnce(&muster_shards::image::ArchivedImage) -> Result<T, String>,
) -> Result<T, String> {
    use muster_shards::image::ArchivedImage;
    let access = |b: &[u8]| {
        rkyv::access::<ArchivedImage, rkyv::rancor::Error>(b)
            .map_err(|e| format!("invalid image archive: {e}"))
            .and_then(f)
    };
    if (body.as_ptr() as usize).is_multiple_of(BODY_ALIGN) {
        return access(body);
    }
    let mut aligned = rkyv::util::AlignedVec::<BODY_ALIGN>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    access(&aligned)
}

/// Why the snapshot store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotStoreError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: SnapshotFileError,
    },
    #[error("snapshot encoding failed: {0}")]
    Encode(#[from] SnapshotFileError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotStoreError + use<> {
    let path = path.to_path_buf();
    move |source| SnapshotStoreError::Io { op, path, source }
}

/// Runs file work on glommio's blocking-thread pool, off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

/// A snapshot found on disk.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
    pub size: u64,
}

/// A snapshot loaded at start: its metadata and what `decode_body` made of its body.
pub struct Loaded<T> {
    pub stored: StoredSnapshot,
    pub value: T,
}

/// The snapshot directory of a durable server. Lives on the raft executor.
pub struct SnapshotStore {
    dir: PathBuf,
    /// Retained snapshots, oldest first.
    files: RefCell<Vec<StoredSnapshot>>,
    /// How far the log may be purged: up to the older retained snapshot. `None`: not at all.
    cap: Rc<Cell<Option<LogId>>>,
}

fn file_name(meta: &SnapshotMeta) -> String {
    let (index, term) = meta
        .last_log_id
        .map_or((0, 0), |id| (id.index(), term_of(&id)));
    format!("{index:020}-{term:020}{SUFFIX}")
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl SnapshotStore {
    /// Opens (creating) `<data_dir>/snapshots`, removes interrupted writes and lists what is
    /// there. Files whose header does not validate are listed as well; loading skips them.
    pub async fn open(data_dir: &Path) -> Result<SnapshotStore, SnapshotStoreError> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        let d = dir.clone();
        let listed = blocking(move || -> Result<Vec<StoredSnapshot>, SnapshotStoreError> {
            std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
            if let Some(parent) = d.parent() {
                fsync_dir(parent).map_err(io_err("sync", parent))?;
            }
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&d).map_err(io_err("list", &d))? {
                let entry = entry.map_err(io_err("list", &d))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(TMP_SUFFIX) {
                    log::warn!("removing interrupted snapshot write {}", path.display());
                    std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    continue;
                }
                if !name.ends_with(SUFFIX) {
                    continue;
                }
                let size = entry.metadata().map_err(io_err("stat", &path))?.len();
                let mut head = vec![0u8; 64 << 10];
                let n = read_prefix(&path, &mut head).map_err(io_err("read", &path))?;
                match peek_meta(&head[..n]) {
                    Ok(meta) => out.push(StoredSnapshot { path, meta, size }),
                    Err(e) => log::error!(
                        "snapshot {} has a corrupt header and is ignored: {e}",
                        path.display()
                    ),
                }
            }
            fsync_dir(&d).map_err(io_err("sync", &d))?;
            out.sort_by_key(|s| s.meta.last_log_id.map_or(0, |id| id.index()));
            Ok(out)
        })
        .await?;
        let store = SnapshotStore {
            dir,
            files: RefCell::new(listed),
            cap: Rc::new(Cell::new(None)),
        };
        store.update_cap();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Snapshots on disk, oldest first.
    pub fn list(&self) -> Vec<StoredSnapshot> {
        self.files.borrow().clone()
    }

    /// The highest log id the raft log may be purged to (shared with the log store).
    pub fn purge_cap(&self) -> Rc<Cell<Option<LogId>>> {
        self.cap.clone()
    }

    fn update_cap(&self) {
        let files = self.files.borrow();
        let cap = if files.len() >= RETAIN {
            files[files.len() - RETAIN].meta.last_log_id
        } else {
            None
        };
        self.cap.set(cap);
    }

    /// Writes `data` (an encoded snapshot file) durably and drops snapshots beyond [`RETAIN`].
    /// Returns the data, so the caller can hand it on without a copy.
    pub async fn save(
        &self,
        data: Vec<u8>,
    ) -> Result<(StoredSnapshot, Vec<u8>), SnapshotStoreError> {
        let (meta, _) = decode(&data)?;
        let path = self.dir.join(file_name(&meta));
        let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", file_name(&meta)));
        let dir = self.dir.clone();
        let (p, t) = (path.clone(), tmp.clone());
        let data = blocking(move || -> Result<Vec<u8>, SnapshotStoreError> {
            let mut f = std::fs::File::create(&t).map_err(io_err("create", &t))?;
            f.write_all(&data).map_err(io_err("write", &t))?;
            f.sync_all().map_err(io_err("sync", &t))?;
            drop(f);
            std::fs::rename(&t, &p).map_err(io_err("rename", &t))?;
            fsync_dir(&dir).map_err(io_err("sync", &dir))?;
            Ok(data)
        })
        .await?;
        let stored = StoredSnapshot {
            path,
            meta,
            size: data.len() as u64,
        };
        let victims = {
            let mut files = self.files.borrow_mut();
            files.retain(|s| s.path != stored.path);
            files.push(stored.clone());
            let excess = files.len().saturating_sub(RETAIN);
            files.drain(..excess).collect::<Vec<_>>()
        };
        self.update_cap();
        if !victims.is_empty() {
            let dir = self.dir.clone();
            blocking(move || {
                for v in victims {
                    if let Err(e) = std::fs::remove_file(&v.path) {
                        log::warn!("cannot remove old snapshot {}: {e}", v.path.display());
                    }
                }
                if let Err(e) = fsync_dir(&dir) {
                    log::warn!("cannot sync {}: {e}", dir.display());
                }
            })
            .await;
        }
        Ok((stored, data))
    }

    /// Loads the newest snapshot that validates: memory-mapped, checksummed and handed to
    /// `decode_body` on a blocking thread. A snapshot that fails is logged and the previous one
    /// tried. `Ok(None)` when there is no snapshot; an error only when every one is corrupt.
    pub async fn load_newest<T, F>(
        &self,
        decode_body: F,
    ) -> Result<Option<Loaded<T>>, SnapshotStoreError>
    where
        T: Send + 'static,
        F: Fn(&SnapshotMeta, &[u8]) -> Result<T, String> + Send + Sync + Clone + 'static,
    {
        let candidates = self.list();
        let mut last_err = None;
        for stored in candidates.into_iter().rev() {
            let path = stored.path.clone();
            let f = decode_body.clone();
            let r = blocking(move || -> Result<T, SnapshotStoreError> {
                let file = std::fs::File::open(&path).map_err(io_err("open", &path))?;
                // SAFETY: snapshot files are never modified in place (written under a
                // temporary name, then renamed); the map is dropped before this returns.
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err("map", &path))?;
                let (meta, body) = decode(&map).map_err(|source| SnapshotStoreError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
                f(&meta, body).map_err(|e| SnapshotStoreError::Corrupt {
                    path: path.clone(),
                    source: SnapshotFileError::Image(e),
                })
            })
            .await;
            match r {
                Ok(value) => return Ok(Some(Loaded { stored, value })),
                Err(e) => {
                    log::error!("{e}; trying the previous snapshot");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The newest snapshot's whole file, for openraft and `GET /v1/snapshot`.
    pub async fn read_newest(&self) -> Result<Option<Vec<u8>>, SnapshotStoreError> {
        let Some(s) = self.files.borrow().last().cloned() else {
            return Ok(None);
        };
        let data =
            blocking(move || std::fs::read(&s.path).map_err(io_err("read", &s.path))).await?;
        Ok(Some(data))
    }
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{StoredMembership, TypeConfig};
    use openraft::vote::RaftLeaderIdExt;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(
                openraft::type_config::alias::LeaderIdOf::<TypeConfig>::new_committed(3, 1),
                index,
            )),
            last_membership: StoredMembership::default(),
        }
    }

    #[test]
    fn round_trip_and_alignment() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let data = encode(&meta(42), &body).unwrap();
        let (m, b) = decode(&data).unwrap();
        assert_eq!(m, meta(42));
        assert_eq!(b, &body[..]);
        assert_eq!((data.len() - body.len()) % BODY_ALIGN, 0);
        assert_eq!(peek_meta(&data[..200]).unwrap(), meta(42));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let data = encode(&meta(7), b"some image bytes").unwrap();
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "truncated at {cut} accepted");
        }
        for at in 0..data.len() {
            let mut bad = data.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped byte {at} accepted");
        }
        let mut long = data.clone();
        long.push(0);
        assert!(matches!(
            decode(&long),
            Err(SnapshotFileError::Length { .. })
        ));
    }

    #[test]
    fn body_check_accepts_images_at_any_alignment_and_refuses_garbage() {
        let img = muster_shards::image::Image {
            applied: 9,
            ..Default::default()
        };
        let body = image_to_body(&img);
        assert_eq!(check_body(&body), Ok(()));
        assert_eq!(image_from_body(&body).map(|i| i.applied), Ok(9));
        // Shifted by one byte: copied to an aligned buffer first.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&body);
        assert_eq!(check_body(&shifted[1..]), Ok(()));
        let mut bad = body.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_body(&bad).is_err());
        assert!(image_from_body(&bad).is_err());
    }

    #[test]
    fn version_and_magic_are_reported() {
        let mut data = encode(&meta(1), b"x").unwrap();
        assert_eq!(
            decode(b"NOTASNAPSHOTATALL_______________"),
            Err(SnapshotFileError::BadMagic)
        );
        data[8..12].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32c::crc32c(&data[..28]);
        data[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&data), Err(SnapshotFileError::UnsupportedVersion(9)));
    }
}
