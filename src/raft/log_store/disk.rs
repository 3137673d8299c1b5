//! The durable raft log: segment files under `<data_dir>/raft/`, written with glommio DMA files
//! (io_uring, `O_DIRECT`). The byte layout and the recovery rules are in [`super::format`].
//!
//! # How it honours openraft's log contract
//!
//! - **No holes.** `append` refuses an entry that does not follow the last one (or the purge
//!   point), and recovery refuses a log whose indexes do not follow each other.
//! - **Serialized writes.** Every disk write (a batch of entries, a vote, a truncation, a purge)
//!   runs under one async lock, in call order. A vote or a truncation first flushes the entries
//!   appended before it.
//! - **Durability through the callback.** `append` only encodes the entries and returns: they are
//!   readable at once (from the in-memory cache). A flusher task writes everything appended so
//!   far as one batch, calls `fdatasync` once, and only then fires the `IOFlushed` callbacks of
//!   every `append` in that batch. Appends that arrive while a batch is on its way to disk form
//!   the next batch: that is the group commit, and the write-behind openraft asks for.
//! - **Vote on disk before `save_vote` returns**, in the `meta` file (two slots, see the format).
//!   `save_committed` only notes the id: it rides along in the next batch of entries (or meta
//!   update), costing no flush; losing the newest value in a crash only means re-applying less.
//!
//! # Memory and start-up
//!
//! Every live entry has a 24-byte location in memory; the newest ones (bounded by
//! [`DiskLogOptions`]) are also kept decoded, older ones are read back with DMA reads, one read
//! per run of neighbouring records. At open each segment is read whole (at most about
//! `segment_bytes` in memory at a time), every batch checked and every live entry decoded.
//!
//! After any write error the store is poisoned: later writes fail, the pending callbacks report the
//! error. openraft treats that as fatal, which is right: the state of the tail on disk is unknown.
//!
//! # Reactor discipline
//!
//! All file I/O goes through glommio (io_uring). Directory creation, the directory listing and
//! the lock file's first write run on glommio's blocking-thread pool; glommio itself sends
//! `unlink`/`ftruncate` there when the kernel lacks the io_uring opcode. `flock(LOCK_NB)` never
//! blocks. (glommio's DMA `open` does a `statfs` and reads sysfs inline; segment files are
//! opened only at start and once per `segment_bytes` written.)
//!
//! State lives in one `Rc<Shared>` on the executor that opened the store: a `RefCell` for the
//! in-memory index (never borrowed across an `.await`) and a `tokio::sync::Mutex` (FIFO; needs
//! no tokio runtime) around the writer, whose guard is what is held across the disk I/O.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions};
use nix::fcntl::{flock, FlockArg};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::format::{self, HeaderError, MetaState, Record, ScanEnd, SlotError};
use super::inclusive_range;
use crate::raft::types::{Entry, LogId, TypeConfig, Vote};
use tokio::sync::Mutex;

/// Start a new segment once the current one reaches this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Keep at most this many recent entries decoded in memory; older ones are read from disk.
/// Comfortably above what openraft keeps between snapshots with the default knobs (10,000 + 1,000).
pub const DEFAULT_CACHE_ENTRIES: usize = 16 * 1024;
/// ... and at most this many bytes of them (measured as their encoded size).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

const RAFT_DIR: &str = "raft";
const META_FILE: &str = "meta";
const LOCK_FILE: &str = "LOCK";
/// Largest single read when serving old entries from disk or scanning a segment.
const MAX_READ_SPAN: u64 = 4 << 20;
/// `Loc::seg` of an entry that is appended but not yet written.
const PENDING: u64 = u64::MAX;

/// Tuning of a [`DiskLogStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLogOptions {
    /// Size bound of one segment file; a segment can exceed it by one batch.
    pub segment_bytes: u64,
    /// Bound on the decoded entries kept in memory.
    pub cache_entries: usize,
    /// Bound on the encoded bytes of the entries kept in memory.
    pub cache_bytes: usize,
}

impl Default for DiskLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Why the durable log cannot open or cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    #[error("raft log: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: raft log format version {found} is not supported (this build reads version \
         {supported}); run a matching muster build or move the data directory aside",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{}: raft log corrupt at byte {offset}: {detail}; refusing to start rather than drop \
         acknowledged entries (restore the data directory from a backup, or remove this server's \
         data and let it rejoin from the leader)",
        path.display()
    )]
    MidLogCorruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{}: raft log inconsistent at byte {offset}: {detail}; refusing to start", path.display())]
    Inconsistent {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{}: raft metadata unreadable: {detail}; refusing to start", path.display())]
    CorruptMeta { path: PathBuf, detail: String },
    #[error(
        "{}: raft log segments exist but the metadata file (vote, purge point) is missing; \
         refusing to start",
        dir.display()
    )]
    MissingMeta { dir: PathBuf },
    #[error(
        "{}: committed entry {committed} is not in the log, which ends at {last}; a segment is \
         missing, refusing to start",
        dir.display()
    )]
    CommittedMissing {
        dir: PathBuf,
        committed: u64,
        last: u64,
    },
    #[error("{}: raft log is in use by another process (or another store in this one)", path.display())]
    Locked { path: PathBuf },
    #[error(
        "{}: O_DIRECT alignment {alignment} is larger than the supported {}",
        path.display(),
        format::MIN_BLOCK
    )]
    UnsupportedDevice { path: PathBuf, alignment: u64 },
    #[error("cannot encode a raft log record: {0}")]
    Encode(String),
    #[error("raft log stopped after an earlier failure: {0}")]
    Poisoned(String),
}

impl From<LogStoreError> for io::Error {
    fn from(e: LogStoreError) -> Self {
        let kind = match &e {
            LogStoreError::Io { source, .. } => source.kind(),
            LogStoreError::Encode(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(glommio::GlommioError<()>) -> LogStoreError {
    let path = path.to_path_buf();
    move |e| LogStoreError::Io {
        op,
        path,
        source: e.into(),
    }
}

fn std_io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogStoreError {
    let path = path.to_path_buf();
    move |source| LogStoreError::Io { op, path, source }
}

/// Where an entry's record is: segment (by first index), byte offset, record length.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    off: u64,
    len: u32,
}

struct Segment {
    path: PathBuf,
    file: Rc<DmaFile>,
    /// Batch alignment of this segment.
    block: u64,
    /// Where the next batch goes.
    end: u64,
    /// Highest live entry index in the segment (after its TRUNCATE records).
    last_entry: Option<u64>,
}

/// Appended, not yet written.
#[derive(Default)]
struct Pending {
    /// ENTRY records, back to back; `Loc::off` of a pending entry is its offset here.
    body: Vec<u8>,
    first_entry: Option<u64>,
    entries: usize,
    callbacks: Vec<IOFlushed<TypeConfig>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.body.is_empty() && self.callbacks.is_empty()
    }
}

struct State {
    opts: DiskLogOptions,
    raft_dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// Index of `locs[0]`.
    first_index: u64,
    /// Every live entry, in index order.
    locs: VecDeque<Loc>,
    /// Decoded copies of the last `cache.len()` live entries.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    last_entry: Option<LogId>,
    /// What `meta` holds on disk.
    meta: MetaState,
    meta_seq: u64,
    /// Latest committed log id from openraft, and the latest one on disk (meta or record).
    committed: Option<LogId>,
    committed_on_disk: Option<LogId>,
    pending: Pending,
    flusher_running: bool,
    poisoned: Option<String>,
    closed: bool,
}

impl State {
    fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first_index + self.locs.len() as u64 - 1)
    }

    /// The index the next appended entry must have, if anything constrains it.
    fn next_index(&self) -> Option<u64> {
        self.last_index()
            .map(|l| l + 1)
            .or_else(|| self.meta.purged.map(|p| p.index() + 1))
    }

    fn cache_first(&self) -> u64 {
        self.first_index + (self.locs.len() - self.cache.len()) as u64
    }

    fn push(&mut self, loc: Loc, entry: Entry) {
        if self.locs.is_empty() {
            self.first_index = entry.index();
        }
        self.last_entry = Some(entry.log_id());
        self.locs.push_back(loc);
        self.cache.push_back(entry);
        self.cache_bytes += loc.len as usize;
    }

    /// Drops decoded entries beyond the cache bounds, oldest first; unwritten ones stay.
    fn evict(&mut self) {
        while !self.cache.is_empty()
            && (self.cache.len() > self.opts.cache_entries
                || self.cache_bytes > self.opts.cache_bytes)
        {
            let loc = self.locs[self.locs.len() - self.cache.len()];
            if loc.seg == PENDING {
                break;
            }
            self.cache.pop_front();
            self.cache_bytes -= loc.len as usize;
        }
    }

    /// Forgets live entries from `keep_below` on; `last` is the log id of `keep_below - 1`.
    fn truncate_mem(&mut self, keep_below: u64, last: Option<LogId>) {
        let keep = keep_below.saturating_sub(self.first_index) as usize;
        while self.locs.len() > keep {
            let loc = self.locs.pop_back().expect("len checked");
            if self.cache.pop_back().is_some() {
                self.cache_bytes -= loc.len as usize;
            }
        }
        self.last_entry = match (self.locs.is_empty(), self.cache.back()) {
            (true, _) => None,
            (false, Some(e)) => Some(e.log_id()),
            (false, None) => last,
        };
    }

    /// Forgets live entries up to and including `upto`.
    fn purge_mem(&mut self, upto: u64) {
        while !self.locs.is_empty() && self.first_index <= upto {
            let loc = self.locs.pop_front().expect("non-empty");
            self.first_index += 1;
            if self.cache.len() > self.locs.len() {
                self.cache.pop_front();
                self.cache_bytes -= loc.len as usize;
            }
        }
        if self.locs.is_empty() {
            self.first_index = upto + 1;
            self.last_entry = None;
        }
    }

    fn poison(&mut self, e: &LogStoreError) {
        if self.poisoned.is_none() {
            log::error!("raft log: stopping after a storage failure: {e}");
            self.poisoned = Some(e.to_string());
        }
    }

    fn check_poisoned(&self) -> Result<(), LogStoreError> {
        match &self.poisoned {
            Some(reason) => Err(LogStoreError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }
}

/// What only the current disk writer touches.
struct Writer {
    dir: Directory,
    meta_file: DmaFile,
    lock: DirLock,
    /// Reused framing buffer.
    frame: Vec<u8>,
}

/// `flock` on `raft/LOCK`, released as soon as this is dropped or [`DirLock::release`]d: closing
/// a dropped DMA file is deferred to the reactor, which may never run again.
struct DirLock {
    file: DmaFile,
    held: bool,
}

impl DirLock {
    fn acquire(file: DmaFile, path: &Path) -> Result<Self, LogStoreError> {
        match flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock) {
            Ok(()) => Ok(Self { file, held: true }),
            Err(nix::errno::Errno::EWOULDBLOCK) => Err(LogStoreError::Locked {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(std_io_err("lock", path)(e.into())),
        }
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            // LOCK_UN never blocks; a failure would mean a bad fd, and the close frees it anyway.
            if let Err(e) = flock(self.file.as_raw_fd(), FlockArg::UnlockNonblock) {
                log::warn!("raft log: cannot release the directory lock: {e}");
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        self.release();
    }
}

struct Shared {
    state: RefCell<State>,
    writer: Mutex<Writer>,
    /// See [`DiskLogStore::set_purge_cap`].
    purge_cap: RefCell<Option<PurgeCap>>,
}

/// The highest log id a purge may reach; `None` in the cell: no purge at all.
pub type PurgeCap = Rc<Cell<Option<LogId>>>;

/// Durable raft log on glommio DMA files. Clones share one log; keep it on the executor that
/// opened it. See the module docs for how it meets openraft's contract.
#[derive(Clone)]
pub struct DiskLogStore {
    shared: Rc<Shared>,
}

/// Reader handed to openraft's replication tasks; shares the store's index and files.
#[derive(Clone)]
pub struct DiskLogReader {
    shared: Rc<Shared>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLogStats {
    pub segments: usize,
    /// Live entries.
    pub entries: usize,
    /// Live entries held decoded in memory.
    pub cached_entries: usize,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
}

impl DiskLogStore {
    /// Opens (or creates) the log in `<data_dir>/raft/`, recovering it as the format docs
    /// describe. Must run on the glommio executor that will use the store.
    pub async fn open(data_dir: &Path, opts: DiskLogOptions) -> Result<Self, LogStoreError> {
        let raft_dir = data_dir.join(RAFT_DIR);
        {
            let dir = raft_dir.clone();
            glommio::executor()
                .spawn_blocking(move || std::fs::create_dir_all(dir))
                .await
                .map_err(std_io_err("create directory", &raft_dir))?;
        }
        // A directory entry is only durable once its parent is synced.
        for d in [data_dir, raft_dir.as_path()] {
            let handle = Directory::open(d)
                .await
                .map_err(io_err("open directory", d))?;
            handle.sync().await.map_err(io_err("sync directory", d))?;
            handle.close().await.map_err(io_err("close directory", d))?;
        }
        let dir = Directory::open(&raft_dir)
            .await
            .map_err(io_err("open directory", &raft_dir))?;

        let lock_path = raft_dir.join(LOCK_FILE);
        {
            let p = lock_path.clone();
            glommio::executor()
                .spawn_blocking(move || prepare_lock_file(&p))
                .await
                .map_err(std_io_err("prepare", &lock_path))?;
        }
        let lock = DirLock::acquire(open_rw(&lock_path, true).await?, &lock_path)?;
        if lock.file.alignment() > format::MIN_BLOCK {
            return Err(LogStoreError::UnsupportedDevice {
                path: raft_dir,
                alignment: lock.file.alignment(),
            });
        }

        let listing = {
            let d = raft_dir.clone();
            glommio::executor()
                .spawn_blocking(move || list_dir(&d))
                .await
                .map_err(std_io_err("list directory", &raft_dir))?
        };
        let mut seg_paths = BTreeMap::new();
        let mut has_meta = false;
        for name in listing {
            if name == META_FILE {
                has_meta = true;
            } else if let Some(first) = parse_segment_name(&name) {
                seg_paths.insert(first, raft_dir.join(&name));
            } else if name != LOCK_FILE {
                log::warn!(
                    "raft log: ignoring unknown file {}",
                    raft_dir.join(&name).display()
                );
            }
        }

        let meta_path = raft_dir.join(META_FILE);
        let (meta_file, meta, meta_seq) = if has_meta {
            let file = open_rw(&meta_path, false).await?;
            match read_meta(&file, &meta_path).await? {
                Some((seq, meta)) => (file, meta, seq),
                None if seg_paths.is_empty() => {
                    log::warn!(
                        "raft log: {} is empty (interrupted first start); initializing it",
                        meta_path.display()
                    );
                    init_meta(&file, &dir, &meta_path, &raft_dir).await?;
                    (file, MetaState::default(), 1)
                }
                None => {
                    return Err(LogStoreError::CorruptMeta {
                        path: meta_path,
                        detail: "neither slot holds a valid record".to_string(),
                    })
                }
            }
        } else if !seg_paths.is_empty() {
            return Err(LogStoreError::MissingMeta { dir: raft_dir });
        } else {
            let file = open_rw(&meta_path, true).await?;
            init_meta(&file, &dir, &meta_path, &raft_dir).await?;
            (file, MetaState::default(), 1)
        };

        let mut rec = Recovery::new(&meta, opts.clone());
        let mut segments = BTreeMap::new();
        let count = seg_paths.len();
        for (i, (name_index, path)) in seg_paths.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let seg = recover_segment(&mut rec, &dir, &raft_dir, name_index, path, is_last).await?;
            if let Some((first, seg)) = seg {
                segments.insert(first, seg);
            }
        }
        let recovered = rec.finish(&raft_dir)?;
        if let Some(last) = recovered.last_entry {
            log::info!(
                "raft log: opened {} with {} segment(s), entries {}..={}, purged up to {:?}",
                raft_dir.display(),
                segments.len(),
                recovered.first_index,
                last.index(),
                meta.purged.map(|p| p.index())
            );
        }

        let committed = recovered.committed;
        let state = State {
            opts,
            raft_dir,
            segments,
            first_index: recovered.first_index,
            locs: recovered.locs,
            cache: recovered.cache,
            cache_bytes: recovered.cache_bytes,
            last_entry: recovered.last_entry,
            meta,
            meta_seq,
            committed,
            committed_on_disk: committed,
            pending: Pending::default(),
            flusher_running: false,
            poisoned: None,
            closed: false,
        };
        let purged = state.meta.purged;
        let store = Self {
            shared: Rc::new(Shared {
                state: RefCell::new(state),
                writer: Mutex::new(Writer {
                    dir,
                    meta_file,
                    lock,
                    frame: Vec::new(),
                }),
                purge_cap: RefCell::new(None),
            }),
        };
        if let Some(p) = purged {
            let mut w = store.shared.writer.lock().await;
            store
                .shared
                .remove_purged_segments(&mut w, p.index())
                .await?;
        }
        Ok(store)
    }

    /// Waits until every entry appended so far is on disk.
    pub async fn sync(&self) -> Result<(), LogStoreError> {
        let mut w = self.shared.writer.lock().await;
        self.shared.flush_pending(&mut w).await
    }

    /// Flushes, releases the directory lock and stops the store: later writes fail. Call it
    /// before reopening the same directory in this process (openraft may still hold clones).
    pub async fn close(&self) -> Result<(), LogStoreError> {
        let mut w = self.shared.writer.lock().await;
        if self.shared.state.borrow().closed {
            return Ok(());
        }
        let flushed = self.shared.flush_pending(&mut w).await;
        {
            let mut st = self.shared.state.borrow_mut();
            st.closed = true;
            st.poisoned
                .get_or_insert_with(|| "the store was closed".to_string());
        }
        w.lock.release();
        flushed
    }

    /// `<data_dir>/raft`.
    /// Limits purges to the log id in `cap` (read at each purge), so that the log still holds
    /// every entry after an older snapshot that a restart may have to fall back to. openraft
    /// is told a purge happened; the entries kept are merely not deleted yet.
    pub fn set_purge_cap(&self, cap: PurgeCap) {
        *self.shared.purge_cap.borrow_mut() = Some(cap);
    }

    /// The log id the log is purged up to (entries at or before it are gone).
    pub fn purged(&self) -> Option<LogId> {
        self.shared.state.borrow().meta.purged
    }

    pub fn dir(&self) -> PathBuf {
        self.shared.state.borrow().raft_dir.clone()
    }

    pub fn stats(&self) -> DiskLogStats {
        let st = self.shared.state.borrow();
        DiskLogStats {
            segments: st.segments.len(),
            entries: st.locs.len(),
            cached_entries: st.cache.len(),
            first_index: (!st.locs.is_empty()).then_some(st.first_index),
            last_index: st.last_index(),
        }
    }

    fn reader(&self) -> DiskLogReader {
        DiskLogReader {
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    /// Writes everything appended so far as one batch, then fires its callbacks.
    async fn flush_pending(&self, w: &mut Writer) -> Result<(), LogStoreError> {
        let (mut body, first_entry, entries, callbacks, committed) = {
            let mut st = self.state.borrow_mut();
            if let Err(e) = st.check_poisoned() {
                fail_callbacks(std::mem::take(&mut st.pending.callbacks), &e);
                return Err(e);
            }
            if st.pending.is_empty() {
                return Ok(());
            }
            let p = std::mem::take(&mut st.pending);
            // Piggyback the committed id on entries that go to disk anyway: no extra fsync.
            let committed = (!p.body.is_empty() && st.committed != st.committed_on_disk)
                .then_some(st.committed);
            (p.body, p.first_entry, p.entries, p.callbacks, committed)
        };
        let result = async {
            if let Some(c) = committed {
                format::put_log_id(&mut body, format::KIND_COMMITTED, &c)
                    .map_err(|e| LogStoreError::Encode(e.to_string()))?;
            }
            if body.is_empty() {
                return Ok(None);
            }
            self.write_batch(w, &body, first_entry, true)
                .await
                .map(Some)
        }
        .await;
        match result {
            Ok(written) => {
                {
                    let mut st = self.state.borrow_mut();
                    if let (Some((seg, pos)), Some(first)) = (written, first_entry) {
                        let base = pos + format::BATCH_HEADER_LEN as u64;
                        let start = (first - st.first_index) as usize;
                        for loc in st.locs.range_mut(start..start + entries) {
                            debug_assert_eq!(loc.seg, PENDING);
                            loc.seg = seg;
                            loc.off += base;
                        }
                        if let Some(s) = st.segments.get_mut(&seg) {
                            s.last_entry = Some(first + entries as u64 - 1);
                        }
                    }
                    if let Some(c) = committed {
                        st.committed_on_disk = c;
                    }
                    st.evict();
                }
                for cb in callbacks {
                    cb.io_completed(Ok(()));
                }
                Ok(())
            }
            Err(e) => {
                self.state.borrow_mut().poison(&e);
                fail_callbacks(callbacks, &e);
                Err(e)
            }
        }
    }

    /// Writes `body` as one batch and makes it durable. Returns the segment and the offset.
    /// Only a batch with entries (`first_entry`) may start a new segment: a TRUNCATE record must
    /// stay in the segment whose entries it cuts.
    async fn write_batch(
        &self,
        w: &mut Writer,
        body: &[u8],
        first_entry: Option<u64>,
        may_roll: bool,
    ) -> Result<(u64, u64), LogStoreError> {
        let (current, new_first) = {
            let st = self.state.borrow();
            match st.segments.last_key_value() {
                None => (None, first_entry),
                Some((&key, seg)) => {
                    let len =
                        format::align_up((format::BATCH_HEADER_LEN + body.len()) as u64, seg.block);
                    let full = seg.end > seg.block && seg.end + len > st.opts.segment_bytes;
                    let roll_to = first_entry.filter(|&f| may_roll && full && f != key);
                    match roll_to {
                        Some(f) => (None, Some(f)),
                        None => (Some(key), None),
                    }
                }
            }
        };
        let key = match (current, new_first) {
            (Some(key), _) => key,
            (None, Some(first)) => {
                self.create_segment(w, first).await?;
                first
            }
            (None, None) => {
                let dir = self.state.borrow().raft_dir.clone();
                return Err(LogStoreError::Inconsistent {
                    path: dir,
                    offset: 0,
                    detail: "a record without entries has no segment to go to".to_string(),
                });
            }
        };
        let (file, path, pos, block) = {
            let st = self.state.borrow();
            let seg = &st.segments[&key];
            (seg.file.clone(), seg.path.clone(), seg.end, seg.block)
        };
        format::frame_batch(&mut w.frame, body, block);
        let mut buf = file.alloc_dma_buffer(w.frame.len());
        buf.as_bytes_mut().copy_from_slice(&w.frame);
        let written = file
            .write_at(buf, pos)
            .await
            .map_err(io_err("write to", &path))?;
        if written != w.frame.len() {
            return Err(LogStoreError::Io {
                op: "write to",
                path,
                source: io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {written} of {} bytes", w.frame.len()),
                ),
            });
        }
        file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&key) {
            seg.end = pos + w.frame.len() as u64;
        }
        Ok((key, pos))
    }

    /// Starts `seg-<first>.log`: header written and synced, directory synced, before any batch.
    async fn create_segment(&self, w: &mut Writer, first: u64) -> Result<(), LogStoreError> {
        let (raft_dir, restart_log) = {
            let st = self.state.borrow();
            let restart = st.segments.is_empty() && st.meta.expected_first() != first;
            (st.raft_dir.clone(), restart)
        };
        if restart_log {
            // The log restarts at `first` after having been emptied: say so in meta first, so
            // recovery knows the entries before `first` are gone on purpose.
            let mut meta = self.state.borrow().meta.clone();
            meta.log_start = Some(first);
            self.write_meta(w, meta).await?;
        }
        let path = raft_dir.join(segment_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(io_err("create", &path))?;
        let block = format::MIN_BLOCK.max(file.alignment());
        let mut buf = file.alloc_dma_buffer(block as usize);
        let bytes = buf.as_bytes_mut();
        bytes.fill(0);
        bytes[..format::SEGMENT_HEADER_LEN].copy_from_slice(
            &format::SegmentHeader {
                first_index: first,
                block,
            }
            .encode(),
        );
        file.write_at(buf, 0)
            .await
            .map_err(io_err("write header of", &path))?;
        file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
        w.dir
            .sync()
            .await
            .map_err(io_err("sync directory", &raft_dir))?;
        self.state.borrow_mut().segments.insert(
            first,
            Segment {
                path,
                file: Rc::new(file),
                block,
                end: block,
                last_entry: None,
            },
        );
        Ok(())
    }

    /// Replaces the meta record (the older slot), durably.
    async fn write_meta(&self, w: &mut Writer, meta: MetaState) -> Result<(), LogStoreError> {
        let (seq, path) = {
            let st = self.state.borrow();
            (st.meta_seq + 1, st.raft_dir.join(META_FILE))
        };
        let slot = format::encode_meta_slot(seq, &meta)
            .map_err(|e| LogStoreError::Encode(e.to_string()))?;
        let mut buf = w.meta_file.alloc_dma_buffer(format::META_SLOT_LEN as usize);
        let bytes = buf.as_bytes_mut();
        bytes.fill(0);
        bytes[..slot.len()].copy_from_slice(&slot);
        w.meta_file
            .write_at(buf, (seq % 2) * format::META_SLOT_LEN)
            .await
            .map_err(io_err("write", &path))?;
        w.meta_file
            .fdatasync()
            .await
            .map_err(io_err("fdatasync", &path))?;
        let mut st = self.state.borrow_mut();
        st.meta_seq = seq;
        if meta.committed > st.committed_on_disk {
            st.committed_on_disk = meta.committed;
        }
        st.meta = meta;
        Ok(())
    }

    /// Removes segments from the newest down to the first one starting at or before `keep_below - 1`.
    async fn drop_segments_from(
        &self,
        w: &mut Writer,
        keep_below: u64,
    ) -> Result<(), LogStoreError> {
        loop {
            let victim = {
                let st = self.state.borrow();
                st.segments
                    .last_key_value()
                    .filter(|(&k, _)| k >= keep_below)
                    .map(|(&k, s)| (k, s.path.clone(), st.raft_dir.clone()))
            };
            let Some((key, path, raft_dir)) = victim else {
                return Ok(());
            };
            glommio::io::remove(&path)
                .await
                .map_err(io_err("remove", &path))?;
            // One sync per segment: an older segment must never outlive a newer one's removal.
            w.dir
                .sync()
                .await
                .map_err(io_err("sync directory", &raft_dir))?;
            self.state.borrow_mut().segments.remove(&key);
        }
    }

    async fn truncate(&self, w: &mut Writer, last: Option<LogId>) -> Result<(), LogStoreError> {
        self.flush_pending(w).await?;
        let keep_below = last.map_or(0, |l| l.index() + 1);
        if self
            .state
            .borrow()
            .last_index()
            .is_none_or(|l| l < keep_below)
        {
            return Ok(());
        }
        self.drop_segments_from(w, keep_below).await?;
        let needs_marker = self
            .state
            .borrow()
            .segments
            .last_key_value()
            .is_some_and(|(_, s)| s.last_entry.is_some_and(|l| l >= keep_below));
        if needs_marker {
            let mut body = Vec::new();
            format::put_log_id(&mut body, format::KIND_TRUNCATE, &last)
                .map_err(|e| LogStoreError::Encode(e.to_string()))?;
            let (key, _) = self.write_batch(w, &body, None, false).await?;
            if let Some(seg) = self.state.borrow_mut().segments.get_mut(&key) {
                seg.last_entry = keep_below.checked_sub(1);
            }
        }
        self.state.borrow_mut().truncate_mem(keep_below, last);
        Ok(())
    }

    async fn purge(&self, w: &mut Writer, upto: LogId) -> Result<(), LogStoreError> {
        let cap = self.purge_cap.borrow().as_ref().map(|c| c.get());
        let upto = match cap {
            None => upto,
            Some(None) => return Ok(()),
            Some(Some(cap)) if cap.index() < upto.index() => cap,
            Some(Some(_)) => upto,
        };
        self.flush_pending(w).await?;
        let meta = {
            let st = self.state.borrow();
            if st.meta.purged.is_some_and(|p| p >= upto) {
                return Ok(());
            }
            MetaState {
                purged: Some(upto),
                committed: st.committed.max(st.meta.committed),
                ..st.meta.clone()
            }
        };
        self.write_meta(w, meta).await?;
        let p = upto.index();
        self.state.borrow_mut().purge_mem(p);
        self.remove_purged_segments(w, p).await
    }

    /// Removes the segments holding nothing after `p`, oldest first. Also run at open, to finish
    /// a purge that crashed after updating meta: new entries must never go into a segment whose
    /// older entries are purged.
    async fn remove_purged_segments(&self, w: &mut Writer, p: u64) -> Result<(), LogStoreError> {
        let mut removed = false;
        loop {
            let victim = {
                let st = self.state.borrow();
                let mut it = st.segments.iter();
                it.next().and_then(|(&k, s)| {
                    let dead = match it.next() {
                        Some((&next, _)) => next <= p + 1,
                        None => s.last_entry.is_none_or(|l| l <= p),
                    };
                    dead.then(|| (k, s.path.clone()))
                })
            };
            let Some((key, path)) = victim else {
                break;
            };
            glommio::io::remove(&path)
                .await
                .map_err(io_err("remove", &path))?;
            self.state.borrow_mut().segments.remove(&key);
            removed = true;
        }
        if removed {
            // Only so the space is reliably reclaimed: a segment that comes back holds nothing
            // after the purge point, and the next open removes it again.
            let dir = self.state.borrow().raft_dir.clone();
            w.dir.sync().await.map_err(io_err("sync directory", &dir))?;
        }
        Ok(())
    }

    /// Runs a writer operation; a failure poisons the store.
    fn poison_on_err<T>(&self, r: Result<T, LogStoreError>) -> Result<T, io::Error> {
        r.map_err(|e| {
            self.state.borrow_mut().poison(&e);
            e.into()
        })
    }
}

fn fail_callbacks(callbacks: Vec<IOFlushed<TypeConfig>>, e: &LogStoreError) {
    for cb in callbacks {
        cb.io_completed(Err(io::Error::other(e.to_string())));
    }
}

/// Flushes batches until nothing is pending; at most one runs per store.
async fn run_flusher(shared: Rc<Shared>) {
    loop {
        let result = {
            let mut w = shared.writer.lock().await;
            shared.flush_pending(&mut w).await
        };
        let mut st = shared.state.borrow_mut();
        if let Err(e) = result {
            let pending = std::mem::take(&mut st.pending.callbacks);
            st.flusher_running = false;
            drop(st);
            fail_callbacks(pending, &e);
            return;
        }
        if st.pending.is_empty() {
            st.flusher_running = false;
            return;
        }
    }
}

impl RaftLogStorage<TypeConfig> for DiskLogStore {
    type LogReader = DiskLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let st = self.shared.state.borrow();
        let last_purged_log_id = st.meta.purged;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: st.last_entry.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> DiskLogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut w = self.shared.writer.lock().await;
        let r = async {
            self.shared.flush_pending(&mut w).await?;
            let meta = MetaState {
                vote: Some(*vote),
                ..self.shared.state.borrow().meta.clone()
            };
            self.shared.write_meta(&mut w, meta).await
        }
        .await;
        self.shared.poison_on_err(r)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Written with the next batch of entries (or the next meta update): losing the latest
        // value in a crash only means re-applying less at start, which is safe.
        let mut st = self.shared.state.borrow_mut();
        if committed > st.committed {
            st.committed = committed;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.state.borrow().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let spawn = {
            let mut st = self.shared.state.borrow_mut();
            st.check_poisoned()?;
            for entry in entries {
                let index = entry.index();
                if let Some(next) = st.next_index() {
                    if index != next {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("append of log index {index} where {next} is next would leave a hole"),
                        ));
                    }
                }
                let rel = st.pending.body.len();
                format::put_entry(&mut st.pending.body, index, &entry)
                    .map_err(|e| io::Error::from(LogStoreError::Encode(e.to_string())))?;
                let len = (st.pending.body.len() - rel) as u32;
                st.pending.first_entry.get_or_insert(index);
                st.pending.entries += 1;
                st.push(
                    Loc {
                        seg: PENDING,
                        off: rel as u64,
                        len,
                    },
                    entry,
                );
            }
            st.pending.callbacks.push(callback);
            !std::mem::replace(&mut st.flusher_running, true)
        };
        if spawn {
            glommio::spawn_local(run_flusher(self.shared.clone())).detach();
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let mut w = self.shared.writer.lock().await;
        let r = self.shared.truncate(&mut w, last_log_id).await;
        self.shared.poison_on_err(r)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut w = self.shared.writer.lock().await;
        let r = self.shared.purge(&mut w, log_id).await;
        self.shared.poison_on_err(r)
    }
}

/// One disk read covering consecutive records of one segment.
struct ReadGroup {
    file: Rc<DmaFile>,
    path: PathBuf,
    start: u64,
    end: u64,
    locs: Vec<(u64, Loc)>,
}

impl RaftLogReader<TypeConfig> for DiskLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        // The plan is made in one borrow: records on disk are never rewritten, so reading them
        // afterwards still returns the log as it was at this point (openraft wants that).
        let (groups, cached) = {
            let st = self.shared.state.borrow();
            let Some((first, last)) = inclusive_range(&range) else {
                return Ok(Vec::new());
            };
            let Some(last_index) = st.last_index() else {
                return Ok(Vec::new());
            };
            let lo = first.max(st.first_index);
            let hi = last.min(last_index);
            if lo > hi {
                return Ok(Vec::new());
            }
            let cache_first = st.cache_first();
            let mut groups: Vec<ReadGroup> = Vec::new();
            for index in lo..cache_first.min(hi + 1) {
                let loc = st.locs[(index - st.first_index) as usize];
                let end = loc.off + u64::from(loc.len);
                match groups.last_mut() {
                    Some(g)
                        if g.locs.last().is_some_and(|(_, l)| l.seg == loc.seg)
                            && loc.off >= g.end
                            && end - g.start <= MAX_READ_SPAN =>
                    {
                        g.end = end;
                        g.locs.push((index, loc));
                    }
                    _ => {
                        let seg = st.segments.get(&loc.seg).ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::NotFound,
                                format!("raft log: no segment holds entry {index}"),
                            )
                        })?;
                        groups.push(ReadGroup {
                            file: seg.file.clone(),
                            path: seg.path.clone(),
                            start: loc.off,
                            end,
                            locs: vec![(index, loc)],
                        });
                    }
                }
            }
            let cached: Vec<Entry> = (lo.max(cache_first)..=hi)
                .map(|i| st.cache[(i - cache_first) as usize].clone())
                .collect();
            (groups, cached)
        };

        let mut out = Vec::with_capacity(cached.len());
        for g in groups {
            let data = g
                .file
                .read_at(g.start, (g.end - g.start) as usize)
                .await
                .map_err(|e| io::Error::from(io_err("read", &g.path)(e)))?;
            for (index, loc) in g.locs {
                let at = (loc.off - g.start) as usize;
                let bad = |detail: String| {
                    io::Error::from(LogStoreError::MidLogCorruption {
                        path: g.path.clone(),
                        offset: loc.off,
                        detail,
                    })
                };
                let record = format::read_record(&data, at)
                    .map_err(|e| bad(format!("entry {index}: {e:?}")))?;
                if record.kind != format::KIND_ENTRY
                    || format::entry_index(record.payload) != Some(index)
                {
                    return Err(bad(format!("record is not entry {index}")));
                }
                out.push(format::decode_entry(record.payload).map_err(bad)?);
            }
        }
        out.extend(cached);
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.borrow().meta.vote)
    }
}

/// What recovery rebuilt.
struct Recovered {
    first_index: u64,
    locs: VecDeque<Loc>,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    last_entry: Option<LogId>,
    committed: Option<LogId>,
}

/// Replays records in file order, checking that indexes follow each other.
struct Recovery {
    state: State,
    purged: Option<u64>,
    expected_first: u64,
    /// Last entry index seen in any segment (including purged ones), after TRUNCATE records.
    raw_last: Option<u64>,
    live_started: bool,
    seg_first: Option<u64>,
    /// Last entry of the segment being replayed (purged or not), after TRUNCATE records.
    seg_last: Option<u64>,
    committed: Option<LogId>,
}

impl Recovery {
    fn new(meta: &MetaState, opts: DiskLogOptions) -> Self {
        let state = State {
            opts,
            raft_dir: PathBuf::new(),
            segments: BTreeMap::new(),
            first_index: 0,
            locs: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            last_entry: None,
            meta: meta.clone(),
            meta_seq: 0,
            committed: None,
            committed_on_disk: None,
            pending: Pending::default(),
            flusher_running: false,
            poisoned: None,
            closed: false,
        };
        Self {
            state,
            purged: meta.purged.map(|p| p.index()),
            expected_first: meta.expected_first(),
            raw_last: None,
            live_started: false,
            seg_first: None,
            seg_last: None,
            committed: meta.committed,
        }
    }

    fn begin_segment(&mut self, path: &Path, first: u64) -> Result<(), LogStoreError> {
        let inconsistent = |detail: String| LogStoreError::Inconsistent {
            path: path.to_path_buf(),
            offset: 0,
            detail,
        };
        match self.raw_last {
            // A gap is fine only where everything before `first` is purged (a purge that
            // crashed before removing old segments).
            Some(l) if first != l + 1 && first > self.purged.map_or(0, |p| p + 1) => {
                return Err(inconsistent(format!(
                    "segment starts at index {first} but the previous one ends at {l}"
                )));
            }
            None if first > self.expected_first => {
                return Err(inconsistent(format!(
                    "the log should start at index {} but its first segment starts at {first}; \
                     entries are missing",
                    self.expected_first
                )));
            }
            _ => {}
        }
        self.seg_first = Some(first);
        self.seg_last = None;
        Ok(())
    }

    fn apply(
        &mut self,
        path: &Path,
        seg_first: u64,
        off: u64,
        record: Record<'_>,
    ) -> Result<(), LogStoreError> {
        let inconsistent = |detail: String| LogStoreError::Inconsistent {
            path: path.to_path_buf(),
            offset: off,
            detail,
        };
        match record.kind {
            format::KIND_ENTRY => {
                let index = format::entry_index(record.payload)
                    .ok_or_else(|| inconsistent("entry record without index".to_string()))?;
                if self.seg_first.take().is_some() {
                    if index != seg_first {
                        return Err(inconsistent(format!(
                            "first entry is {index}, the segment starts at {seg_first}"
                        )));
                    }
                } else if self.raw_last.map(|l| l + 1) != Some(index) {
                    return Err(inconsistent(format!(
                        "entry {index} follows entry {:?}",
                        self.raw_last
                    )));
                }
                self.raw_last = Some(index);
                self.seg_last = Some(index);
                if self.purged.is_some_and(|p| index <= p) {
                    return Ok(());
                }
                if !self.live_started {
                    if index != self.expected_first {
                        return Err(inconsistent(format!(
                            "first live entry is {index}, expected {}",
                            self.expected_first
                        )));
                    }
                    self.live_started = true;
                }
                let entry = format::decode_entry(record.payload).map_err(|detail| {
                    LogStoreError::MidLogCorruption {
                        path: path.to_path_buf(),
                        offset: off,
                        detail: format!("entry {index} does not decode: {detail}"),
                    }
                })?;
                let loc = Loc {
                    seg: seg_first,
                    off,
                    len: record.total_len() as u32,
                };
                self.state.push(loc, entry);
                self.state.evict();
            }
            format::KIND_TRUNCATE => {
                let last = format::decode_log_id(record.payload)
                    .map_err(|e| inconsistent(format!("truncate record: {e}")))?;
                let keep_below = last.map_or(0, |l| l.index() + 1);
                let cut = |l: Option<u64>| match l {
                    Some(l) if l >= keep_below => keep_below.checked_sub(1),
                    other => other,
                };
                self.raw_last = cut(self.raw_last);
                self.seg_last = cut(self.seg_last);
                self.state.truncate_mem(keep_below, last);
            }
            format::KIND_COMMITTED => {
                let c = format::decode_log_id(record.payload)
                    .map_err(|e| inconsistent(format!("committed record: {e}")))?;
                self.committed = self.committed.max(c);
            }
            other => return Err(inconsistent(format!("unexpected record kind {other}"))),
        }
        Ok(())
    }

    fn finish(self, raft_dir: &Path) -> Result<Recovered, LogStoreError> {
        let st = self.state;
        if let Some(c) = self.committed {
            let last_known = st.last_index().max(self.purged);
            if last_known.is_none_or(|l| c.index() > l) {
                return Err(LogStoreError::CommittedMissing {
                    dir: raft_dir.to_path_buf(),
                    committed: c.index(),
                    last: last_known.unwrap_or(0),
                });
            }
        }
        Ok(Recovered {
            first_index: st.first_index,
            locs: st.locs,
            cache: st.cache,
            cache_bytes: st.cache_bytes,
            last_entry: st.last_entry,
            committed: self.committed,
        })
    }
}

/// Checks one segment file and replays its records into `rec`. Returns the segment to keep, or
/// `None` when it was an interrupted segment start and got removed.
async fn recover_segment(
    rec: &mut Recovery,
    dir: &Directory,
    raft_dir: &Path,
    name_index: u64,
    path: PathBuf,
    is_last: bool,
) -> Result<Option<(u64, Segment)>, LogStoreError> {
    let file = open_rw(&path, false).await?;
    let bytes = read_all(&file, &path).await?;
    let scan = match format::scan_segment(&bytes) {
        Ok(scan) => scan,
        Err(HeaderError::Version(found)) => {
            return Err(LogStoreError::UnsupportedVersion {
                path,
                found,
                supported: format::FORMAT_VERSION,
            })
        }
        Err(e) => {
            if is_last && format::find_batch_after(&bytes, 0, format::MIN_BLOCK).is_none() {
                // Headers are made durable before the first batch goes in, so a bad
                // header with no batch behind it is an interrupted segment start.
                log::warn!(
                    "raft log: removing {} (bad header {e:?}, no batches): interrupted segment start",
                    path.display()
                );
                remove_file(file, &path, dir, raft_dir).await?;
                return Ok(None);
            }
            return Err(LogStoreError::MidLogCorruption {
                path,
                offset: 0,
                detail: format!("segment header unreadable ({e:?})"),
            });
        }
    };
    if scan.header.first_index != name_index {
        return Err(LogStoreError::Inconsistent {
            path,
            offset: 0,
            detail: format!(
                "header says the segment starts at index {}",
                scan.header.first_index
            ),
        });
    }
    match scan.end {
        ScanEnd::Corrupt { at, later } => {
            return Err(LogStoreError::MidLogCorruption {
                path,
                offset: at,
                detail: format!(
                    "the batch there does not check, yet a valid batch follows at byte {later}"
                ),
            })
        }
        ScanEnd::Torn { at } if !is_last => {
            return Err(LogStoreError::MidLogCorruption {
                path,
                offset: at,
                detail: "the batch there does not check and newer segments follow".to_string(),
            })
        }
        _ => {}
    }
    if is_last && scan.batches.is_empty() {
        log::warn!(
            "raft log: removing {} (no complete batch): interrupted segment start",
            path.display()
        );
        remove_file(file, &path, dir, raft_dir).await?;
        return Ok(None);
    }
    rec.begin_segment(&path, scan.header.first_index)?;
    for batch in &scan.batches {
        for &(off, record) in &batch.records {
            rec.apply(&path, scan.header.first_index, off as u64, record)?;
        }
    }
    let end = match scan.end {
        ScanEnd::Clean { next } => next,
        // Refused above.
        ScanEnd::Corrupt { at, .. } => at,
        ScanEnd::Torn { at } => {
            log::error!(
                "raft log: {}: torn or corrupt tail at byte {at}: cutting {} bytes after \
                 the last complete batch (an append that never finished its fsync)",
                path.display(),
                bytes.len() as u64 - at
            );
            file.truncate(at)
                .await
                .map_err(io_err("truncate torn tail of", &path))?;
            file.fdatasync()
                .await
                .map_err(io_err("sync after truncating", &path))?;
            at
        }
    };
    Ok(Some((
        scan.header.first_index,
        Segment {
            path,
            file: Rc::new(file),
            block: scan.header.block,
            end,
            last_entry: rec.seg_last,
        },
    )))
}

fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Gives the lock file a block of real data. Runs on the blocking-thread pool, before the first
/// DMA open of the store.
///
/// glommio decides once per device and thread whether io_uring polling works, by reading the
/// first block of the first DMA file opened there. On an empty file that read "succeeds" without
/// touching the device, polling is wrongly switched on, and every later DMA read on the device
/// fails with `EOPNOTSUPP`. Opening this file first, with a block on disk, makes the probe real.
fn prepare_lock_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt;

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let block = format::MIN_BLOCK as usize;
    if file.metadata()?.len() < block as u64 {
        let mut text = b"muster raft log: the process holding flock(LOCK_EX) on this file owns the directory\n"
            .to_vec();
        text.resize(block, b'\n');
        file.write_all_at(&text, 0)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Runs on the blocking-thread pool.
fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

async fn open_rw(path: &Path, create: bool) -> Result<DmaFile, LogStoreError> {
    // Read+write even for reading: glommio's io-poll probe misfires on read-only DMA files.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(io_err("open", path))
}

async fn remove_file(
    file: DmaFile,
    path: &Path,
    dir: &Directory,
    raft_dir: &Path,
) -> Result<(), LogStoreError> {
    file.close().await.map_err(io_err("close", path))?;
    glommio::io::remove(path)
        .await
        .map_err(io_err("remove", path))?;
    dir.sync().await.map_err(io_err("sync directory", raft_dir))
}

async fn read_all(file: &DmaFile, path: &Path) -> Result<Vec<u8>, LogStoreError> {
    let size = file.file_size().await.map_err(io_err("stat", path))?;
    let mut out = Vec::with_capacity(size as usize);
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(MAX_READ_SPAN);
        let chunk = file
            .read_at_aligned(pos, file.align_up(want) as usize)
            .await
            .map_err(io_err("read", path))?;
        let take = (chunk.len() as u64).min(size - pos) as usize;
        if take == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..take]);
        pos += take as u64;
    }
    Ok(out)
}

/// The newest valid meta slot; `None` when the file holds no slot at all.
async fn read_meta(file: &DmaFile, path: &Path) -> Result<Option<(u64, MetaState)>, LogStoreError> {
    let bytes = read_all(file, path).await?;
    let slot_len = format::META_SLOT_LEN as usize;
    let mut best: Option<(u64, MetaState)> = None;
    let mut damaged = Vec::new();
    for slot in bytes.chunks(slot_len).take(2) {
        match format::decode_meta_slot(slot) {
            Ok((seq, meta)) => {
                if best.as_ref().is_none_or(|(s, _)| seq > *s) {
                    best = Some((seq, meta));
                }
            }
            Err(SlotError::Version(found)) => {
                return Err(LogStoreError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: format::FORMAT_VERSION,
                })
            }
            Err(SlotError::Empty) => {}
            Err(SlotError::Damaged(d)) => damaged.push(d),
        }
    }
    match (&best, damaged.is_empty()) {
        (Some(_), false) => log::warn!(
            "raft log: {}: ignoring a damaged meta slot ({}); an update was interrupted",
            path.display(),
            damaged.join(", ")
        ),
        (None, false) => {
            return Err(LogStoreError::CorruptMeta {
                path: path.to_path_buf(),
                detail: damaged.join(", "),
            })
        }
        _ => {}
    }
    Ok(best)
}

/// Writes the first meta record of a new log.
async fn init_meta(
    file: &DmaFile,
    dir: &Directory,
    path: &Path,
    raft_dir: &Path,
) -> Result<(), LogStoreError> {
    let slot = format::encode_meta_slot(1, &MetaState::default())
        .map_err(|e| LogStoreError::Encode(e.to_string()))?;
    let len = 2 * format::META_SLOT_LEN as usize;
    let mut buf = file.alloc_dma_buffer(len);
    let bytes = buf.as_bytes_mut();
    bytes.fill(0);
    let at = format::META_SLOT_LEN as usize;
    bytes[at..at + slot.len()].copy_from_slice(&slot);
    file.write_at(buf, 0).await.map_err(io_err("write", path))?;
    file.fdatasync().await.map_err(io_err("fdatasync", path))?;
    dir.sync().await.map_err(io_err("sync directory", raft_dir))
}
