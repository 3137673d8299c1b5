//! The agent's local state: the services and checks this agent owns, the runners of its checks,
//! maintenance mode, and anti-entropy, which keeps the catalog's view of this node equal to the
//! local state (a partial sync after every local change, a full sync at start and periodically).
//!
//! It lives on the HTTP executor, where the agent endpoints run, so they reach it without a hop.
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use muster_shards::catalog::{HealthCheck, Node, Registration, Service};
use muster_shards::command::{Command, CommandResult};
use muster_shards::coord::owner_of;

pub mod defs;

use crate::checks::{self, CheckDef, CheckKind, Checks, Status};
use crate::runtime::core::{core, Shards};
use crate::runtime::raftcore;

/// How often the full anti-entropy sync runs (Consul: about a minute on small clusters).
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a failed sync is tried again.
const SYNC_RETRY: Duration = Duration::from_millis(200);
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
}

pub struct Agent {
    services: RefCell<BTreeMap<String, LocalService>>,
    checks: RefCell<BTreeMap<String, LocalCheck>>,
    runners: Checks,
    /// Bumped on every local change; a sync that started at an older generation runs again.
    generation: RefCell<u64>,
    syncing: RefCell<bool>,
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
        generation: RefCell::new(0),
        syncing: RefCell::new(false),
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
        *self.generation.borrow_mut() += 1;
        self.sync_soon();
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
                return Err(AgentError::Invalid(format!(
                    "ServiceID {:?} does not exist",
                    c.check.service_id
                )));
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
        if let Some(def) = &c.def {
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
        if *self.syncing.borrow() {
            return;
        }
        *self.syncing.borrow_mut() = true;
        glommio::spawn_local_into(
            async {
                let a = agent();
                loop {
                    let generation = *a.generation.borrow();
                    if let Err(e) = a.sync().await {
                        // Retried until it succeeds: a change must not wait for the next full
                        // sync (e.g. config services loaded before the node is registered).
                        log::debug!("anti-entropy sync deferred: {e}");
                        glommio::timer::sleep(SYNC_RETRY).await;
                        continue;
                    }
                    if *a.generation.borrow() == generation {
                        break;
                    }
                }
                *a.syncing.borrow_mut() = false;
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
        let Some(me) = remote_node else {
            // The leader registers this node (with serfHealth); until then there is nothing to
            // attach services to, so the sync is retried.
            return Err(crate::http::error::ApiError::Internal(
                "this node is not registered in the catalog yet".into(),
            ));
        };
        let me = Node {
            create_index: 0,
            modify_index: 0,
            ..me
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
        let mut writes = Vec::new();
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
