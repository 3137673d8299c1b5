use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use muster_shards::command::{Command, CommandResult, Proposal};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use openraft_rt::AsyncRuntime;

use super::*;

/// Applier that records every applied entry; its image is the JSON of that record.
#[derive(Clone, Default)]
struct RecordingApplier {
    seen: Rc<RefCell<Vec<(u64, Proposal)>>>,
}

impl Applier for RecordingApplier {
    fn apply(&self, batch: Vec<(u64, Proposal)>) -> LocalBoxFuture<'static, Vec<CommandResult>> {
        let n = batch.len();
        self.seen.borrow_mut().extend(batch);
        Box::pin(async move { vec![CommandResult::default(); n] })
    }

    fn export(&self) -> LocalBoxFuture<'static, ExportJob> {
        let image = simd_json::serde::to_vec(&*self.seen.borrow()).expect("encode image");
        Box::pin(async move { Box::new(move || image) as ExportJob })
    }

    fn import(&self, mut image: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>> {
        let seen = self.seen.clone();
        Box::pin(async move {
            let entries: Vec<(u64, Proposal)> =
                simd_json::serde::from_slice(&mut image).map_err(|e| e.to_string())?;
            *seen.borrow_mut() = entries;
            Ok(())
        })
    }
}

struct MemStoreBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, MusterStateMachine<RecordingApplier>>
    for MemStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<((), MemLogStore, MusterStateMachine<RecordingApplier>), StorageError<TypeConfig>>
    {
        Ok((
            (),
            MemLogStore::new(),
            MusterStateMachine::new(RecordingApplier::default()),
        ))
    }
}

#[test]
fn storage_conformance_suite() {
    GlommioRuntime::run(Suite::test_all(MemStoreBuilder)).expect("openraft storage suite");
}

/// Each build gets a fresh data directory, removed when the guard drops.
struct DiskStoreBuilder;

impl StoreBuilder<TypeConfig, DiskLogStore, MusterStateMachine<RecordingApplier>, tempfile::TempDir>
    for DiskStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            DiskLogStore,
            MusterStateMachine<RecordingApplier>,
        ),
        StorageError<TypeConfig>,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DiskLogStore::open(dir.path(), DiskLogOptions::default())
            .await
            .expect("open disk log");
        Ok((
            dir,
            store,
            MusterStateMachine::new(RecordingApplier::default()),
        ))
    }
}

#[test]
fn disk_log_storage_conformance_suite() {
    GlommioRuntime::run(Suite::test_all(DiskStoreBuilder)).expect("openraft storage suite");
}

fn dev_node() -> MusterNode {
    MusterNode {
        name: "dev".to_string(),
        id: "00000000-0000-0000-0000-000000000001".to_string(),
        addr: "127.0.0.1:8300".to_string(),
    }
}

fn noop(at_ms: u64) -> Proposal {
    Proposal {
        at_ms,
        cmd: Command::Noop,
    }
}

/// Polls `cond` every few ms until it holds; a generous deadline turns a hang into a failure.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        GlommioRuntime::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn single_voter_applies_writes_in_order() {
    GlommioRuntime::run(async {
        let applier = RecordingApplier::default();
        let server = RaftServer::start_single(
            1,
            dev_node(),
            MusterStateMachine::new(applier.clone()),
            MemLogStore::new(),
            RaftConfigKnobs::default(),
        )
        .await
        .expect("start single voter");

        assert!(server.is_leader());
        assert_eq!(server.leader(), Some((1, dev_node())));
        assert_eq!(server.voters(), vec![(1, dev_node(), true)]);
        assert_eq!(server.last_contact_ms(), 0);

        const N: u64 = 1_000;
        let mut indexes = Vec::with_capacity(N as usize);
        let started = Instant::now();
        for i in 0..N {
            let (index, result) = server.write(noop(i)).await.expect("write");
            assert_eq!(result, CommandResult::default());
            indexes.push(index);
        }
        let elapsed = started.elapsed();
        println!(
            "single voter, in-memory log: {N} sequential writes in {elapsed:?}, mean {:.1} µs/write",
            elapsed.as_secs_f64() * 1e6 / N as f64
        );

        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "log indexes must strictly increase"
        );
        {
            let seen = applier.seen.borrow();
            let seen_indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
            assert_eq!(
                seen_indexes, indexes,
                "applier saw other indexes than the writers"
            );
            let seen_order: Vec<u64> = seen.iter().map(|(_, p)| p.at_ms).collect();
            assert_eq!(
                seen_order,
                (0..N).collect::<Vec<_>>(),
                "applier saw proposals out of order"
            );
        }

        server
            .ensure_linearizable()
            .await
            .expect("read index on the leader");
        let stats = server.stats();
        assert_eq!(stats.state, "Leader");
        assert!(stats.applied_index >= *indexes.last().unwrap());
        assert!(stats.commit_index >= stats.applied_index);
        assert!(stats.last_log_index >= stats.commit_index);

        server.shutdown().await;
        assert!(matches!(
            server.write(noop(N)).await,
            Err(WriteError::Fatal(_))
        ));
    });
}

#[test]
fn single_voter_on_the_disk_log_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    const N: u64 = 300;
    let (applied_before, last_before) = GlommioRuntime::run(async {
        let log = DiskLogStore::open(dir.path(), DiskLogOptions::default())
            .await
            .expect("open disk log");
        let applier = RecordingApplier::default();
        let server = RaftServer::start_single(
            1,
            dev_node(),
            MusterStateMachine::new(applier.clone()),
            log.clone(),
            RaftConfigKnobs::default(),
        )
        .await
        .expect("start single voter");
        let started = Instant::now();
        let mut last = 0;
        for i in 0..N {
            last = server.write(noop(i)).await.expect("write").0;
        }
        let elapsed = started.elapsed();
        println!(
            "single voter, disk log: {N} sequential writes in {elapsed:?}, mean {:.1} µs/write",
            elapsed.as_secs_f64() * 1e6 / N as f64
        );
        let term = server.stats().term;
        server.shutdown().await;
        log.close().await.expect("close log");
        assert!(term >= 1);
        let applied: Vec<u64> = applier.seen.borrow().iter().map(|(_, p)| p.at_ms).collect();
        (applied, last)
    });
    assert_eq!(applied_before, (0..N).collect::<Vec<_>>());

    GlommioRuntime::run(async {
        let log = DiskLogStore::open(dir.path(), DiskLogOptions::default())
            .await
            .expect("reopen disk log");
        let applier = RecordingApplier::default();
        let server = RaftServer::start_single(
            1,
            dev_node(),
            MusterStateMachine::new(applier.clone()),
            log.clone(),
            RaftConfigKnobs::default(),
        )
        .await
        .expect("restart single voter");
        // The committed entries are applied again from the log (no snapshot was taken).
        eventually("the log replayed into the applier", || {
            applier.seen.borrow().len() as u64 >= N
        })
        .await;
        let replayed: Vec<u64> = applier.seen.borrow().iter().map(|(_, p)| p.at_ms).collect();
        assert_eq!(replayed, (0..N).collect::<Vec<_>>());
        let (index, _) = server.write(noop(N)).await.expect("write after restart");
        assert!(index > last_before, "{index} must follow {last_before}");
        server.shutdown().await;
        log.close().await.expect("close log");
    });
}

#[test]
fn snapshots_bound_the_in_memory_log() {
    GlommioRuntime::run(async {
        let applier = RecordingApplier::default();
        let log = MemLogStore::new();
        let knobs = RaftConfigKnobs {
            snapshot_logs: 100,
            ..RaftConfigKnobs::default()
        };
        let server = RaftServer::start_single(
            1,
            dev_node(),
            MusterStateMachine::new(applier.clone()),
            log.clone(),
            knobs,
        )
        .await
        .expect("start single voter");

        // openraft keeps 1,000 entries behind the snapshot; write enough to purge past that.
        const N: u64 = 1_500;
        let mut last = 0;
        for i in 0..N {
            last = server.write(noop(i)).await.expect("write").0;
        }

        eventually("a snapshot near the log head", || {
            server.stats().last_snapshot_index + 200 >= last
        })
        .await;
        eventually("the log purged behind the snapshot", || {
            (log.len() as u64) < N
        })
        .await;
        assert_eq!(applier.seen.borrow().len() as u64, N);

        server.shutdown().await;
    });
}
