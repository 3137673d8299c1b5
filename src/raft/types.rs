//! The openraft type configuration for Muster's server raft group.

use std::fmt;

use muster_shards::command::{CommandResult, Proposal};
use serde::{Deserialize, Serialize};

use super::rt::GlommioRuntime;

/// A raft member as stored in the membership config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MusterNode {
    /// Node name (Consul's `node_name`).
    pub name: String,
    /// Node UUID (Consul's `node_id`).
    pub id: String,
    /// Server RPC address, `ip:port`.
    pub addr: String,
}

/// Log entry payload: a [`Proposal`] under the `Display` bound openraft puts on application data.
///
/// `serde(transparent)`, so the stored and replicated form is exactly the `Proposal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoggedProposal(pub Proposal);

impl fmt::Display for LoggedProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // openraft logs entries with `Display`; keep it short and free of user data.
        write!(f, "proposal(at_ms={})", self.0.at_ms)
    }
}

openraft::declare_raft_types!(
    /// Muster's openraft type configuration.
    pub TypeConfig:
        D = LoggedProposal,
        R = CommandResult,
        NodeId = u64,
        Node = MusterNode,
        AsyncRuntime = GlommioRuntime,
);

/// Log id of this type config.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// Log entry of this type config.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Vote of this type config.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Membership config with the log id that introduced it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata of this type config.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// The term of the leader that wrote `id`.
pub fn term_of(id: &LogId) -> u64 {
    id.leader_id.term
}
