//! The agent's local state: the services and checks this agent owns, the runners of its checks,
//! maintenance mode, and anti-entropy, which keeps the catalog's view of this node equal to the
//! local state (a partial sync after every local change, a full sync at start and periodically).
//!
//! It lives on the HTTP executor, where the agent endpoints run, so they reach it without a hop.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use muster_shards::catalog::{HealthCheck, Node, Registration, Service};
use muster_shards::command::{Command, CommandResult};
use muster_shards::coord::owner_of;

pub mod defs;

use crate::checks::{self, CheckDef, CheckKind, Checks, Status};
use crate::runtime::core::{core, Shards};
use crate::runtime::raftcore;

/// How often the full anti-entropy sync runs (Consul: about a minute on small clusters).
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a sync that failed for a reason other than a missing leader is tried again (a
/// missing leader is waited out on the leadership event instead).
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// How often services with a long-critical check are considered for reaping.
const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// Consul's floor for `DeregisterCriticalServiceAfter`.
const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);
/// Check IDs the agent never syncs: the leader owns them.
const SERF_CHECK: &str = "serfHealth";
/// Services the agent never deregisters: servers register `consul` themselves.
const CONSUL_SERVICE: &str = "consul";
pub const NODE_MAINT_CHECK: &str = "_node_maintenance";
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const DEFAULT_MAINT_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_MAINT_REASON: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Where a local definition came from: config files are replaced on reload, API ones are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Config,
}

#[derive(Debug, Clone)]
pub struct LocalCheck {
    pub check: HealthCheck,
    /// The runner definition, absent for checks that only hold a status (maintenance).
    pub def: Option<CheckDef>,
    pub deregister_after: Option<Duration>,
    pub critical_since: Option<Instant>,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct LocalService {
    pub service: Service,
    pub source: Source,
}

/// A check registration as parsed from a request or config file.
#[derive(Debug, Clone)]
pub struct CheckRegistration {
    pub check: HealthCheck,
    pub def: Option<CheckDef>,
    pub deregister_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(
        "Unknown service ID {0:?}. Ensure that the service ID is passed, not the service name."
    )]
    UnknownService(String),
    #[error("Unknown check ID {0:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(String),
    #[error("{0}")]
    Check(#[from] checks::CheckError),
    #[error("{0}")]
    Invalid(String),
    /// A check names a service this agent does not have (Consul answers 404).
    #[error("ServiceID {0:?} does not exist")]
    NoSuchService(String),
}

pub struct Agent {
    services: RefCell<BTreeMap<String, LocalService>>,
    checks: RefCell<BTreeMap<String, LocalCheck>>,
    runners: Checks,
    /// Bumped on every local change; a sync that started at an older generation runs again.
    generation: Cell<u64>,
    syncing: Cell<bool>,
    /// The newest generation a finished sync attempt (successful or not) started from.
    attempted: Cell<u64>,
    /// API calls waiting, as Consul's `syncChanges` does, for an attempt covering their change.
    waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    /// Bumped whenever the raft core pushes a new leadership view to this executor.
    view_seq: Cell<u64>,
    /// A sync deferred for want of a leader, waiting for the next view.
    view_waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

thread_local! {
    static AGENT: RefCell<Option<Rc<Agent>>> = const { RefCell::new(None) };
}

/// This executor's agent (the HTTP executor's). Panics elsewhere: a programming error.
pub fn agent() -> Rc<Agent> {
    AGENT
        .with(|a| a.borrow().clone())
        .expect("the agent lives on the HTTP executor")
}

/// Creates the agent on this executor and starts anti-entropy and the reaper.
pub fn start() -> Rc<Agent> {
    let notify: checks::Notify = Rc::new(|id: &str, status: Status, output: String| {
        agent().check_result(id, status.as_str(), output);
    });
    let tq = core().queues.background;
    let a = Rc::new(Agent {
        services: RefCell::default(),
        checks: RefCell::default(),
        runners: Checks::new(notify, Some(tq)),
        generation: Cell::new(0),
        syncing: Cell::new(false),
        attempted: Cell::new(0),
        waiters: RefCell::default(),
        view_seq: Cell::new(0),
        view_waiters: RefCell::default(),
    });
    AGENT.with(|x| *x.borrow_mut() = Some(a.clone()));
    glommio::spawn_local_into(
        async {
            loop {
                agent().sync_soon();
                glommio::timer::sleep(FULL_SYNC_INTERVAL).await;
            }
        },
        tq,
    )
    .expect("background task queue exists")
    .detach();
    glommio::spawn_local_into(
        async {
            loop {
                glommio::timer::sleep(REAP_INTERVAL).await;
                agent().reap();
            }
        },
        tq,
    )
    .expect("background task queue exists")
    .detach();
    a
}

/// The raft core pushed a new leadership view to this executor: a sync that waits for a leader
/// goes on now. A no-op on executors without the agent.
pub fn view_changed() {
    let Some(a) = AGENT.with(|a| a.borrow().clone()) else {
        return;
    };
    a.view_seq.set(a.view_seq.get() + 1);
    for tx in a.view_waiters.borrow_mut().drain(..) {
        let _ = tx.send(());
    }
}

fn node_name() -> String {
    core().settings.node_name.clone()
}

impl Agent {
    pub fn services(&self) -> Vec<Service> {
        self.services
            .borrow()
            .values()
            .map(|s| s.service.clone())
            .collect()
    }

    pub fn service(&self, id: &str) -> Option<Service> {
        self.services.borrow().get(id).map(|s| s.service.clone())
    }

    pub fn checks(&self) -> Vec<HealthCheck> {
        self.checks
            .borrow()
            .values()
            .map(|c| c.check.clone())
            .collect()
    }

    /// How many script and TTL checks run here, as Consul counts them in `Stats.agent`.
    pub fn runner_counts(&self) -> (usize, usize) {
        let checks = self.checks.borrow();
        let kinds = checks
            .values()
            .filter_map(|c| c.def.as_ref().map(|d| &d.kind));
        kinds.fold((0, 0), |(m, t), k| match k {
            CheckKind::Ttl { .. } => (m, t + 1),
            k if k.is_script() => (m + 1, t),
            _ => (m, t),
        })
    }

    /// Checks that apply to a service: its own and the node's.
    pub fn service_checks(&self, id: &str) -> Vec<HealthCheck> {
        self.checks
            .borrow()
            .values()
            .filter(|c| c.check.service_id.is_empty() || c.check.service_id == id)
            .map(|c| c.check.clone())
            .collect()
    }

    fn touch(&self) {
        self.refresh_aliases();
        self.generation.set(self.generation.get() + 1);
        self.sync_soon();
    }

    /// Alias checks whose target is this agent (its node, or one of its services) follow the
    /// checks they mirror on every local change, as Consul's alias check does for local
    /// targets.
    fn refresh_aliases(&self) {
        let me = node_name();
        let services: BTreeSet<String> = self.services.borrow().keys().cloned().collect();
        let snapshot = self.checks();
        let inputs: Vec<checks::AliasInput<'_>> = snapshot
            .iter()
            .map(|h| checks::AliasInput {
                node: &me,
                service_id: &h.service_id,
                check_id: &h.check_id,
                name: &h.name,
                status: Status::parse(&h.status).unwrap_or(Status::Critical),
                output: &h.output,
            })
            .collect();
        let mut local = self.checks.borrow_mut();
        for c in local.values_mut() {
            let Some(CheckKind::Alias { node, service_id }) = c.def.as_ref().map(|d| &d.kind)
            else {
                continue;
            };
            let node = node.as_deref().unwrap_or("");
            if !node.is_empty() && !node.eq_ignore_ascii_case(&me) {
                continue;
            }
            let service = service_id.as_deref().unwrap_or("");
            let (status, output) = checks::alias_result(
                node,
                service,
                &c.check.check_id,
                &inputs,
                services.contains(service),
            );
            if c.check.status != status.as_str() || c.check.output != output {
                if c.check.status != status.as_str() {
                    c.critical_since = (status == Status::Critical).then(Instant::now);
                }
                c.check.status = status.as_str().to_string();
                c.check.output = output;
            }
        }
    }

    /// Waits until a sync attempt that includes every local change made so far has finished,
    /// as Consul's agent endpoints do before answering: a registration is in the catalog when
    /// the call returns. A failed attempt (no leader yet) releases the caller too; anti-entropy
    /// keeps trying, and the call has still succeeded locally (Consul only logs the failure).
    pub async fn sync_changes(&self) {
        let wanted = self.generation.get();
        if self.attempted.get() >= wanted {
            return;
        }
        self.sync_soon();
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push((wanted, tx));
        let _ = rx.await;
    }

    /// Records a finished attempt that started at `generation` and releases its waiters.
    fn attempt_done(&self, generation: u64) {
        if generation > self.attempted.get() {
            self.attempted.set(generation);
        }
        let done = self.attempted.get();
        let pending = std::mem::take(&mut *self.waiters.borrow_mut());
        let (ready, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(g, _)| *g <= done);
        *self.waiters.borrow_mut() = rest;
        for (_, tx) in ready {
            // The caller may be gone (client disconnected); nothing to tell then.
            let _ = tx.send(());
        }
    }

    /// Resolves once the leadership view has changed since `seen`.
    async fn next_view(&self, seen: u64) {
        if self.view_seq.get() != seen {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.view_waiters.borrow_mut().push(tx);
        let _ = rx.await;
    }

    /// Adds or replaces a service and its checks. With `replace_checks`, the service's other
    /// checks are removed (Consul's `replace-existing-checks`).
    pub fn add_service(
        &self,
        mut svc: Service,
        checks: Vec<CheckRegistration>,
        replace_checks: bool,
        source: Source,
    ) -> Result<(), AgentError> {
        if svc.id.is_empty() {
            svc.id = svc.service.clone();
        }
        let id = svc.id.clone();
        let tags = svc.tags.clone();
        let name = svc.service.clone();
        if replace_checks {
            let keep: BTreeSet<String> = checks.iter().map(|c| c.check.check_id.clone()).collect();
            let stale: Vec<String> = self
                .checks
                .borrow()
                .values()
                .filter(|c| c.check.service_id == id && !keep.contains(&c.check.check_id))
                .map(|c| c.check.check_id.clone())
                .collect();
            for c in stale {
                self.remove_check_quiet(&c);
            }
        }
        self.services.borrow_mut().insert(
            id.clone(),
            LocalService {
                service: svc,
                source,
            },
        );
        for mut c in checks {
            c.check.service_id = id.clone();
            c.check.service_name = name.clone();
            c.check.service_tags = tags.clone();
            self.add_check_quiet(c, source);
        }
        self.touch();
        Ok(())
    }

    pub fn remove_service(&self, id: &str) -> Result<(), AgentError> {
        if self.services.borrow_mut().remove(id).is_none() {
            return Err(AgentError::UnknownService(id.to_string()));
        }
        let owned: Vec<String> = self
            .checks
            .borrow()
            .values()
            .filter(|c| c.check.service_id == id)
            .map(|c| c.check.check_id.clone())
            .collect();
        for c in owned {
            self.remove_check_quiet(&c);
        }
        self.touch();
        Ok(())
    }

    pub fn add_check(&self, c: CheckRegistration, source: Source) -> Result<(), AgentError> {
        let mut c = c;
        if !c.check.service_id.is_empty() {
            let services = self.services.borrow();
            let Some(s) = services.get(&c.check.service_id) else {
                return Err(AgentError::NoSuchService(c.check.service_id.clone()));
            };
            c.check.service_name = s.service.service.clone();
            c.check.service_tags = s.service.tags.clone();
        }
        self.add_check_quiet(c, source);
        self.touch();
        Ok(())
    }

    fn add_check_quiet(&self, c: CheckRegistration, source: Source) {
        let mut check = c.check;
        check.node = node_name();
        if check.status.is_empty() {
            check.status = "critical".into();
        }
        if let Some(def) = c
            .def
            .as_ref()
            .filter(|d| !matches!(d.kind, CheckKind::Alias { .. }))
        {
            check.check_type = def.kind.type_name().to_string();
            let mut def = def.clone();
            def.id = check.check_id.clone();
            def.initial_status = Status::parse(&check.status).unwrap_or(Status::Critical);
            def.initial_output = check.output.clone();
            self.runners.add(def);
        } else {
            self.runners.remove(&check.check_id);
        }
        let critical_since = (check.status == "critical").then(Instant::now);
        self.checks.borrow_mut().insert(
            check.check_id.clone(),
            LocalCheck {
                check,
                def: c.def,
                deregister_after: c.deregister_after,
                critical_since,
                source,
            },
        );
    }

    pub fn remove_check(&self, id: &str) -> Result<(), AgentError> {
        if !self.remove_check_quiet(id) {
            return Err(AgentError::UnknownCheck(id.to_string()));
        }
        self.touch();
        Ok(())
    }

    fn remove_check_quiet(&self, id: &str) -> bool {
        self.runners.remove(id);
        self.checks.borrow_mut().remove(id).is_some()
    }

    /// A result from a runner: only called on change.
    fn check_result(&self, id: &str, status: &str, output: String) {
        let mut checks = self.checks.borrow_mut();
        let Some(c) = checks.get_mut(id) else {
            return;
        };
        if c.check.status != status {
            c.critical_since = (status == "critical").then(Instant::now);
            crate::metrics::incr_counter(
                "muster.checks.transitions",
                &[("status", status.to_string())],
                1.0,
            );
        }
        c.check.status = status.to_string();
        c.check.output = output;
        drop(checks);
        self.touch();
    }

    /// `/v1/agent/check/pass|warn|fail|update`: TTL checks only.
    pub fn update_ttl(&self, id: &str, status: Status, output: String) -> Result<(), AgentError> {
        let is_ttl = match self.checks.borrow().get(id) {
            None => return Err(AgentError::UnknownCheck(id.to_string())),
            Some(c) => matches!(c.def.as_ref().map(|d| &d.kind), Some(CheckKind::Ttl { .. })),
        };
        if !is_ttl {
            return Err(AgentError::Check(checks::CheckError::NotTtl(
                id.to_string(),
            )));
        }
        self.runners.ttl_update(id, status, output.clone())?;
        // The runner reports only changes; record the update even when it is not one.
        self.check_result(id, status.as_str(), output);
        Ok(())
    }

    /// Node maintenance: a critical `_node_maintenance` check while enabled.
    pub fn node_maintenance(&self, enable: bool, reason: &str) {
        if enable {
            let notes = if reason.is_empty() {
                DEFAULT_MAINT_REASON
            } else {
                reason
            };
            self.add_check_quiet(
                CheckRegistration {
                    check: HealthCheck {
                        check_id: NODE_MAINT_CHECK.into(),
                        name: "Node Maintenance Mode".into(),
                        notes: notes.into(),
                        status: "critical".into(),
                        check_type: "maintenance".into(),
                        ..HealthCheck::default()
                    },
                    def: None,
                    deregister_after: None,
                },
                Source::Api,
            );
        } else {
            self.remove_check_quiet(NODE_MAINT_CHECK);
        }
        self.touch();
    }

    pub fn service_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), AgentError> {
        let Some(svc) = self.service(id) else {
            return Err(AgentError::UnknownService(id.to_string()));
        };
        let check_id = format!("{SERVICE_MAINT_PREFIX}{id}");
        if enable {
            let notes = if reason.is_empty() {
                DEFAULT_SERVICE_MAINT_REASON
            } else {
                reason
            };
            self.add_check_quiet(
                CheckRegistration {
                    check: HealthCheck {
                        check_id,
                        name: "Service Maintenance Mode".into(),
                        notes: notes.into(),
                        status: "critical".into(),
                        service_id: id.into(),
                        service_name: svc.service.clone(),
                        service_tags: svc.tags.clone(),
                        check_type: "maintenance".into(),
                        ..HealthCheck::default()
                    },
                    def: None,
                    deregister_after: None,
                },
                Source::Api,
            );
        } else {
            self.remove_check_quiet(&check_id);
        }
        self.touch();
        Ok(())
    }

    /// Replaces every definition that came from config files with `services` and `checks`.
    pub fn load_config(
        &self,
        services: Vec<(Service, Vec<CheckRegistration>)>,
        checks: Vec<CheckRegistration>,
    ) {
        let old_services: Vec<String> = self
            .services
            .borrow()
            .iter()
            .filter(|(_, s)| s.source == Source::Config)
            .map(|(id, _)| id.clone())
            .collect();
        let old_checks: Vec<String> = self
            .checks
            .borrow()
            .iter()
            .filter(|(_, c)| c.source == Source::Config && c.check.service_id.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        let new_ids: BTreeSet<String> = services
            .iter()
            .map(|(s, _)| {
                if s.id.is_empty() {
                    s.service.clone()
                } else {
                    s.id.clone()
                }
            })
            .collect();
        for id in old_services.iter().filter(|id| !new_ids.contains(*id)) {
            let _ = self.remove_service(id);
        }
        for id in old_checks {
            self.remove_check_quiet(&id);
        }
        for (s, c) in services {
            let _ = self.add_service(s, c, true, Source::Config);
        }
        for c in checks {
            if let Err(e) = self.add_check(c, Source::Config) {
                log::warn!("check from config not loaded: {e}");
            }
        }
        self.touch();
    }

    /// Deregisters services whose check has been critical longer than its
    /// `DeregisterCriticalServiceAfter`.
    fn reap(&self) {
        let now = Instant::now();
        let doomed: BTreeSet<String> = self
            .checks
            .borrow()
            .values()
            .filter_map(|c| {
                let after = c.deregister_after?.max(MIN_DEREGISTER_AFTER);
                let since = c.critical_since?;
                (!c.check.service_id.is_empty() && now.duration_since(since) >= after)
                    .then(|| c.check.service_id.clone())
            })
            .collect();
        for id in doomed {
            log::info!("removing service {id:?}: its check has been critical too long");
            let _ = self.remove_service(&id);
        }
    }

    /// Schedules a sync; coalesces requests made while one is running.
    pub fn sync_soon(&self) {
        if self.syncing.get() {
            return;
        }
        self.syncing.set(true);
        glommio::spawn_local_into(
            async {
                let a = agent();
                loop {
                    let generation = a.generation.get();
                    let view = a.view_seq.get();
                    let r = a.sync().await;
                    a.attempt_done(generation);
                    match r {
                        Ok(()) => {}
                        Err(crate::http::error::ApiError::NoLeader) => {
                            // Nothing can be written before a leader exists; the raft core
                            // announces one (after registering this node) with a new view.
                            log::debug!("anti-entropy sync deferred: no cluster leader");
                            a.next_view(view).await;
                            continue;
                        }
                        Err(e) => {
                            log::warn!("anti-entropy sync failed: {e}");
                            glommio::timer::sleep(SYNC_RETRY).await;
                            continue;
                        }
                    }
                    if a.generation.get() == generation {
                        break;
                    }
                }
                a.syncing.set(false);
            },
            core().queues.background,
        )
        .expect("background task queue exists")
        .detach();
    }

    /// One anti-entropy pass: compare the catalog's view of this node with the local state and
    /// write the differences through raft.
    async fn sync(&self) -> Result<(), crate::http::error::ApiError> {
        let c = core();
        let settings = c.settings.clone();
        let node = settings.node_name.clone();
        let owner = owner_of(&node, c.placement.nshards());
        let n = node.clone();
        let (remote_node, remote_services, remote_checks) = Shards::default()
            .call(owner, move |s| {
                let cat = s.catalog();
                (
                    cat.node(&n).cloned(),
                    cat.node_services(&n),
                    cat.node_checks(&n),
                )
            })
            .await?;
        let mut writes = Vec::new();
        let me = match remote_node {
            Some(me) => Node {
                create_index: 0,
                modify_index: 0,
                ..me
            },
            None => {
                // As Consul's agent does: it registers its own node when the catalog lacks it
                // (the leader adds serfHealth to it).
                let me = raftcore::self_node();
                writes.push(Command::Register(Box::new(Registration {
                    node: me.clone(),
                    skip_node_update: false,
                    service: None,
                    checks: Vec::new(),
                })));
                me
            }
        };
        let local_services = self.services();
        let local_checks = self.checks();
        let remote_s: BTreeMap<String, Service> = remote_services
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let remote_c: BTreeMap<String, HealthCheck> = remote_checks
            .into_iter()
            .map(|c| (c.check_id.clone(), c))
            .collect();
        for s in &local_services {
            let checks: Vec<HealthCheck> = local_checks
                .iter()
                .filter(|c| c.service_id == s.id)
                .cloned()
                .collect();
            let service_same = remote_s.get(&s.id).is_some_and(|r| r.same_content(s));
            let checks_same = checks
                .iter()
                .all(|c| remote_c.get(&c.check_id).is_some_and(|r| r.same_content(c)));
            if !service_same || !checks_same {
                writes.push(Command::Register(Box::new(Registration {
                    node: me.clone(),
                    skip_node_update: true,
                    service: Some(s.clone()),
                    checks,
                })));
            }
        }
        let node_checks: Vec<HealthCheck> = local_checks
            .iter()
            .filter(|c| c.service_id.is_empty())
            .filter(|c| !remote_c.get(&c.check_id).is_some_and(|r| r.same_content(c)))
            .cloned()
            .collect();
        if !node_checks.is_empty() {
            writes.push(Command::Register(Box::new(Registration {
                node: me.clone(),
                skip_node_update: true,
                service: None,
                checks: node_checks,
            })));
        }
        let local_ids: BTreeSet<&str> = local_services.iter().map(|s| s.id.as_str()).collect();
        for id in remote_s.keys() {
            if !local_ids.contains(id.as_str()) && id != CONSUL_SERVICE {
                writes.push(Command::Deregister {
                    node: node.clone(),
                    service_id: Some(id.clone()),
                    check_id: None,
                });
            }
        }
        let local_check_ids: BTreeSet<&str> =
            local_checks.iter().map(|c| c.check_id.as_str()).collect();
        for (id, r) in &remote_c {
            // A service's checks go with the service's deregistration above.
            let owner_gone = !r.service_id.is_empty() && !local_ids.contains(r.service_id.as_str());
            if !local_check_ids.contains(id.as_str()) && id != SERF_CHECK && !owner_gone {
                writes.push(Command::Deregister {
                    node: node.clone(),
                    service_id: None,
                    check_id: Some(id.clone()),
                });
            }
        }
        for w in writes {
            if let CommandResult::Error(e) = raftcore::propose(w).await?.1 {
                log::warn!("anti-entropy write refused: {e}");
            }
        }
        Ok(())
    }
}
