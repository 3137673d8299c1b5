//! Muster's state machines: KV, sessions and catalog tables, one instance per shard core.
//!
//! Pure logic: no I/O, no clocks, no threads. Time enters only as the `at_ms` carried by each
//! raft entry, so every replica applies the same log to the same state. A [`shard::Shard`] owns
//! the keys that [`route::shard_for`] maps to it; [`coord`] runs a committed command on the
//! shards it touches and merges scatter-gather reads; [`visibility`] is the rule that keeps a
//! read from seeing part of a write that spans shards.
pub mod catalog;
pub mod command;
pub mod config_entry;
pub mod coord;
pub mod image;
pub mod kv;
pub mod local;
pub mod route;
pub mod session;
pub mod shard;
pub mod visibility;
