//! The raft log payload (`Proposal`) and what applying it answers (`CommandResult`).
use serde::{Deserialize, Serialize};

/// One raft entry's payload. `at_ms` is the leader's wall clock when it proposed the entry;
/// it is the only notion of time the state machines see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub at_ms: u64,
    pub cmd: Command,
}

/// Placeholder until the shard tables land; the variants are filled in by the shards work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Noop,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum CommandResult {
    #[default]
    Ok,
}
