//! `/v1/agent/monitor` (streamed logs), `/v1/agent/host`, `/v1/agent/version` and
//! `/v1/agent/token/:type`.
use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;

use super::{allow, Ctx};
use crate::cli::logtap;
use crate::http::body::{self, Obj};
use crate::http::encode::json_response;
use crate::http::error::{ApiError, ApiResult};
use crate::http::request::Method;
use crate::http::response::Response;
use crate::runtime::CONSUL_COMPAT_VERSION;

/// Whether `tail` (after `/v1/agent/`) is served here.
pub fn serves(tail: &str) -> bool {
    matches!(tail, "monitor" | "host" | "version") || tail.starts_with("token/") || tail == "token"
}

pub async fn handle(cx: Ctx, tail: &str) -> ApiResult<Response> {
    match tail {
        "monitor" => {
            allow(&cx, &[Method::Get])?;
            monitor(&cx)
        }
        "host" => {
            allow(&cx, &[Method::Get])?;
            host(&cx).await
        }
        "version" => {
            allow(&cx, &[Method::Get])?;
            Ok(json_response(200, &version(), cx.opts.pretty))
        }
        _ => {
            allow(&cx, &[Method::Put])?;
            token(&cx, tail.strip_prefix("token/").unwrap_or(""))
        }
    }
}

fn monitor(cx: &Ctx) -> ApiResult<Response> {
    let q = &cx.req.query;
    let level = match q.get("loglevel") {
        Some(l) if !l.is_empty() => l,
        _ => "INFO",
    };
    let level = logtap::parse_level(level)
        .ok_or_else(|| ApiError::bad(format!("Unknown log level: {level}")))?;
    let json = q.has("logjson");
    let rx = logtap::subscribe(level, json);
    Ok(Response::new(200).with_stream("text/plain; charset=utf-8", rx))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionOut {
    #[serde(rename = "SHA")]
    sha: &'static str,
    build_date: &'static str,
    human_version: String,
    #[serde(rename = "FIPS")]
    fips: &'static str,
}

fn version() -> VersionOut {
    VersionOut {
        sha: "",
        build_date: "",
        human_version: CONSUL_COMPAT_VERSION.to_string(),
        fips: "",
    }
}

/// The token types Consul's `/v1/agent/token/` takes, with the legacy names mapped to theirs.
fn token_kind(t: &str) -> Option<&'static str> {
    Some(match t {
        "default" | "acl_token" => "default",
        "agent" | "acl_agent_token" => "agent",
        "agent_recovery" | "agent_master" | "acl_agent_master_token" => "agent_recovery",
        "replication" | "acl_replication_token" => "replication",
        "config_file_service_registration" => "config_file_service_registration",
        "dns" => "dns",
        _ => return None,
    })
}

thread_local! {
    /// Tokens set over the API. They live on the HTTP executor with the agent; they are only
    /// stored until ACLs are enforced.
    static TOKENS: RefCell<BTreeMap<&'static str, String>> = RefCell::default();
}

fn token(cx: &Ctx, kind: &str) -> ApiResult<Response> {
    let Some(k) = token_kind(kind) else {
        return Err(ApiError::NotFound(format!("Token {kind:?} is unknown")));
    };
    let v =
        body::parse(&cx.req.body)?.ok_or_else(|| ApiError::bad("Request decode failed: EOF"))?;
    let o = Obj::of(&v, "token")?;
    let value = o.str("Token")?.unwrap_or_default().to_string();
    TOKENS.with(|t| t.borrow_mut().insert(k, value));
    log::info!("Updated agent's ACL token: token={k}");
    Ok(Response::new(200))
}

#[derive(Serialize, Default)]
struct MemoryOut {
    total: u64,
    available: u64,
    used: u64,
    #[serde(rename = "usedPercent")]
    used_percent: f64,
    free: u64,
}

#[derive(Serialize, Default)]
struct CpuOut {
    cpu: u32,
    #[serde(rename = "vendorId")]
    vendor_id: String,
    family: String,
    model: String,
    stepping: i32,
    #[serde(rename = "physicalId")]
    physical_id: String,
    #[serde(rename = "coreId")]
    core_id: String,
    cores: i32,
    #[serde(rename = "modelName")]
    model_name: String,
    mhz: f64,
    #[serde(rename = "cacheSize")]
    cache_size: i32,
    flags: Vec<String>,
    microcode: String,
}

#[derive(Serialize, Default)]
struct HostInfoOut {
    hostname: String,
    uptime: u64,
    #[serde(rename = "bootTime")]
    boot_time: u64,
    procs: u64,
    os: String,
    platform: String,
    #[serde(rename = "platformFamily")]
    platform_family: String,
    #[serde(rename = "platformVersion")]
    platform_version: String,
    #[serde(rename = "kernelVersion")]
    kernel_version: String,
    #[serde(rename = "kernelArch")]
    kernel_arch: String,
    #[serde(rename = "virtualizationSystem")]
    virtualization_system: String,
    #[serde(rename = "virtualizationRole")]
    virtualization_role: String,
    #[serde(rename = "hostId")]
    host_id: String,
}

#[derive(Serialize, Default)]
struct DiskOut {
    path: String,
    fstype: String,
    total: u64,
    free: u64,
    used: u64,
    #[serde(rename = "usedPercent")]
    used_percent: f64,
    #[serde(rename = "inodesTotal")]
    inodes_total: u64,
    #[serde(rename = "inodesUsed")]
    inodes_used: u64,
    #[serde(rename = "inodesFree")]
    inodes_free: u64,
    #[serde(rename = "inodesUsedPercent")]
    inodes_used_percent: f64,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct HostOut {
    memory: MemoryOut,
    #[serde(rename = "CPU")]
    cpu: Vec<CpuOut>,
    host: HostInfoOut,
    disk: DiskOut,
    collection_time: u64,
    errors: Option<Vec<String>>,
}

/// `/v1/agent/host`: what Consul gathers with gopsutil, read from /proc and statvfs on the
/// blocking pool.
async fn host(cx: &Ctx) -> ApiResult<Response> {
    let disk_path = crate::runtime::core::core()
        .settings
        .data_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("/"));
    let out = glommio::executor()
        .spawn_blocking(move || collect_host(&disk_path))
        .await;
    Ok(json_response(200, &out, cx.opts.pretty))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn kv_lines(text: &str, sep: char) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter_map(move |l| l.split_once(sep))
        .map(|(k, v)| (k.trim(), v.trim()))
}

fn collect_host(disk_path: &std::path::Path) -> HostOut {
    let mut errors = Vec::new();
    let meminfo = read("/proc/meminfo");
    let kb = |name: &str| {
        kv_lines(&meminfo, ':')
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal");
    let available = kb("MemAvailable");
    let used = total.saturating_sub(available);
    let memory = MemoryOut {
        total,
        available,
        used,
        used_percent: if total > 0 {
            used as f64 * 100.0 / total as f64
        } else {
            0.0
        },
        free: kb("MemFree"),
    };
    let mut cpu = Vec::new();
    for block in read("/proc/cpuinfo")
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
    {
        let get = |name: &str| {
            kv_lines(block, ':')
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        cpu.push(CpuOut {
            cpu: get("processor").parse().unwrap_or(0),
            vendor_id: get("vendor_id"),
            family: get("cpu family"),
            model: get("model"),
            stepping: get("stepping").parse().unwrap_or(0),
            physical_id: get("physical id"),
            core_id: get("core id"),
            cores: 1,
            model_name: get("model name"),
            mhz: get("cpu MHz").parse().unwrap_or(0.0),
            cache_size: get("cache size")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            flags: get("flags")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            microcode: get("microcode"),
        });
    }
    let uptime = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let os_release = read("/etc/os-release");
    let rel = |name: &str| {
        kv_lines(&os_release, '=')
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        })
        .unwrap_or(0);
    let host = HostInfoOut {
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        uptime,
        boot_time: now.as_secs().saturating_sub(uptime),
        procs,
        os: std::env::consts::OS.to_string(),
        platform: rel("ID"),
        platform_family: rel("ID_LIKE"),
        platform_version: rel("VERSION_ID"),
        kernel_version: read("/proc/sys/kernel/osrelease").trim().to_string(),
        kernel_arch: std::env::consts::ARCH.to_string(),
        virtualization_system: String::new(),
        virtualization_role: String::new(),
        host_id: read("/etc/machine-id").trim().to_string(),
    };
    let disk = match nix::sys::statvfs::statvfs(disk_path) {
        Ok(s) => {
            let frag = s.fragment_size();
            let total = s.blocks() * frag;
            let free = s.blocks_available() * frag;
            let used = total.saturating_sub(s.blocks_free() * frag);
            let (it, ifree) = (s.files(), s.files_free());
            let pct = |a: u64, b: u64| {
                if b > 0 {
                    a as f64 * 100.0 / b as f64
                } else {
                    0.0
                }
            };
            DiskOut {
                path: disk_path.to_string_lossy().into_owned(),
                fstype: String::new(),
                total,
                free,
                used,
                used_percent: pct(used, used + free),
                inodes_total: it,
                inodes_used: it.saturating_sub(ifree),
                inodes_free: ifree,
                inodes_used_percent: pct(it.saturating_sub(ifree), it),
            }
        }
        Err(e) => {
            errors.push(format!("disk: {e}"));
            DiskOut::default()
        }
    };
    HostOut {
        memory,
        cpu,
        host,
        disk,
        collection_time: now.as_nanos() as u64,
        errors: (!errors.is_empty()).then_some(errors),
    }
}
