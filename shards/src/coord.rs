//! The coordinator: turns one committed command into calls on the shards that own its keys,
//! and merges scatter-gather reads. It is generic over how a shard is reached, so the runtime
//! runs it over the cross-core mesh and tests run it over plain local shards.
//!
//! Atomicity: the raft apply loop is the only writer and applies one entry at a time, so between
//! the dry run of a multi-shard transaction and its commit no other write can change the shards.
//! Visibility: every command that writes on more than one shard is a fenced step
//! ([`Backend::fenced_write`]) and every multi-shard read goes through [`read_all`], so no read
//! sees part of such a command (the rule and its proof are in [`crate::visibility`]).
use std::future::Future;

use futures::future::join_all;

use crate::catalog::Registration;
use crate::command::{Command, CommandResult, KvOp, KvVerb, TxnError};
use crate::kv::{KvEntry, KvFailure};
use crate::route::shard_for;
use crate::shard::{Shard, TxnPart};

/// A shard could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The process is shutting down, or the shard does not exist.
    #[error("shard {0} is unavailable")]
    Gone(usize),
    /// The queue to the shard is full and the caller chose to shed load rather than wait.
    #[error("the queue to shard {0} is full")]
    Busy(usize),
}

/// How the coordinator reaches a shard: run `f` on the core that owns shard `s`; and how it
/// keeps multi-shard writes from being seen in part (see [`crate::visibility`]).
pub trait Backend {
    fn nshards(&self) -> usize;
    fn on_shard<R, F>(&self, s: usize, f: F) -> impl Future<Output = Result<R, Unavailable>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static;

    /// A stamp for an optimistic multi-shard read, `None` while a fenced step is applied.
    fn read_stamp(&self) -> Option<u64>;

    /// Whether no fenced step started or ended since `stamp`.
    fn read_still(&self, stamp: u64) -> bool;

    /// Applies `step`, a write that reaches more than one shard, so that readers see all of it
    /// or none: it excludes [`Backend::fenced_read`]s and moves the read stamp around itself.
    fn fenced_write<T, Fut>(&self, step: Fut) -> impl Future<Output = T>
    where
        Fut: Future<Output = T>;

    /// Runs `f` on every shard with no fenced step in between (results in shard order): the
    /// fallback of [`read_all`] when its optimistic read failed.
    fn fenced_read<R, F>(&self, f: F) -> impl Future<Output = Result<Vec<R>, Unavailable>>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static;
}

pub fn owner_of(key: &str, nshards: usize) -> usize {
    shard_for(key.as_bytes(), nshards)
}

/// Runs `f` on every shard concurrently, results in shard order.
pub async fn on_all<B, R, F>(b: &B, f: F) -> Result<Vec<R>, Unavailable>
where
    B: Backend,
    R: Send + 'static,
    F: Fn(&mut Shard) -> R + Send + Clone + 'static,
{
    join_all((0..b.nshards()).map(|s| b.on_shard(s, f.clone())))
        .await
        .into_iter()
        .collect()
}

/// Reads every shard as of one state: `f` runs on each shard (results in shard order) and the
/// results never mix shards before and after a multi-shard write. An optimistic read checked
/// by the write epoch, else a fenced read (see [`crate::visibility`]).
pub async fn read_all<B, R, F>(b: &B, f: F) -> Result<Vec<R>, Unavailable>
where
    B: Backend,
    R: Send + 'static,
    F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
{
    if let Some(stamp) = b.read_stamp() {
        let parts = on_all(b, f.clone()).await?;
        if b.read_still(stamp) {
            return Ok(parts);
        }
    }
    b.fenced_read(f).await
}

/// Whether `cmd` may write on more than one shard, and so must be a fenced step.
fn spans_shards(cmd: &Command, n: usize) -> bool {
    match cmd {
        // A config entry lives on the one shard that owns "kind/name".
        Command::Noop | Command::Restore(_) | Command::Config(_) => false,
        Command::Kv(op) => op.verb.is_tree(),
        Command::Txn(ops) => {
            let mut owners = ops.iter().map(|op| {
                if op.verb.is_tree() {
                    usize::MAX
                } else {
                    owner_of(&op.key, n)
                }
            });
            let first = owners.next();
            first == Some(usize::MAX) || owners.any(|o| Some(o) != first)
        }
        // Sessions live on every shard; a catalog change may destroy sessions bound to it.
        Command::SessionCreate(_)
        | Command::SessionDestroy { .. }
        | Command::RegisterNode(_)
        | Command::Register(_)
        | Command::DeregisterNode { .. }
        | Command::Deregister { .. } => true,
    }
}

/// Applies one committed command at raft index `idx`, fenced when it spans shards.
pub async fn apply<B: Backend>(
    b: &B,
    idx: u64,
    at_ms: u64,
    cmd: Command,
) -> Result<CommandResult, Unavailable> {
    if spans_shards(&cmd, b.nshards()) {
        b.fenced_write(apply_step(b, idx, at_ms, cmd)).await
    } else {
        apply_step(b, idx, at_ms, cmd).await
    }
}

async fn apply_step<B: Backend>(
    b: &B,
    idx: u64,
    at_ms: u64,
    cmd: Command,
) -> Result<CommandResult, Unavailable> {
    let n = b.nshards();
    Ok(match cmd {
        Command::Noop => CommandResult::Ok,
        Command::Restore(_) => {
            CommandResult::Error("a snapshot restore is applied by the host, not the shards".into())
        }
        Command::Kv(op) if op.verb == KvVerb::DeleteTree => {
            let prefix = op.key;
            on_all(b, move |s| s.kv_delete_tree(idx, &prefix)).await?;
            CommandResult::Bool(true)
        }
        Command::Kv(op) => {
            let r = b
                .on_shard(owner_of(&op.key, n), move |s| s.kv_write(idx, &op))
                .await?;
            kv_result(r)
        }
        Command::Txn(ops) => txn(b, idx, ops).await?,
        Command::SessionCreate(sess) => {
            let probe = sess.clone();
            let check = b
                .on_shard(owner_of(&sess.node, n), move |s| s.session_precheck(&probe))
                .await?;
            if let Err(text) = check {
                return Ok(CommandResult::Error(text));
            }
            let id = sess.id.clone();
            on_all(b, move |s| s.session_insert(idx, sess.clone())).await?;
            CommandResult::SessionCreated { id }
        }
        Command::SessionDestroy { id } => {
            on_all(b, move |s| s.session_destroy(idx, at_ms, &id)).await?;
            CommandResult::Bool(true)
        }
        Command::RegisterNode(reg) => {
            let r = Registration {
                node: reg.node,
                skip_node_update: false,
                service: None,
                checks: reg.checks,
            };
            register(b, idx, at_ms, r).await?
        }
        Command::Register(reg) => register(b, idx, at_ms, *reg).await?,
        Command::DeregisterNode { node } => deregister(b, idx, at_ms, node, None, None).await?,
        Command::Deregister {
            node,
            service_id,
            check_id,
        } => deregister(b, idx, at_ms, node, service_id, check_id).await?,
        Command::Config(op) => {
            let owner = owner_of(&op.key(), n);
            CommandResult::Bool(b.on_shard(owner, move |s| s.config_apply(idx, &op)).await?)
        }
    })
}

async fn register<B: Backend>(
    b: &B,
    idx: u64,
    at_ms: u64,
    reg: Registration,
) -> Result<CommandResult, Unavailable> {
    let node = reg.node.node.clone();
    let r = b
        .on_shard(owner_of(&node, b.nshards()), move |s| s.register(idx, &reg))
        .await?;
    match r {
        Ok(critical) => {
            invalidate_bound_sessions(b, idx, at_ms, &node, critical, false).await?;
            Ok(CommandResult::Bool(true))
        }
        Err(text) => Ok(CommandResult::Error(text)),
    }
}

async fn deregister<B: Backend>(
    b: &B,
    idx: u64,
    at_ms: u64,
    node: String,
    service_id: Option<String>,
    check_id: Option<String>,
) -> Result<CommandResult, Unavailable> {
    let whole_node = service_id.is_none() && check_id.is_none();
    let name = node.clone();
    let gone = b
        .on_shard(owner_of(&node, b.nshards()), move |s| {
            s.deregister(idx, &name, service_id.as_deref(), check_id.as_deref())
        })
        .await?;
    invalidate_bound_sessions(b, idx, at_ms, &node, gone, whole_node).await?;
    Ok(CommandResult::Bool(true))
}

/// Destroys the sessions of `node` bound to any of `checks` (or all of its sessions when the
/// node itself is gone), as Consul does when a check goes critical or disappears.
async fn invalidate_bound_sessions<B: Backend>(
    b: &B,
    idx: u64,
    at_ms: u64,
    node: &str,
    checks: Vec<String>,
    whole_node: bool,
) -> Result<(), Unavailable> {
    if checks.is_empty() && !whole_node {
        return Ok(());
    }
    let n = node.to_string();
    let doomed = b
        .on_shard(0, move |s| {
            s.sessions()
                .on_node(&n)
                .into_iter()
                .filter(|x| {
                    whole_node
                        || x.node_checks.iter().any(|c| checks.contains(c))
                        || x.service_checks.iter().any(|c| checks.contains(&c.id))
                })
                .map(|x| x.id)
                .collect::<Vec<_>>()
        })
        .await?;
    for id in doomed {
        on_all(b, move |s| s.session_destroy(idx, at_ms, &id)).await?;
    }
    Ok(())
}

fn kv_result(r: Result<(), KvFailure>) -> CommandResult {
    match r {
        Ok(()) => CommandResult::Bool(true),
        Err(KvFailure::Refused(_)) => CommandResult::Bool(false),
        Err(KvFailure::Invalid(text)) => CommandResult::Error(text),
    }
}

/// Commands that touch exactly one shard with one call, so runs of them can be batched. A run
/// holds one kind only: a registration's session invalidation is deferred to the end of its
/// run, which is safe among registrations (they never read sessions or KV) but not before a
/// KV lock operation that could use the session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Kv,
    Register,
}

fn run_kind(cmd: &Command) -> Option<RunKind> {
    match cmd {
        Command::Kv(op) if !op.verb.is_tree() => Some(RunKind::Kv),
        Command::Register(_) => Some(RunKind::Register),
        _ => None,
    }
}

fn run_owner(cmd: &Command, n: usize) -> usize {
    match cmd {
        Command::Kv(op) => owner_of(&op.key, n),
        Command::Register(reg) => owner_of(&reg.node.node, n),
        _ => 0,
    }
}

/// One command's outcome on its shard; a registration may still owe session invalidation.
enum RunResult {
    Done(CommandResult),
    Registered { critical: Vec<String> },
}

fn apply_on_shard(sh: &mut Shard, idx: u64, cmd: &Command) -> RunResult {
    match cmd {
        Command::Kv(op) => RunResult::Done(kv_result(sh.kv_write(idx, op))),
        Command::Register(reg) => match sh.register(idx, reg) {
            Ok(critical) => RunResult::Registered { critical },
            Err(text) => RunResult::Done(CommandResult::Error(text)),
        },
        _ => RunResult::Done(CommandResult::Error("not a batchable command".into())),
    }
}

/// One committed entry: raft index, leader time, command.
pub type Committed = (u64, u64, Command);

/// Applies committed entries in order. Consecutive single-shard writes of one kind (KV writes,
/// catalog registrations) are grouped into one call per owning shard (each shard applies its
/// share in log order, and writes on different shards commute), so a batch of N writes costs
/// one hop per shard instead of N hops.
pub async fn apply_batch<B: Backend>(
    b: &B,
    entries: Vec<Committed>,
) -> Result<Vec<CommandResult>, Unavailable> {
    let mut out: Vec<CommandResult> = Vec::with_capacity(entries.len());
    let mut it = entries.into_iter().peekable();
    while let Some((idx, at_ms, cmd)) = it.next() {
        let Some(kind) = run_kind(&cmd) else {
            out.push(apply(b, idx, at_ms, cmd).await?);
            continue;
        };
        let mut run = vec![(idx, at_ms, cmd)];
        while let Some((_, _, next)) = it.peek() {
            if run_kind(next) != Some(kind) {
                break;
            }
            run.push(it.next().expect("peeked"));
        }
        // A registration that brings a critical check may destroy sessions on every shard
        // (deferred to the end of the run), so such a run is one fenced step.
        let fenced = run.iter().any(|(_, _, c)| match c {
            Command::Register(reg) => reg
                .checks
                .iter()
                .any(|c| c.status != "passing" && c.status != "warning"),
            _ => false,
        });
        let base = out.len();
        out.resize(base + run.len(), CommandResult::Ok);
        let step = apply_run(b, base, run, &mut out);
        if fenced {
            b.fenced_write(step).await?;
        } else {
            step.await?;
        }
    }
    Ok(out)
}

/// Applies one run of batchable commands (see [`apply_batch`]), results into `out[base..]`.
async fn apply_run<B: Backend>(
    b: &B,
    base: usize,
    run: Vec<Committed>,
    out: &mut [CommandResult],
) -> Result<(), Unavailable> {
    let n = b.nshards();
    // (raft index, leader time, node) of each registration, for deferred invalidation.
    let mut meta: Vec<(u64, u64, String)> = Vec::with_capacity(run.len());
    let mut per_shard: Vec<Vec<(usize, u64, Command)>> = vec![Vec::new(); n];
    for (pos, (i, at, c)) in run.into_iter().enumerate() {
        let node = match &c {
            Command::Register(reg) => reg.node.node.clone(),
            _ => String::new(),
        };
        meta.push((i, at, node));
        per_shard[run_owner(&c, n)].push((base + pos, i, c));
    }
    let calls = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, cmds)| !cmds.is_empty())
        .map(|(s, cmds)| {
            b.on_shard(s, move |sh| {
                cmds.into_iter()
                    .map(|(pos, i, c)| (pos, apply_on_shard(sh, i, &c)))
                    .collect::<Vec<_>>()
            })
        });
    let mut owed: Vec<(usize, Vec<String>)> = Vec::new();
    for part in join_all(calls).await {
        for (pos, r) in part? {
            match r {
                RunResult::Done(r) => out[pos] = r,
                RunResult::Registered { critical } => {
                    out[pos] = CommandResult::Bool(true);
                    if !critical.is_empty() {
                        owed.push((pos, critical));
                    }
                }
            }
        }
    }
    owed.sort_by_key(|(pos, _)| *pos);
    for (pos, critical) in owed {
        let (i, at, node) = &meta[pos - base];
        invalidate_bound_sessions(b, *i, *at, node, critical, false).await?;
    }
    Ok(())
}

/// Splits a transaction into per-shard op lists, keeping transaction order within each.
fn split_txn(ops: &[KvOp], n: usize) -> Vec<Vec<(usize, KvOp)>> {
    let mut parts: Vec<Vec<(usize, KvOp)>> = vec![Vec::new(); n];
    for (i, op) in ops.iter().enumerate() {
        if op.verb.is_tree() {
            for p in parts.iter_mut() {
                p.push((i, op.clone()));
            }
        } else {
            parts[owner_of(&op.key, n)].push((i, op.clone()));
        }
    }
    parts
}

async fn run_parts<B: Backend>(
    b: &B,
    idx: u64,
    parts: &[(usize, Vec<(usize, KvOp)>)],
    commit: bool,
) -> Result<Vec<Result<TxnPart, Vec<TxnError>>>, Unavailable> {
    join_all(parts.iter().map(|(s, ops)| {
        let ops = ops.clone();
        b.on_shard(*s, move |sh| sh.kv_txn(idx, &ops, commit))
    }))
    .await
    .into_iter()
    .collect()
}

async fn txn<B: Backend>(b: &B, idx: u64, ops: Vec<KvOp>) -> Result<CommandResult, Unavailable> {
    let parts: Vec<(usize, Vec<(usize, KvOp)>)> = split_txn(&ops, b.nshards())
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if parts.len() > 1 {
        let mut errors: Vec<TxnError> = run_parts(b, idx, &parts, false)
            .await?
            .into_iter()
            .filter_map(Result::err)
            .flatten()
            .collect();
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.op_index);
            errors.dedup();
            return Ok(CommandResult::TxnFailed(errors));
        }
    }
    let outcomes = run_parts(b, idx, &parts, true).await?;
    let mut results: Vec<Vec<KvEntry>> = vec![Vec::new(); ops.len()];
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Ok(part) => {
                for (at, entries) in part {
                    results[at].extend(entries);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        // Only reachable with a single shard part: a dry run guards the multi-shard case.
        errors.sort_by_key(|e| e.op_index);
        return Ok(CommandResult::TxnFailed(errors));
    }
    for (i, op) in ops.iter().enumerate() {
        if op.verb == KvVerb::GetTree {
            results[i].sort_by(|a, b| a.key.cmp(&b.key));
        }
    }
    Ok(CommandResult::TxnOk(results))
}

/// A scatter-gather KV listing: entries under `prefix` in key order, and the listing's index
/// (Consul's rule: the highest entry or tombstone index under the prefix, else the table index).
pub async fn kv_list<B: Backend>(b: &B, prefix: &str) -> Result<(u64, Vec<KvEntry>), Unavailable> {
    let p = prefix.to_string();
    let parts = read_all(b, move |s| {
        let (idx, entries) = s.kv().list(&p);
        (idx, s.kv().index(), entries)
    })
    .await?;
    let mut lindex = 0;
    let mut table = 0;
    let mut all = Vec::new();
    for (idx, t, entries) in parts {
        lindex = lindex.max(idx);
        table = table.max(t);
        all.extend(entries);
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((if lindex != 0 { lindex } else { table }, all))
}

/// A scatter-gather `?keys` listing, folded at `separator`.
pub async fn kv_keys<B: Backend>(
    b: &B,
    prefix: &str,
    separator: &str,
) -> Result<(u64, Vec<String>), Unavailable> {
    let (p, sep) = (prefix.to_string(), separator.to_string());
    let parts = read_all(b, move |s| {
        let (idx, keys) = s.kv().keys(&p, &sep);
        (idx, s.kv().index(), keys)
    })
    .await?;
    let mut lindex = 0;
    let mut table = 0;
    let mut all = Vec::new();
    for (idx, t, keys) in parts {
        lindex = lindex.max(idx);
        table = table.max(t);
        all.extend(keys);
    }
    all.sort();
    all.dedup();
    Ok((if lindex != 0 { lindex } else { table }, all))
}

/// A single key: its entry, and the index Consul reports (the entry's ModifyIndex, else the
/// shard's KV table index).
pub async fn kv_get<B: Backend>(b: &B, key: &str) -> Result<(u64, Option<KvEntry>), Unavailable> {
    let k = key.to_string();
    b.on_shard(owner_of(key, b.nshards()), move |s| match s.kv().get(&k) {
        Some(e) => (e.modify_index, Some(e.clone())),
        None => (s.kv().index(), None),
    })
    .await
}
