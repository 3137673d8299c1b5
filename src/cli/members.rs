//! `muster members`: the cluster members as the agent sees them (GET /v1/agent/members).

use std::collections::BTreeMap;
use std::net::IpAddr;

use clap::Args;
use serde::Deserialize;

use super::args::go_bool;
use super::http::{Client, HttpFlags, Method};
use super::table::columnize;
use super::{error_line, info_line};

/// Consul's "all segments" marker for `-segment`.
const ALL_SEGMENTS: &str = "_all";

#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Print every tag of each member.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub detailed: bool,
    /// Show the WAN pool (servers of every datacenter).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub wan: bool,
    /// Only members whose status matches this regular expression.
    #[arg(long, default_value = ".*")]
    pub status: String,
    /// Only members of this network segment (Enterprise in Consul).
    #[arg(long, default_value = ALL_SEGMENTS)]
    pub segment: String,
    /// Filter expression applied by the agent.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Admin partition (Enterprise in Consul).
    #[arg(long, default_value = "")]
    pub partition: String,
    #[command(flatten)]
    pub http: HttpFlags,
}

/// A member as `/v1/agent/members` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Member {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Addr", default)]
    pub addr: String,
    #[serde(rename = "Port", default)]
    pub port: u16,
    #[serde(rename = "Tags", default)]
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "Status", default)]
    pub status: i64,
}

/// Serf's member status names.
pub fn status_name(s: i64) -> &'static str {
    match s {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

/// `IP:port` as Go's `net.TCPAddr` prints it (IPv6 in brackets).
fn tcp_addr(ip: &str, port: u16) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        Ok(IpAddr::V4(v4)) => format!("{v4}:{port}"),
        Err(_) => format!(":{port}"),
    }
}

fn tag<'a>(m: &'a Member, k: &str) -> &'a str {
    m.tags.get(k).map(String::as_str).unwrap_or("")
}

fn is_default_partition(p: &str) -> bool {
    p.is_empty() || p == "default"
}

/// Fills in the partition/segment tags the way Consul's command does before printing,
/// and drops members whose status does not match.
pub fn prepare(mut members: Vec<Member>, status: &regex::Regex, segment: &str) -> Vec<Member> {
    for m in &mut members {
        if tag(m, "ap").is_empty() {
            m.tags.insert("ap".to_owned(), "default".to_owned());
        }
        if is_default_partition(tag(m, "ap")) {
            if segment == ALL_SEGMENTS && tag(m, "role") == "consul" {
                m.tags.insert("segment".to_owned(), "<all>".to_owned());
            } else if tag(m, "segment").is_empty() {
                m.tags.insert("segment".to_owned(), "<default>".to_owned());
            }
        } else {
            m.tags.insert("segment".to_owned(), String::new());
        }
    }
    members.retain(|m| status.is_match(status_name(m.status)));
    members.sort_by(|a, b| {
        let server = |m: &Member| tag(m, "role") != "consul";
        let nondefault = |m: &Member| !is_default_partition(tag(m, "ap"));
        server(a)
            .cmp(&server(b))
            .then_with(|| nondefault(a).cmp(&nondefault(b)))
            .then_with(|| tag(a, "segment").cmp(tag(b, "segment")))
            .then_with(|| tag(a, "ap").cmp(tag(b, "ap")))
            .then_with(|| a.name.cmp(&b.name))
    });
    members
}

/// The standard table.
pub fn standard_table(members: &[Member]) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for m in members {
        let addr = tcp_addr(&m.addr, m.port);
        let status = status_name(m.status).to_owned();
        let kind = match tag(m, "role") {
            "node" => "client",
            "consul" => "server",
            _ => {
                rows.push(vec![m.name.clone(), addr, status, "unknown".to_owned()]);
                continue;
            }
        };
        let build = match tag(m, "build") {
            "" => "< 0.3".to_owned(),
            b => b.split(':').next().unwrap_or(b).to_owned(),
        };
        rows.push(vec![
            m.name.clone(),
            addr,
            status,
            kind.to_owned(),
            build,
            tag(m, "vsn").to_owned(),
            tag(m, "dc").to_owned(),
            tag(m, "ap").to_owned(),
            tag(m, "segment").to_owned(),
        ]);
    }
    columnize(&rows)
}

/// The `-detailed` table: every tag as `k=v`, sorted by key.
pub fn detailed_table(members: &[Member]) -> String {
    let mut rows: Vec<Vec<String>> = vec![["Node", "Address", "Status", "Tags"]
        .iter()
        .map(|s| s.to_string())
        .collect()];
    for m in members {
        let tags = m
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            m.name.clone(),
            tcp_addr(&m.addr, m.port),
            status_name(m.status).to_owned(),
            tags,
        ]);
    }
    columnize(&rows)
}

pub fn run(a: MembersArgs) -> i32 {
    let status = match regex::Regex::new(&a.status) {
        Ok(r) => r,
        Err(e) => {
            error_line(&format!("Failed to compile status regexp: {e}"));
            return 1;
        }
    };
    let client = match Client::new(&a.http) {
        Ok(c) => c,
        Err(e) => {
            error_line(&format!("Error connecting to Consul agent: {e}"));
            return 1;
        }
    };
    let mut q = Vec::new();
    if a.segment != ALL_SEGMENTS {
        q.push(("segment", a.segment.clone()));
    }
    if a.wan {
        q.push(("wan", "1".to_owned()));
    }
    if !a.filter.is_empty() {
        q.push(("filter", a.filter.clone()));
    }
    if !a.partition.is_empty() {
        q.push(("partition", a.partition.clone()));
    }
    let members: Vec<Member> = match client
        .send_ok(Method::Get, "/v1/agent/members", &q, None)
        .and_then(|r| r.json())
    {
        Ok(m) => m,
        Err(e) => {
            error_line(&format!("Error retrieving members: {e}"));
            return 1;
        }
    };
    let members = prepare(members, &status, &a.segment);
    if members.is_empty() {
        // Consul: exit 2 when no member matches.
        return 2;
    }
    let out = if a.detailed {
        detailed_table(&members)
    } else {
        standard_table(&members)
    };
    info_line(&out);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
      {"Name":"c1","Addr":"127.0.0.20","Port":8301,"Tags":{"build":"1.22.0:muster","dc":"dc1","role":"node","vsn":"2","id":"x"},"Status":1},
      {"Name":"s2","Addr":"127.0.0.12","Port":8301,"Tags":{"build":"1.22.0:muster","dc":"dc1","role":"consul","vsn":"2","port":"8300"},"Status":4},
      {"Name":"s1","Addr":"127.0.0.11","Port":8301,"Tags":{"build":"1.22.0:muster","dc":"dc1","role":"consul","vsn":"2","port":"8300"},"Status":1},
      {"Name":"odd","Addr":"::1","Port":8301,"Tags":{},"Status":3}
    ]"#;

    fn sample() -> Vec<Member> {
        let mut b = SAMPLE.as_bytes().to_vec();
        simd_json::serde::from_slice(&mut b).unwrap()
    }

    #[test]
    fn standard_output() {
        let all = regex::Regex::new(".*").unwrap();
        let ms = prepare(sample(), &all, ALL_SEGMENTS);
        let out = standard_table(&ms);
        let expected = "\
Node  Address          Status  Type     Build   Protocol  DC   Partition  Segment
s1    127.0.0.11:8301  alive   server   1.22.0  2         dc1  default    <all>
s2    127.0.0.12:8301  failed  server   1.22.0  2         dc1  default    <all>
c1    127.0.0.20:8301  alive   client   1.22.0  2         dc1  default    <default>
odd   [::1]:8301       left    unknown";
        assert_eq!(out, expected);
    }

    #[test]
    fn status_filter() {
        let alive = regex::Regex::new("alive").unwrap();
        let ms = prepare(sample(), &alive, ALL_SEGMENTS);
        let names: Vec<_> = ms.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["s1", "c1"]);
        let none = regex::Regex::new("^leaving$").unwrap();
        assert!(prepare(sample(), &none, ALL_SEGMENTS).is_empty());
    }

    #[test]
    fn detailed_output() {
        let all = regex::Regex::new(".*").unwrap();
        let ms = prepare(sample(), &all, ALL_SEGMENTS);
        let out = detailed_table(&ms);
        let first = out.lines().nth(1).unwrap();
        assert_eq!(
            first,
            "s1    127.0.0.11:8301  alive   ap=default,build=1.22.0:muster,dc=dc1,port=8300,role=consul,segment=<all>,vsn=2"
        );
        assert!(out.starts_with("Node  Address          Status  Tags"));
    }

    #[test]
    fn wan_names_keep_their_dc_suffix() {
        let mut b = br#"[{"Name":"s1.dc1","Addr":"127.0.0.11","Port":8302,"Tags":{"role":"consul","dc":"dc1","vsn":"2","build":"1.22.0"},"Status":1},
                         {"Name":"d1.dc2","Addr":"127.0.0.21","Port":8302,"Tags":{"role":"consul","dc":"dc2","vsn":"2","build":"1.22.0"},"Status":1}]"#
            .to_vec();
        let ms: Vec<Member> = simd_json::serde::from_slice(&mut b).unwrap();
        let out = standard_table(&prepare(
            ms,
            &regex::Regex::new(".*").unwrap(),
            ALL_SEGMENTS,
        ));
        assert!(out.contains("d1.dc2") && out.contains("s1.dc1"), "{out}");
        assert!(out.find("d1.dc2").unwrap() < out.find("s1.dc1").unwrap());
    }
}
