//! Which executor runs which role and which state shard.
use std::fmt;

/// The pinned roles of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Http,
    Dns,
    Gossip,
    Raft,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Http, Role::Dns, Role::Gossip, Role::Raft];

    pub fn name(self) -> &'static str {
        match self {
            Role::Http => "http",
            Role::Dns => "dns",
            Role::Gossip => "gossip",
            Role::Raft => "raft",
        }
    }
}

/// The placement table: executor index per role, and the executor of each state shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub executors: usize,
    /// CPU each executor is pinned to.
    pub cpus: Vec<usize>,
    pub http: usize,
    pub dns: usize,
    pub gossip: usize,
    pub raft: usize,
    /// `shards[i]` is the executor that owns state shard `i`.
    pub shards: Vec<usize>,
}

/// Roles get their own core only when at least two cores are left for shards; below that,
/// roles share cores with each other and with shards as task queues with shares.
const DEDICATED_ROLE_CORES_FROM: usize = 6;

impl Placement {
    pub fn new(cpus: Vec<usize>) -> Placement {
        let n = cpus.len().max(1);
        let (http, dns, gossip, raft, shard_execs): (usize, usize, usize, usize, Vec<usize>) =
            match n {
                1 => (0, 0, 0, 0, vec![0]),
                // The front ends share core 0; raft's log writer and apply loop get core 1.
                2..=3 => (0, 0, 0, 1, (0..n).collect()),
                _ if n < DEDICATED_ROLE_CORES_FROM => (0, 1, 1, 2, (0..n).collect()),
                _ => (0, 1, 2, 3, (4..n).collect()),
            };
        Placement {
            executors: n,
            cpus,
            http,
            dns,
            gossip,
            raft,
            shards: shard_execs,
        }
    }

    pub fn executor_of(&self, role: Role) -> usize {
        match role {
            Role::Http => self.http,
            Role::Dns => self.dns,
            Role::Gossip => self.gossip,
            Role::Raft => self.raft,
        }
    }

    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    /// Roles and shards hosted by executor `e`.
    pub fn hosted(&self, e: usize) -> (Vec<Role>, Vec<usize>) {
        let roles = Role::ALL
            .iter()
            .copied()
            .filter(|r| self.executor_of(*r) == e)
            .collect();
        let shards = (0..self.shards.len())
            .filter(|s| self.shards[*s] == e)
            .collect();
        (roles, shards)
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "executor  cpu  roles                   shards")?;
        for e in 0..self.executors {
            let (roles, shards) = self.hosted(e);
            let roles: Vec<&str> = roles.iter().map(|r| r.name()).collect();
            let shards: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
            writeln!(
                f,
                "{:<9} {:<4} {:<23} {}",
                e,
                self.cpus.get(e).copied().unwrap_or(0),
                if roles.is_empty() {
                    "-".to_string()
                } else {
                    roles.join(",")
                },
                if shards.is_empty() {
                    "-".to_string()
                } else {
                    shards.join(",")
                }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_and_shard_has_an_executor() {
        for n in 1..=12 {
            let p = Placement::new((0..n).collect());
            for r in Role::ALL {
                assert!(p.executor_of(r) < n, "{n} cores: {r:?}");
            }
            assert!(!p.shards.is_empty());
            assert!(p.shards.iter().all(|e| *e < n));
        }
    }

    #[test]
    fn two_cores_split_front_ends_from_raft() {
        let p = Placement::new(vec![0, 1]);
        assert_eq!((p.http, p.dns, p.gossip, p.raft), (0, 0, 0, 1));
        assert_eq!(p.shards, vec![0, 1]);
    }

    #[test]
    fn large_machines_dedicate_role_cores() {
        let p = Placement::new((0..8).collect());
        assert_eq!((p.http, p.dns, p.gossip, p.raft), (0, 1, 2, 3));
        assert_eq!(p.shards, vec![4, 5, 6, 7]);
    }
}
