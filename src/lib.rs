//! Muster: a thread-per-core, Consul-compatible service discovery and configuration daemon.
pub mod agent;
pub mod checks;
pub mod cli;
pub mod config;
pub mod dns;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod raft;
pub mod router;
pub mod runtime;
