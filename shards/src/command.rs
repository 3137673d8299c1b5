//! The raft log payload (`Proposal`) and what applying it answers (`CommandResult`).
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::catalog::{HealthCheck, Node, Registration};
use crate::kv::KvEntry;
use crate::session::Session;

/// One raft entry's payload. `at_ms` is the leader's wall clock (ms since the Unix epoch) when it
/// proposed the entry; it is the only notion of time the state machines see, so every replica
/// computes the same lock-delay deadlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub at_ms: u64,
    pub cmd: Command,
}

/// Consul's KV verbs, as used by `/v1/kv` and `/v1/txn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

impl KvVerb {
    /// The verb as spelled in `/v1/txn` bodies.
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// Tree verbs address a prefix, so they touch every shard.
    pub fn is_tree(self) -> bool {
        matches!(self, KvVerb::GetTree | KvVerb::DeleteTree)
    }
}

/// One KV operation: a `/v1/kv` request or one element of a `/v1/txn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    pub value: Bytes,
    pub flags: u64,
    /// The CAS / check-index modify index.
    pub index: u64,
    pub session: String,
}

impl KvOp {
    pub fn new(verb: KvVerb, key: impl Into<String>) -> KvOp {
        KvOp {
            verb,
            key: key.into(),
            value: Bytes::new(),
            flags: 0,
            index: 0,
            session: String::new(),
        }
    }
}

/// A catalog registration as applied to the node's shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub node: Node,
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Leader no-op (e.g. a barrier).
    Noop,
    /// A single `/v1/kv` write: set, cas, lock, unlock, delete, delete-cas, delete-tree.
    Kv(KvOp),
    /// `/v1/txn`: all-or-nothing at one index.
    Txn(Vec<KvOp>),
    /// The session's ID is chosen by the leader before proposing.
    SessionCreate(Session),
    SessionDestroy {
        id: String,
    },
    /// A node with its checks (no service): the agent's own node, tests.
    RegisterNode(NodeRegistration),
    DeregisterNode {
        node: String,
    },
    /// `/v1/catalog/register` and the agent's sync: node, optional service, checks.
    Register(Box<Registration>),
    /// `/v1/catalog/deregister`: the node, or one service (with its checks), or one check.
    Deregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
    },
    /// `PUT /v1/snapshot`: replace the whole state with a snapshot's image (its body, an rkyv
    /// archive). The host decodes and installs it; [`crate::coord`] refuses it.
    Restore(Bytes),
    /// `/v1/config`: one config entry written or deleted on the shard owning "kind/name".
    Config(crate::config_entry::ConfigOp),
}

/// The error of one transaction operation, as Consul reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum CommandResult {
    #[default]
    Ok,
    /// `/v1/kv` writes answer true/false.
    Bool(bool),
    /// Results of a committed transaction: for each op in order, the entries it returned.
    TxnOk(Vec<Vec<KvEntry>>),
    TxnFailed(Vec<TxnError>),
    SessionCreated {
        id: String,
    },
    /// A request that the state machine rejected (Consul answers these with HTTP 500).
    Error(String),
}
