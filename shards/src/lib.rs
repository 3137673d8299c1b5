//! Muster's state machines: KV, sessions and catalog tables, one instance per shard core.
//!
//! Pure logic: no I/O, no clocks, no threads. Time enters only as the `at_ms` carried by each
//! raft entry, so every replica applies the same log to the same state.
pub mod command;
pub mod route;
