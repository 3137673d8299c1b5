//! What a recorded KV history is made of: operations as clients issued them, with the times
//! they were invoked and completed and what they returned (or that their outcome is unknown).
use std::fmt;

use serde::{Deserialize, Serialize};

/// A stored value: the bytes and the flags, which a read returns together.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Val {
    pub data: Vec<u8>,
    pub flags: u64,
}

impl Val {
    pub fn new(data: impl Into<Vec<u8>>, flags: u64) -> Val {
        Val {
            data: data.into(),
            flags,
        }
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.data))?;
        if self.flags != 0 {
            write!(f, "/f{}", self.flags)?;
        }
        Ok(())
    }
}

/// One KV operation as issued.
///
/// `Cas` carries the value the client read together with the `ModifyIndex` it passed (`None`:
/// `?cas=0`, create-only). As long as every write in a history writes a value never written
/// before (the recorder makes values unique), "the key's `ModifyIndex` is still the one read"
/// is the same as "the key's value is still the one read", so the model can decide a CAS
/// from values alone, without knowing the indexes the server assigns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Get {
        key: String,
    },
    Put {
        key: String,
        val: Val,
    },
    Cas {
        key: String,
        val: Val,
        expect: Option<Val>,
    },
    Delete {
        key: String,
    },
    /// Recursive read: every key starting with `prefix`, in key order.
    List {
        prefix: String,
    },
    Txn(Vec<TxnOp>),
}

/// One operation inside a `/v1/txn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Set {
        key: String,
        val: Val,
    },
    Cas {
        key: String,
        val: Val,
        expect: Option<Val>,
    },
    /// Fails the whole transaction when the key does not exist.
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    /// `Get`: the value, or `None` for 404.
    Value(Option<Val>),
    /// `Put`, `Cas`, `Delete`: the JSON boolean.
    Done(bool),
    /// `List`: the entries in the order returned.
    List(Vec<(String, Val)>),
    Txn(TxnRet),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRet {
    /// Applied; `reads` has one value per `Get` op, in op order.
    Committed { reads: Vec<Val> },
    /// Rolled back; the lowest `OpIndex` among the errors.
    Aborted { first_failed: usize },
}

/// One operation of a history. Times are nanoseconds on one monotonic clock shared by every
/// client of the history. `ret: None` means the outcome is unknown (timeout, connection
/// reset, server killed): it may or may not have taken effect, at any point after `call`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub client: usize,
    pub op: Op,
    pub call: u64,
    pub ret: Option<(u64, Ret)>,
}

/// A history: the state before the first operation and every operation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub initial: Vec<(String, Val)>,
    pub records: Vec<Record>,
}

impl History {
    /// Operations with a known outcome.
    pub fn completed(&self) -> usize {
        self.records.iter().filter(|r| r.ret.is_some()).count()
    }

    /// Operations whose outcome is unknown.
    pub fn unknown(&self) -> usize {
        self.records.iter().filter(|r| r.ret.is_none()).count()
    }
}

impl Op {
    /// Whether the op can change the state (an unknown-outcome op that cannot is dropped).
    pub fn writes(&self) -> bool {
        match self {
            Op::Get { .. } | Op::List { .. } => false,
            Op::Put { .. } | Op::Cas { .. } | Op::Delete { .. } => true,
            Op::Txn(ops) => ops.iter().any(|o| !matches!(o, TxnOp::Get { .. })),
        }
    }
}
