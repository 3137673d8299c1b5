//! Linearizability checking for Muster's KV API.
//!
//! - [`recorder`] drives real servers over HTTP from concurrent clients and records a
//!   [`history::History`]: every operation with its invoke and complete times on one monotonic
//!   clock, its result, or the fact that its outcome is unknown (the server was killed, the
//!   connection reset, the request timed out).
//! - [`kv::check_history`] decides whether that history is linearizable with respect to a
//!   sequential ordered map (get, put, cas, delete, recursive get, all-or-nothing txn).
//! - [`wgl`] is the search itself, generic over the model: Wing & Gong's algorithm with Lowe's
//!   memoization of (linearized set, model state), the algorithm Porcupine implements. The
//!   history is not split by key, since recursive reads and transactions span keys; histories
//!   of a few thousand operations from a handful of clients check in well under a second.
//!
//! Existing crates did not fit: the Rust ones either model-check in-process data structures
//! (loom-based) or implement WGL without unknown-outcome operations.
pub mod history;
pub mod kv;
pub mod recorder;
pub mod wgl;

pub use history::{History, Op, Record, Ret, TxnOp, TxnRet, Val};
pub use kv::{check_history, HistoryError, Report};
pub use recorder::{Limits, Mix, Recorder, RunStats, Workload};
