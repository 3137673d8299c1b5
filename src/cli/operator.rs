//! `muster operator raft list-peers|remove-peer`.

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::args::go_bool;
use super::http::{Client, HttpError, HttpFlags, Method, ServerFlags};
use super::table::columnize;
use super::{error_line, info_line};

#[derive(Debug, Clone, Subcommand)]
pub enum OperatorCommand {
    /// Provides cluster-level tools for Consul operators
    Raft {
        #[command(subcommand)]
        cmd: RaftCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum RaftCommand {
    /// Display the current Raft peer configuration
    ListPeers(ListPeersArgs),
    /// Remove a Consul server from the Raft configuration
    RemovePeer(RemovePeerArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ListPeersArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
}

#[derive(Debug, Clone, Args)]
pub struct RemovePeerArgs {
    /// Address (IP:port) of the server to remove.
    #[arg(long, default_value = "")]
    pub address: String,
    /// Raft ID of the server to remove.
    #[arg(long, default_value = "")]
    pub id: String,
    /// Accepted for compatibility with older scripts.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, hide = true)]
    pub stale: bool,
    #[command(flatten)]
    pub http: HttpFlags,
}

/// One server of `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RaftServer {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Node", default)]
    pub node: String,
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Leader", default)]
    pub leader: bool,
    #[serde(rename = "Voter", default)]
    pub voter: bool,
    #[serde(rename = "ProtocolVersion", default)]
    pub protocol_version: String,
    #[serde(rename = "LastIndex", default)]
    pub last_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RaftConfiguration {
    #[serde(rename = "Servers", default)]
    pub servers: Vec<RaftServer>,
}

pub fn run(cmd: OperatorCommand) -> i32 {
    match cmd {
        OperatorCommand::Raft {
            cmd: RaftCommand::ListPeers(a),
        } => list_peers(a),
        OperatorCommand::Raft {
            cmd: RaftCommand::RemovePeer(a),
        } => remove_peer(a),
    }
}

/// The `list-peers` table, with how far each server trails the leader's last index.
pub fn peers_table(cfg: &RaftConfiguration) -> String {
    let leader_index = cfg
        .servers
        .iter()
        .find(|s| s.leader)
        .map_or(0, |s| s.last_index);
    let mut rows: Vec<Vec<String>> = vec![[
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for s in &cfg.servers {
        let proto = if s.protocol_version.is_empty() {
            "<=1".to_owned()
        } else {
            s.protocol_version.clone()
        };
        let state = if s.leader { "leader" } else { "follower" };
        let trails = if s.leader {
            "-".to_owned()
        } else {
            let by = leader_index.saturating_sub(s.last_index);
            if by == 1 {
                "1 commit".to_owned()
            } else {
                format!("{by} commits")
            }
        };
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            state.to_owned(),
            s.voter.to_string(),
            proto,
            s.last_index.to_string(),
            trails,
        ]);
    }
    columnize(&rows)
}

fn list_peers(a: ListPeersArgs) -> i32 {
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    let res: Result<RaftConfiguration, HttpError> = client
        .send_ok(
            Method::Get,
            "/v1/operator/raft/configuration",
            &a.server.query(),
            None,
        )
        .and_then(|r| r.json());
    match res {
        Ok(cfg) => {
            info_line(&peers_table(&cfg));
            0
        }
        Err(e) => {
            error_line(&format!(
                "Error getting peers: Failed to retrieve raft configuration: {e}"
            ));
            1
        }
    }
}

fn remove_peer(a: RemovePeerArgs) -> i32 {
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    let q = match (a.address.is_empty(), a.id.is_empty()) {
        (true, true) => {
            error_line("Error removing peer: an address or id is required for the peer to remove");
            return 1;
        }
        (false, false) => {
            error_line("Error removing peer: cannot give both an address and id");
            return 1;
        }
        (false, true) => {
            if a.address.parse::<std::net::SocketAddr>().is_err() && !a.address.contains(':') {
                error_line(&format!(
                    "Error removing peer: address {:?} is not in a valid format: missing port in address",
                    a.address
                ));
                return 1;
            }
            vec![("address", a.address.clone())]
        }
        (true, false) => vec![("id", a.id.clone())],
    };
    match client.send_ok(Method::Delete, "/v1/operator/raft/peer", &q, None) {
        Ok(_) if !a.address.is_empty() => {
            info_line(&format!("Removed peer with address {:?}", a.address));
            0
        }
        Ok(_) => {
            info_line(&format!("Removed peer with id {:?}", a.id));
            0
        }
        Err(e) => {
            error_line(&format!("Error removing peer: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_peers_table() {
        let mut body = br#"{"Servers":[
          {"ID":"8eb7b3b5-1574-156e-3696-8a93822473d3","Node":"srv1","Address":"10.10.20.91:8300","Leader":true,"Voter":true,"ProtocolVersion":"3","LastIndex":108},
          {"ID":"ae3a20d8-5196-003d-f192-54724f85fe2b","Node":"srv3","Address":"10.10.20.93:8300","Leader":false,"Voter":true,"ProtocolVersion":"3","LastIndex":107},
          {"ID":"3ef46df0-53a8-d226-f026-1da7d77b9a35","Node":"srv2","Address":"10.10.20.92:8300","Leader":false,"Voter":false,"ProtocolVersion":"3","LastIndex":100}
        ],"Index":108}"#
            .to_vec();
        let cfg: RaftConfiguration = simd_json::serde::from_slice(&mut body).unwrap();
        let expected = "\
Node  ID                                    Address           State     Voter  RaftProtocol  Commit Index  Trails Leader By
srv1  8eb7b3b5-1574-156e-3696-8a93822473d3  10.10.20.91:8300  leader    true   3             108           -
srv3  ae3a20d8-5196-003d-f192-54724f85fe2b  10.10.20.93:8300  follower  true   3             107           1 commit
srv2  3ef46df0-53a8-d226-f026-1da7d77b9a35  10.10.20.92:8300  follower  false  3             100           8 commits";
        assert_eq!(peers_table(&cfg), expected);
    }

    #[test]
    fn empty_protocol_prints_legacy_marker() {
        let cfg = RaftConfiguration {
            servers: vec![RaftServer {
                node: "n".into(),
                leader: true,
                ..RaftServer::default()
            }],
        };
        assert!(peers_table(&cfg).lines().nth(1).unwrap().contains("<=1"));
    }
}
