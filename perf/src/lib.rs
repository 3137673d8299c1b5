//! Muster's performance harness: the workloads of `docs/performance.md` (W1-W6 so far), each
//! of which starts what it needs (a release `muster` on loopback, the peer when installed),
//! loads data, drives load from the generators in [`gen`], samples the server's CPU and RSS
//! from `/proc`, prints a table and writes a JSON [`result::RunResult`] under `perf/results/`.
//!
//! Flow of one run: [`workloads`] parse their options -> [`muster::Muster::start`] /
//! [`peers`] spawn pinned servers ([`proc`]) -> [`gen`] connects and runs open- or
//! closed-loop load into per-task [`hist::Latency`] histograms that are merged at the end ->
//! [`result`] collects rows, ratios and the run's context -> [`report`] prints it.
//!
//! `anyhow` is used throughout: this crate is a tool, not a library with callers to serve.

pub mod dataset;
pub mod gen;
pub mod hist;
pub mod muster;
pub mod peers;
pub mod proc;
pub mod report;
pub mod result;
pub mod workloads;
