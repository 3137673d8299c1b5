//! openraft's state machine for Muster: bookkeeping of applied log ids and membership here,
//! application data delegated to an [`Applier`].
//!
//! Snapshot data is a whole snapshot file as [`super::snapshot`] lays it out (checksummed header,
//! metadata, the applier's image). With a [`SnapshotStore`] (durable servers) every snapshot built
//! or installed is written to disk before openraft hears of it, so the log is never purged behind
//! a snapshot that is not durable; without one (`-dev`) the newest is kept in memory.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use muster_shards::command::{CommandResult, Proposal};
use openraft::entry::RaftEntry;
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::snapshot::{self, SnapshotStore};
use super::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use super::{Applier, ExportJob};

/// Snapshot payload handed to openraft: a whole snapshot file.
pub type SnapshotData = Vec<u8>;

type MusterSnapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

#[derive(Default)]
struct SmState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Newest snapshot, in memory (no store) or as its metadata (the file holds the data).
    current_snapshot: Option<MusterSnapshot>,
    current_meta: Option<SnapshotMeta>,
}

struct Shared<A> {
    applier: A,
    store: Option<Rc<SnapshotStore>>,
    state: RefCell<SmState>,
}

/// Raft state machine over an [`Applier`]. Clones share state.
pub struct MusterStateMachine<A: Applier> {
    shared: Rc<Shared<A>>,
}

impl<A: Applier> Clone for MusterStateMachine<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<A: Applier> MusterStateMachine<A> {
    /// A state machine whose snapshots live in memory (`-dev`, tests).
    pub fn new(applier: A) -> Self {
        Self::with_store(applier, None, None)
    }

    /// A state machine writing its snapshots to `store`. `restored`: the metadata of the
    /// snapshot whose image the applier already holds (loaded at start), so openraft resumes
    /// from there and replays only the log after it.
    pub fn with_store(
        applier: A,
        store: Option<Rc<SnapshotStore>>,
        restored: Option<SnapshotMeta>,
    ) -> Self {
        let state = SmState {
            last_applied: restored.as_ref().and_then(|m| m.last_log_id),
            last_membership: restored
                .as_ref()
                .map(|m| m.last_membership.clone())
                .unwrap_or_default(),
            current_snapshot: None,
            current_meta: restored,
        };
        Self {
            shared: Rc::new(Shared {
                applier,
                store,
                state: RefCell::new(state),
            }),
        }
    }

    pub fn applier(&self) -> &A {
        &self.shared.applier
    }

    /// Index of the last applied entry (0 before anything was applied).
    pub fn last_applied_index(&self) -> u64 {
        self.shared
            .state
            .borrow()
            .last_applied
            .map_or(0, |id| id.index())
    }
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Builds a snapshot from an image exported when the builder was made.
pub struct MusterSnapshotBuilder<A: Applier> {
    shared: Rc<Shared<A>>,
    meta: SnapshotMeta,
    job: Option<ExportJob>,
    /// How long applies were held while the image was taken.
    export_time: std::time::Duration,
}

impl<A: Applier> MusterSnapshotBuilder<A> {
    /// Serializes the image and the file around it on a blocking thread: the reactor (and the
    /// applies waiting on it) only paid for taking the image.
    pub async fn encode(&mut self) -> Result<Vec<u8>, io::Error> {
        let job = self
            .job
            .take()
            .ok_or_else(|| io::Error::other("snapshot builder used twice"))?;
        let meta = self.meta.clone();
        glommio::executor()
            .spawn_blocking(move || snapshot::encode(&meta, &job()))
            .await
            .map_err(|e| invalid_data(e.to_string()))
    }
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for MusterSnapshotBuilder<A> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<MusterSnapshot, io::Error> {
        let started = std::time::Instant::now();
        let mut data = self.encode().await?;
        if let Some(store) = &self.shared.store {
            let (stored, back) = store.save(data).await.map_err(io::Error::other)?;
            log::info!(
                "snapshot at index {} written to {} ({} bytes; image taken in {:.1} ms, \
                 encoded and written in {:.1} ms)",
                self.meta.last_log_id.map_or(0, |id| id.index()),
                stored.path.display(),
                stored.size,
                self.export_time.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
            data = back;
        }
        let snapshot = MusterSnapshot {
            meta: self.meta.clone(),
            snapshot: data,
        };
        self.shared.record_current(&snapshot);
        Ok(snapshot)
    }
}

impl<A: Applier> Shared<A> {
    fn record_current(&self, snapshot: &MusterSnapshot) {
        let mut state = self.state.borrow_mut();
        // A concurrent install may already have moved past this build.
        let newer_exists = state
            .current_meta
            .as_ref()
            .is_some_and(|cur| cur.last_log_id > snapshot.meta.last_log_id);
        if newer_exists {
            return;
        }
        state.current_meta = Some(snapshot.meta.clone());
        // With a store the file is the copy; memory keeps only the metadata.
        state.current_snapshot = self.store.is_none().then(|| snapshot.clone());
    }
}

impl<A: Applier> MusterStateMachine<A> {
    /// Takes the image between two applies: openraft keeps applying while a builder runs on
    /// another task, so only there does the image match `last_applied` exactly. Outside
    /// openraft's own snapshots (`GET /v1/snapshot`), call it through
    /// `Raft::with_state_machine`, which runs on the state machine task.
    pub async fn builder(&self) -> MusterSnapshotBuilder<A> {
        let meta = {
            let state = self.shared.state.borrow();
            let last = state.last_applied;
            SnapshotMeta {
                last_log_id: last,
                last_membership: state.last_membership.clone(),
            }
        };
        let started = std::time::Instant::now();
        let job = self.shared.applier.export().await;
        MusterSnapshotBuilder {
            shared: self.shared.clone(),
            meta,
            job: Some(job),
            export_time: started.elapsed(),
        }
    }
}

impl<A: Applier> RaftStateMachine<TypeConfig> for MusterStateMachine<A> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = MusterSnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.shared.state.borrow();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch: Vec<(u64, Proposal)> = Vec::new();
        // One slot per entry, in log order; `true` marks a slot answered by the applier.
        let mut replies: Vec<(Option<ApplyResponder<TypeConfig>>, bool)> = Vec::new();
        let mut last_log_id = None;
        let mut last_membership = None;

        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            match entry.payload {
                EntryPayload::Blank => replies.push((responder, false)),
                EntryPayload::Normal(data) => {
                    batch.push((log_id.index(), data.0));
                    replies.push((responder, true));
                }
                EntryPayload::Membership(membership) => {
                    last_membership = Some(StoredMembership::new(Some(log_id), membership));
                    replies.push((responder, false));
                }
            }
            last_log_id = Some(log_id);
        }
        let Some(last_log_id) = last_log_id else {
            return Ok(());
        };

        let expected = batch.len();
        log::trace!("applying {expected} entries up to {last_log_id}");
        let results = if batch.is_empty() {
            Vec::new()
        } else {
            self.shared.applier.apply(batch).await
        };
        if results.len() != expected {
            return Err(io::Error::other(format!(
                "applier returned {} results for {expected} entries",
                results.len()
            )));
        }

        {
            let mut state = self.shared.state.borrow_mut();
            state.last_applied = Some(last_log_id);
            if let Some(m) = last_membership {
                state.last_membership = m;
            }
        }

        // Answer in log order only after the whole batch is applied and recorded.
        let mut results = results.into_iter();
        for (responder, from_applier) in replies {
            let result = if from_applier {
                results.next().unwrap_or_default()
            } else {
                CommandResult::default()
            };
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MusterSnapshotBuilder<A> {
        self.builder().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let (header, image) =
            snapshot::decode(&snapshot).map_err(|e| invalid_data(e.to_string()))?;
        if header.last_log_id != meta.last_log_id || header.last_membership != meta.last_membership
        {
            return Err(invalid_data(format!(
                "snapshot header {:?} does not match its metadata {:?}",
                header.last_log_id, meta.last_log_id
            )));
        }
        self.shared
            .applier
            .import(image.to_vec())
            .await
            .map_err(|e| io::Error::other(format!("applier rejected snapshot: {e}")))?;
        {
            let mut state = self.shared.state.borrow_mut();
            state.last_applied = meta.last_log_id;
            state.last_membership = meta.last_membership.clone();
        }
        let mut snapshot = snapshot;
        if let Some(store) = &self.shared.store {
            snapshot = store.save(snapshot).await.map_err(io::Error::other)?.1;
        }
        self.shared.record_current(&MusterSnapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<MusterSnapshot>, io::Error> {
        let (mem, meta) = {
            let state = self.shared.state.borrow();
            (state.current_snapshot.clone(), state.current_meta.clone())
        };
        if mem.is_some() {
            return Ok(mem);
        }
        let (Some(store), Some(meta)) = (&self.shared.store, meta) else {
            return Ok(None);
        };
        let Some(data) = store.read_newest().await.map_err(io::Error::other)? else {
            return Ok(None);
        };
        Ok(Some(MusterSnapshot {
            meta,
            snapshot: data,
        }))
    }
}
