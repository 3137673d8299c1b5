//! openraft's state machine for Muster: bookkeeping of applied log ids and membership here,
//! application data delegated to an [`Applier`].
//!
//! Snapshot format (`Vec<u8>`): `[u32 LE header length][header][applier image]`, where the header
//! is the JSON-encoded [`SnapshotMeta`] (last log id, last membership) and the image is whatever
//! [`Applier::export`] returned. The header lets a snapshot file be validated on its own.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use muster_shards::command::{CommandResult, Proposal};
use openraft::entry::RaftEntry;
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use super::Applier;

/// Snapshot payload handed to openraft; see the module docs for the layout.
pub type SnapshotData = Vec<u8>;

type MusterSnapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

#[derive(Default)]
struct SmState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    current_snapshot: Option<MusterSnapshot>,
}

struct Shared<A> {
    applier: A,
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
    pub fn new(applier: A) -> Self {
        Self {
            shared: Rc::new(Shared {
                applier,
                state: RefCell::new(SmState::default()),
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

/// Serialises the snapshot header and appends the applier image.
pub fn encode_snapshot(meta: &SnapshotMeta, image: &[u8]) -> Result<SnapshotData, io::Error> {
    let header = simd_json::serde::to_vec(meta)
        .map_err(|e| invalid_data(format!("cannot encode snapshot header: {e}")))?;
    let header_len = u32::try_from(header.len())
        .map_err(|_| invalid_data("snapshot header larger than 4 GiB"))?;
    let mut out = Vec::with_capacity(4 + header.len() + image.len());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(image);
    Ok(out)
}

/// Splits a snapshot into its header and (a borrow of) the applier image.
pub fn decode_snapshot(data: &[u8]) -> Result<(SnapshotMeta, &[u8]), io::Error> {
    let Some(len_bytes) = data.first_chunk::<4>() else {
        return Err(invalid_data("snapshot shorter than its length prefix"));
    };
    let header_len = u32::from_le_bytes(*len_bytes) as usize;
    let header_end = 4usize
        .checked_add(header_len)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| invalid_data("snapshot header length exceeds the snapshot"))?;
    // simd-json parses in place, so only the (small) header is copied.
    let mut header = data[4..header_end].to_vec();
    let meta: SnapshotMeta = simd_json::serde::from_slice(&mut header)
        .map_err(|e| invalid_data(format!("corrupt snapshot header: {e}")))?;
    Ok((meta, &data[header_end..]))
}

/// Builds a snapshot from an image exported when the builder was made.
pub struct MusterSnapshotBuilder<A: Applier> {
    shared: Rc<Shared<A>>,
    meta: SnapshotMeta,
    image: Vec<u8>,
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for MusterSnapshotBuilder<A> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<MusterSnapshot, io::Error> {
        let data = encode_snapshot(&self.meta, &self.image)?;
        let snapshot = MusterSnapshot {
            meta: self.meta.clone(),
            snapshot: data,
        };
        let mut state = self.shared.state.borrow_mut();
        // A concurrent install may already have moved past this build.
        let newer_exists = state
            .current_snapshot
            .as_ref()
            .is_some_and(|cur| cur.meta.last_log_id > snapshot.meta.last_log_id);
        if !newer_exists {
            state.current_snapshot = Some(snapshot.clone());
        }
        Ok(snapshot)
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
        // openraft keeps applying while a builder runs on another task, so the image is taken
        // now, between two `apply` calls, where it matches `last_applied` exactly.
        let meta = {
            let state = self.shared.state.borrow();
            SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.last_membership.clone(),
            }
        };
        let image = self.shared.applier.export().await;
        MusterSnapshotBuilder {
            shared: self.shared.clone(),
            meta,
            image,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let (header, image) = decode_snapshot(&snapshot)?;
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
        let mut state = self.shared.state.borrow_mut();
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        state.current_snapshot = Some(MusterSnapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<MusterSnapshot>, io::Error> {
        Ok(self.shared.state.borrow().current_snapshot.clone())
    }
}
