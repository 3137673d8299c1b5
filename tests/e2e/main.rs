//! End-to-end tests: each scenario drives a real `muster agent -dev` process over its real
//! sockets (HTTP API and CLI) and checks Consul's documented behaviour. Every scenario runs
//! twice, against `-cores 1` (all roles on one executor) and `-cores 2` (roles and shards
//! spread over two executors), each time with an agent of its own. `durable` runs durable
//! servers (`-data-dir`) instead, and kills, damages and restarts them.

#[macro_use]
mod common;

mod agent;
mod agent_services;
mod bad_input;
mod blocking;
mod catalog;
mod checks;
mod cli;
mod client_compat;
mod config;
mod consul_compat;
mod dns;
mod durable;
mod failstop;
mod health;
mod kv;
mod lin;
mod sessions;
mod txn;
