//! The peers Muster is compared with, each started by the harness from the configuration
//! templates in `perf/peers/`, pinned to the same CPUs as Muster. A peer that is not
//! installed is reported as not run (`Ok(None)`), never replaced by a guess.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use crate::gen::{dns, http};
use crate::proc::{find_program, free_ports, pinned_command, Proc};

pub const NSD_CONF: &str = include_str!("../peers/nsd.conf");
pub const KNOT_CONF: &str = include_str!("../peers/knot.conf");
pub const ETCD_FLAGS: &str = include_str!("../peers/etcd.flags");
pub const NGINX_CONF: &str = include_str!("../peers/nginx.conf");

const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running peer server.
pub struct Peer {
    pub name: &'static str,
    pub proc: Proc,
    pub addr: SocketAddr,
}

pub fn not_installed(name: &str) -> String {
    format!("{name} is not installed (run perf/install-peers.sh)")
}

/// Replaces `{{KEY}}` placeholders.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// Waits until a DNS server answers `name` A with NOERROR.
async fn wait_dns(proc: &mut Proc, addr: SocketAddr, name: &str) -> Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(addr).await?;
    let mut q = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut id = 1u16;
    loop {
        proc.check_alive()?;
        id = id.wrapping_add(1);
        dns::encode_query(id, name, 1, &mut q);
        sock.send(&q).await?;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await
        {
            if let Some(h) = dns::parse_reply(&buf[..n]) {
                if h.id == id && h.rcode == 0 && h.answers > 0 {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer {name}; log tail:\n{}",
                proc.name,
                proc.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `GET path` answers 200.
async fn wait_http(proc: &mut Proc, addr: SocketAddr, path: &str) -> Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        proc.check_alive()?;
        if let Ok(r) = http::request(addr, &http::get(path)).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer {path}; log tail:\n{}",
                proc.name,
                proc.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// NSD serving `dir/consul.zone`.
pub async fn start_nsd(dir: &Path, cpus: &str, probe: &str) -> Result<Option<Peer>> {
    let Some(bin) = find_program("nsd") else {
        return Ok(None);
    };
    let port = free_ports(1)?[0];
    let conf = dir.join("nsd.conf");
    std::fs::write(
        &conf,
        render(
            NSD_CONF,
            &[
                ("DIR", dir.display().to_string()),
                ("PORT", port.to_string()),
            ],
        ),
    )?;
    let mut cmd = pinned_command(&bin, cpus);
    cmd.arg("-d").arg("-c").arg(&conf);
    let mut proc = Proc::spawn("nsd", cmd, &dir.join("nsd.out"))?;
    let addr = ([127, 0, 0, 1], port).into();
    wait_dns(&mut proc, addr, probe).await?;
    Ok(Some(Peer {
        name: "nsd",
        proc,
        addr,
    }))
}

/// Knot DNS serving `dir/consul.zone`, re-pinned to `cpus` once up.
pub async fn start_knot(dir: &Path, cpus: &str, probe: &str) -> Result<Option<Peer>> {
    let Some(bin) = find_program("knotd") else {
        return Ok(None);
    };
    let port = free_ports(1)?[0];
    let conf = dir.join("knot.conf");
    std::fs::write(
        &conf,
        render(
            KNOT_CONF,
            &[
                ("DIR", dir.display().to_string()),
                ("PORT", port.to_string()),
            ],
        ),
    )?;
    let mut cmd = pinned_command(&bin, cpus);
    cmd.arg("-c").arg(&conf);
    let mut proc = Proc::spawn("knot", cmd, &dir.join("knot.out"))?;
    let addr = ([127, 0, 0, 1], port).into();
    wait_dns(&mut proc, addr, probe).await?;
    if !cpus.is_empty() {
        // knotd sets its UDP workers' affinity itself; put every thread back on our budget.
        let st = Command::new("taskset")
            .args(["-a", "-cp", cpus, &proc.pid().to_string()])
            .output()?;
        if !st.status.success() {
            bail!(
                "taskset -a -cp {cpus} knotd: {}",
                String::from_utf8_lossy(&st.stderr)
            );
        }
    }
    Ok(Some(Peer {
        name: "knot",
        proc,
        addr,
    }))
}

/// A single-member etcd 3.4 with fsync, client URL on a free port.
pub async fn start_etcd(dir: &Path, cpus: &str) -> Result<Option<Peer>> {
    let Some(bin) = find_program("etcd") else {
        return Ok(None);
    };
    let p = free_ports(2)?;
    let flags = render(
        ETCD_FLAGS,
        &[
            ("DIR", dir.display().to_string()),
            ("PORT", p[0].to_string()),
            ("PEER_PORT", p[1].to_string()),
        ],
    );
    let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
    let mut cmd = pinned_command(&bin, cpus);
    cmd.args(
        flags
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#')),
    );
    let mut proc = Proc::spawn("etcd", cmd, &dir.join("etcd.out"))?;
    let addr = ([127, 0, 0, 1], p[0]).into();
    wait_http(&mut proc, addr, "/health").await?;
    Ok(Some(Peer {
        name: "etcd",
        proc,
        addr,
    }))
}

/// nginx serving `files` (URL path -> bytes) as static files under `dir/www`.
pub async fn start_nginx(
    dir: &Path,
    cpus: &str,
    files: &[(&str, Arc<Vec<u8>>)],
) -> Result<Option<Peer>> {
    let Some(bin) = find_program("nginx") else {
        return Ok(None);
    };
    let port = free_ports(1)?[0];
    let www = dir.join("www");
    for (path, body) in files {
        let f: PathBuf = www.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().context("file dir")?)?;
        std::fs::write(&f, body.as_slice())?;
    }
    std::fs::create_dir_all(dir.join("nginx-tmp"))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        render(
            NGINX_CONF,
            &[
                ("DIR", dir.display().to_string()),
                ("PORT", port.to_string()),
            ],
        ),
    )?;
    let mut cmd = pinned_command(&bin, cpus);
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"));
    let mut proc = Proc::spawn("nginx", cmd, &dir.join("nginx.out"))?;
    let addr = ([127, 0, 0, 1], port).into();
    wait_http(&mut proc, addr, files.first().map_or("/", |f| f.0)).await?;
    Ok(Some(Peer {
        name: "nginx",
        proc,
        addr,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_every_placeholder() {
        let vars = [
            ("DIR", "/tmp/x".to_string()),
            ("PORT", "5300".to_string()),
            ("PEER_PORT", "5301".to_string()),
        ];
        for t in [NSD_CONF, KNOT_CONF, ETCD_FLAGS, NGINX_CONF] {
            let r = render(t, &vars);
            assert!(!r.contains("{{"), "unrendered placeholder in:\n{r}");
            assert!(r.contains("5300"));
        }
        assert!(render(NSD_CONF, &vars).contains("ip-address: 127.0.0.1@5300"));
        assert!(render(NSD_CONF, &vars).contains("rrl-ratelimit: 0"));
    }
}
