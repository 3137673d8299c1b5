//! Durable log: restart, recovery and corruption tests, a model check against [`MemLogStore`],
//! and an (unasserted) append+fsync latency printout. openraft's conformance suite runs against
//! both stores in `raft/tests.rs`.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use muster_shards::command::{Command, KvOp, KvVerb, Proposal};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::LeaderIdOf;
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use openraft::RaftLogReader;
use openraft_rt::AsyncRuntime;

use super::*;
use crate::raft::types::{Entry, LogId, TypeConfig, Vote};
use crate::raft::{GlommioRuntime, LoggedProposal};

fn run<F: Future>(f: F) -> F::Output {
    GlommioRuntime::run(f)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderIdOf::<TypeConfig>::new_committed(term, 1), index)
}

/// A KV write of a typical size (~120 bytes encoded).
fn entry(term: u64, index: u64) -> Entry {
    let mut op = KvOp::new(KvVerb::Set, format!("service/web/config/{index}"));
    op.value = Bytes::from(vec![b'v'; 64]);
    Entry::new_normal(
        log_id(term, index),
        LoggedProposal(Proposal {
            at_ms: index,
            cmd: Command::Kv(op),
        }),
    )
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

/// Small segments and a tiny cache, so rolling, deletion and disk reads all happen.
fn small_opts() -> DiskLogOptions {
    DiskLogOptions {
        segment_bytes: 16 << 10,
        cache_entries: 8,
        cache_bytes: 1 << 20,
    }
}

/// Appends and waits for the flush callback, as openraft's own test helper does.
async fn append<S: RaftLogStorage<TypeConfig>>(store: &mut S, batch: Vec<Entry>) -> io::Result<()> {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(batch, IOFlushed::signal(tx)).await?;
    rx.await
        .map_err(|_| io::Error::other("flush callback dropped"))?
}

async fn read_all<S: RaftLogStorage<TypeConfig>>(store: &mut S) -> Vec<Entry> {
    store
        .get_log_reader()
        .await
        .try_get_log_entries(..)
        .await
        .expect("read log")
}

async fn read_vote<S: RaftLogStorage<TypeConfig>>(store: &mut S) -> Option<Vote> {
    store
        .get_log_reader()
        .await
        .read_vote()
        .await
        .expect("read vote")
}

async fn open(dir: &Path, opts: DiskLogOptions) -> DiskLogStore {
    DiskLogStore::open(dir, opts).await.expect("open log")
}

/// Everything openraft can observe of a log.
#[derive(Debug, PartialEq)]
struct Observed {
    state: LogState<TypeConfig>,
    entries: Vec<Entry>,
    vote: Option<Vote>,
}

async fn observe<S: RaftLogStorage<TypeConfig>>(store: &mut S) -> Observed {
    Observed {
        state: store.get_log_state().await.expect("log state"),
        entries: read_all(store).await,
        vote: read_vote(store).await,
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("raft"))
        .expect("list raft dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read segment");
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).expect("write segment");
}

#[test]
fn inclusive_range_handles_every_bound_kind() {
    assert_eq!(inclusive_range(&(3..7)), Some((3, 6)));
    assert_eq!(inclusive_range(&(3..=7)), Some((3, 7)));
    assert_eq!(inclusive_range(&(5..5)), None);
    assert_eq!(inclusive_range(&(..0)), None);
    assert_eq!(inclusive_range(&(9..)), Some((9, u64::MAX)));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 7..3;
    assert_eq!(inclusive_range(&reversed), None);
}

#[test]
fn reopen_restores_log_vote_purge_and_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), small_opts()).await;
        s.save_vote(&Vote::new(2, 1)).await.unwrap();
        let mut next = 0;
        for size in [1u64, 5, 64, 1, 3, 64, 17, 1, 64, 64, 2, 64, 64, 40] {
            append(&mut s, entries(2, next..=next + size - 1))
                .await
                .unwrap();
            next += size;
        }
        s.save_committed(Some(log_id(2, 300))).await.unwrap();
        append(&mut s, entries(2, next..=next + 9)).await.unwrap();
        next += 10;
        s.truncate_after(Some(log_id(2, next - 6))).await.unwrap();
        s.purge(log_id(2, 100)).await.unwrap();
        s.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        let before = observe(&mut s).await;
        assert_eq!(before.state.last_log_id, Some(log_id(2, next - 6)));
        assert_eq!(before.entries.first().map(|e| e.index()), Some(101));
        assert!(s.stats().segments > 2, "small segments should have rolled");
        assert!(s.stats().cached_entries <= 8);
        s.close().await.unwrap();
        drop(s);

        let mut s = open(dir.path(), small_opts()).await;
        assert_eq!(observe(&mut s).await, before);
        assert_eq!(s.read_committed().await.unwrap(), Some(log_id(2, 300)));

        // The log goes on where it stopped, and that survives another restart.
        let last = next - 6;
        append(&mut s, entries(3, last + 1..=last + 20))
            .await
            .unwrap();
        let before = observe(&mut s).await;
        s.close().await.unwrap();
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        assert_eq!(observe(&mut s).await, before);
    });
}

#[test]
fn appends_that_leave_a_hole_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), small_opts()).await;
        append(&mut s, entries(1, 0..=4)).await.unwrap();
        assert!(append(&mut s, entries(1, 6..=6)).await.is_err());
        assert!(append(&mut s, entries(1, 4..=4)).await.is_err());
        s.purge(log_id(1, 10)).await.unwrap();
        assert!(append(&mut s, entries(1, 5..=5)).await.is_err());
        append(&mut s, entries(1, 11..=11)).await.unwrap();
    });
}

#[test]
fn old_entries_are_read_back_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), small_opts()).await;
        let all = entries(4, 0..=499);
        for chunk in all.chunks(37) {
            append(&mut s, chunk.to_vec()).await.unwrap();
        }
        assert_eq!(s.stats().cached_entries, 8);
        let mut reader = s.get_log_reader().await;
        for (lo, hi) in [
            (0, 499),
            (0, 0),
            (17, 18),
            (36, 38),
            (250, 499),
            (490, 499),
            (495, 600),
        ] {
            let got = reader.try_get_log_entries(lo..=hi).await.unwrap();
            let want: Vec<Entry> = all
                .iter()
                .filter(|e| (lo..=hi).contains(&e.index()))
                .cloned()
                .collect();
            assert_eq!(got, want, "range {lo}..={hi}");
        }
    });
}

#[test]
fn cutting_the_last_record_at_every_byte_loses_only_that_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (at, end) = run(async {
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        append(&mut s, entries(1, 0..=9)).await.unwrap();
        append(&mut s, entries(1, 10..=10)).await.unwrap();
        s.close().await.unwrap();
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 1);
        let bytes = std::fs::read(&files[0]).unwrap();
        let scan = format::scan_segment(&bytes).unwrap();
        let last = scan.batches.last().expect("batches");
        (last.at, last.end)
    });
    let seg = segment_files(dir.path()).remove(0);
    let pristine = std::fs::read(&seg).unwrap();
    let full = entries(1, 0..=10);
    run(async {
        for cut in at..=end + 1 {
            std::fs::write(&seg, &pristine[..cut]).unwrap();
            let mut s = DiskLogStore::open(dir.path(), DiskLogOptions::default())
                .await
                .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let keep = if cut >= end { 11 } else { 10 };
            let got = read_all(&mut s).await;
            assert_eq!(got, full[..keep], "cut at byte {cut}");
            if cut == at + 20 {
                // The cut tail is gone for good: writing after it and reopening is clean.
                append(&mut s, entries(1, 10..=12)).await.unwrap();
                s.close().await.unwrap();
                let mut again = open(dir.path(), DiskLogOptions::default()).await;
                assert_eq!(read_all(&mut again).await.len(), 13);
                again.close().await.unwrap();
            }
            s.close().await.unwrap();
        }
    });
}

#[test]
fn a_flipped_byte_in_the_middle_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        for i in 0..=30 {
            append(&mut s, entries(1, i..=i)).await.unwrap();
        }
        s.close().await.unwrap();
    });
    let seg = segment_files(dir.path()).remove(0);
    let pristine = std::fs::read(&seg).unwrap();
    let scan = format::scan_segment(&pristine).unwrap();
    let middle = &scan.batches[15];
    let (rec_at, rec) = middle.records[0];
    let flip_at = rec_at + format::RECORD_HEADER_LEN + rec.payload.len() / 2;
    let last_at = scan.batches.last().unwrap().at;
    let middle_at = middle.at as u64;
    drop(scan);

    flip_byte(&seg, flip_at);
    run(async {
        match DiskLogStore::open(dir.path(), DiskLogOptions::default()).await {
            Err(LogStoreError::MidLogCorruption { offset, .. }) => assert_eq!(offset, middle_at),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a damaged middle record must refuse to open"),
        }
    });

    // The same damage in the last batch looks like a torn write: cut, entry 30 is gone.
    std::fs::write(&seg, &pristine).unwrap();
    flip_byte(&seg, last_at + 30);
    run(async {
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, 29))
        );
    });
}

#[test]
fn damage_in_an_older_segment_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), small_opts()).await;
        for i in 0..60 {
            append(&mut s, entries(1, i * 4..=i * 4 + 3)).await.unwrap();
        }
        s.close().await.unwrap();
    });
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let bytes = std::fs::read(&files[0]).unwrap();
    let last = format::scan_segment(&bytes)
        .unwrap()
        .batches
        .last()
        .unwrap()
        .end;
    flip_byte(&files[0], last - 3);
    run(async {
        let err = DiskLogStore::open(dir.path(), small_opts()).await.err();
        assert!(
            matches!(err, Some(LogStoreError::MidLogCorruption { .. })),
            "{err:?}"
        );
    });
}

#[test]
fn a_missing_segment_refuses_to_start() {
    for victim in ["first", "middle", "last"] {
        let dir = tempfile::tempdir().expect("temp dir");
        run(async {
            let mut s = open(dir.path(), small_opts()).await;
            for i in 0..60 {
                append(&mut s, entries(1, i * 4..=i * 4 + 3)).await.unwrap();
            }
            // Puts the committed id of the very last entry into meta.
            s.save_committed(Some(log_id(1, 239))).await.unwrap();
            s.purge(log_id(1, 2)).await.unwrap();
            s.close().await.unwrap();
        });
        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        let path = match victim {
            "first" => &files[0],
            "middle" => &files[files.len() / 2],
            _ => files.last().unwrap(),
        };
        std::fs::remove_file(path).unwrap();
        run(async {
            let err = DiskLogStore::open(dir.path(), small_opts()).await.err();
            match victim {
                "last" => assert!(
                    matches!(err, Some(LogStoreError::CommittedMissing { .. })),
                    "{victim}: {err:?}"
                ),
                _ => assert!(
                    matches!(err, Some(LogStoreError::Inconsistent { .. })),
                    "{victim}: {err:?}"
                ),
            }
        });
    }
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        append(&mut s, entries(1, 0..=3)).await.unwrap();
        s.save_vote(&Vote::new(1, 1)).await.unwrap();
        s.close().await.unwrap();
    });
    let seg = segment_files(dir.path()).remove(0);
    let meta = dir.path().join("raft").join("meta");
    let future = 99u32.to_le_bytes();

    let pristine = std::fs::read(&seg).unwrap();
    let mut patched = pristine.clone();
    patched[8..12].copy_from_slice(&future);
    std::fs::write(&seg, &patched).unwrap();
    run(async {
        match DiskLogStore::open(dir.path(), DiskLogOptions::default()).await {
            Err(e @ LogStoreError::UnsupportedVersion { found: 99, .. }) => {
                assert!(e.to_string().contains("version 99"), "{e}")
            }
            other => panic!("expected a version error, got {:?}", other.err()),
        }
    });
    std::fs::write(&seg, &pristine).unwrap();

    let mut bytes = std::fs::read(&meta).unwrap();
    for slot in [0, format::META_SLOT_LEN as usize] {
        bytes[slot + 8..slot + 12].copy_from_slice(&future);
    }
    std::fs::write(&meta, &bytes).unwrap();
    run(async {
        let err = DiskLogStore::open(dir.path(), DiskLogOptions::default())
            .await
            .err();
        assert!(
            matches!(
                err,
                Some(LogStoreError::UnsupportedVersion { found: 99, .. })
            ),
            "{err:?}"
        );
    });
}

#[test]
fn segments_that_outlive_a_purge_are_ignored_and_removed() {
    for purge_to in [20u64, 60] {
        let dir = tempfile::tempdir().expect("temp dir");
        run(async {
            let mut s = open(dir.path(), small_opts()).await;
            for i in 0..10 {
                append(&mut s, entries(1, i * 4..=i * 4 + 3)).await.unwrap();
            }
            s.close().await.unwrap();
        });
        let saved: Vec<(PathBuf, Vec<u8>)> = segment_files(dir.path())
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        run(async {
            let mut s = open(dir.path(), small_opts()).await;
            s.purge(log_id(1, purge_to)).await.unwrap();
            s.close().await.unwrap();
        });
        // As if the removals never reached the disk.
        for (path, bytes) in &saved {
            std::fs::write(path, bytes).unwrap();
        }
        run(async {
            let mut s = open(dir.path(), small_opts()).await;
            let state = s.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(log_id(1, purge_to)));
            let last = state.last_log_id.unwrap().index();
            assert_eq!(last, purge_to.max(39));
            let live: Vec<u64> = read_all(&mut s).await.iter().map(|e| e.index()).collect();
            assert_eq!(live, (purge_to + 1..=39).collect::<Vec<_>>());
            append(&mut s, entries(2, last + 1..=last + 5))
                .await
                .unwrap();
            let before = observe(&mut s).await;
            s.close().await.unwrap();
            let mut s = open(dir.path(), small_opts()).await;
            assert_eq!(observe(&mut s).await, before, "purge to {purge_to}");
        });
    }
}

#[test]
fn an_interrupted_segment_start_is_removed() {
    let mut header_only = vec![0u8; format::MIN_BLOCK as usize];
    header_only[..format::SEGMENT_HEADER_LEN].copy_from_slice(
        &format::SegmentHeader {
            first_index: 10,
            block: format::MIN_BLOCK,
        }
        .encode(),
    );
    for garbage in [Vec::new(), vec![0u8; 4096], vec![0x6bu8; 100], header_only] {
        let dir = tempfile::tempdir().expect("temp dir");
        run(async {
            let mut s = open(dir.path(), DiskLogOptions::default()).await;
            append(&mut s, entries(1, 0..=9)).await.unwrap();
            s.close().await.unwrap();
        });
        let extra = dir.path().join("raft").join(format!("seg-{:020}.log", 10));
        std::fs::write(&extra, &garbage).unwrap();
        run(async {
            let mut s = open(dir.path(), DiskLogOptions::default()).await;
            assert!(!extra.exists(), "{} bytes of garbage stayed", garbage.len());
            assert_eq!(read_all(&mut s).await, entries(1, 0..=9));
            append(&mut s, entries(1, 10..=10)).await.unwrap();
        });
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let first = open(dir.path(), DiskLogOptions::default()).await;
        let err = DiskLogStore::open(dir.path(), DiskLogOptions::default())
            .await
            .err();
        assert!(matches!(err, Some(LogStoreError::Locked { .. })), "{err:?}");
        first.close().await.unwrap();
        let _second = open(dir.path(), DiskLogOptions::default()).await;
    });
}

/// Random appends, truncations, purges, votes and restarts, checked against the in-memory store.
#[test]
fn matches_the_in_memory_model_across_restarts() {
    for seed in [7u64, 1_234, 99_991] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut rng = fastrand::Rng::with_seed(seed);
        run(async {
            let opts = DiskLogOptions {
                segment_bytes: 32 << 10,
                cache_entries: 16,
                cache_bytes: 1 << 20,
            };
            let mut disk = open(dir.path(), opts.clone()).await;
            let mut model = MemLogStore::new();
            let mut term = 1;
            for step in 0..250 {
                let state = model.get_log_state().await.unwrap();
                let last = state.last_log_id.map(|l| l.index());
                let first = state.last_purged_log_id.map_or(0, |p| p.index() + 1);
                match rng.u32(0..100) {
                    0..=54 => {
                        let next = last.map_or(0, |l| l + 1);
                        let n = if rng.bool() { 1 } else { rng.u64(1..40) };
                        let batch = entries(term, next..=next + n - 1);
                        append(&mut disk, batch.clone()).await.unwrap();
                        append(&mut model, batch).await.unwrap();
                    }
                    55..=64 => {
                        if let Some(last) = last.filter(|&l| l >= first) {
                            let keep = rng.u64(first..=last);
                            let id = read_all(&mut model)
                                .await
                                .into_iter()
                                .find(|e| e.index() == keep)
                                .map(|e| e.log_id());
                            disk.truncate_after(id).await.unwrap();
                            model.truncate_after(id).await.unwrap();
                            term += 1;
                        }
                    }
                    65..=74 => {
                        if let Some(last) = last.filter(|&l| l >= first) {
                            let upto = rng.u64(first..=last);
                            let id = read_all(&mut model)
                                .await
                                .into_iter()
                                .find(|e| e.index() == upto)
                                .map(|e| e.log_id())
                                .expect("entry to purge");
                            disk.purge(id).await.unwrap();
                            model.purge(id).await.unwrap();
                        }
                    }
                    75..=84 => {
                        let vote = Vote::new(term, rng.u64(1..4));
                        disk.save_vote(&vote).await.unwrap();
                        model.save_vote(&vote).await.unwrap();
                    }
                    _ => {
                        disk.close().await.unwrap();
                        disk = open(dir.path(), opts.clone()).await;
                    }
                }
                assert_eq!(
                    observe(&mut disk).await,
                    observe(&mut model).await,
                    "seed {seed}, step {step}"
                );
            }
        });
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Not asserted: prints what one group commit costs on this machine.
#[test]
fn append_fsync_latency_printout() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(async {
        let mut s = open(dir.path(), DiskLogOptions::default()).await;
        let mut next = 0;
        for (batch, rounds) in [(1u64, 300), (64, 100)] {
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let b = entries(1, next..=next + batch - 1);
                next += batch;
                let started = Instant::now();
                append(&mut s, b).await.unwrap();
                times.push(started.elapsed());
            }
            times.sort();
            let mean = times.iter().sum::<Duration>() / rounds as u32;
            println!(
                "disk log append+fdatasync, {batch:>2}-entry batches ({} B/entry): mean {:?}, p50 {:?}, p99 {:?}, {:.1} µs/entry",
                format::RECORD_HEADER_LEN + postcard::to_allocvec(&entry(1, 1)).unwrap().len() + 8,
                mean,
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                mean.as_secs_f64() * 1e6 / batch as f64
            );
        }
    });
}
