//! Muster's command line, compatible with Consul's: the same commands, flags (Go-style,
//! see [`args`]), environment variables, output texts and exit codes.
//!
//! `agent` starts the daemon (see `main.rs`); every other command talks HTTP to an agent
//! like Consul's CLI does and returns the process exit code.

pub mod agent;
pub mod args;
pub mod catalog;
pub mod config_cmd;
pub mod http;
pub mod join;
pub mod kv;
pub mod leave;
pub mod logger;
pub mod logtap;
pub mod maint;
pub mod members;
pub mod operator;
pub mod reload;
pub mod services;
pub mod snapshot;
pub mod table;
pub mod validate;
pub mod version;

use std::ffi::OsString;
use std::io::Write;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use agent::AgentArgs;

#[derive(Debug, Parser)]
#[command(
    name = "muster",
    about = "Muster: a Consul-compatible service discovery and configuration daemon",
    disable_version_flag = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Runs a Muster agent
    Agent(Box<AgentArgs>),
    /// Interact with the catalog
    Catalog {
        #[command(subcommand)]
        cmd: catalog::CatalogCommand,
    },
    /// Interact with the key-value store
    Kv {
        #[command(subcommand)]
        cmd: kv::KvCommand,
    },
    /// Controls node or service maintenance mode
    Maint(maint::MaintArgs),
    /// Lists the members of a Consul cluster
    Members(members::MembersArgs),
    /// Provides cluster-level tools for Consul operators
    Operator {
        #[command(subcommand)]
        cmd: operator::OperatorCommand,
    },
    /// Interact with Consul's Centralized Configurations
    Config {
        #[command(subcommand)]
        cmd: config_cmd::ConfigCommand,
    },
    /// Saves, restores and inspects snapshots of Consul server state
    Snapshot {
        #[command(subcommand)]
        cmd: snapshot::SnapshotCommand,
    },
    /// Interact with services
    Services {
        #[command(subcommand)]
        cmd: services::ServicesCommand,
    },
    /// Prints the Consul version
    Version(version::VersionArgs),
    /// Tell Consul agent to join cluster
    Join(join::JoinArgs),
    /// Gracefully leaves the Consul cluster and shuts down
    Leave(leave::LeaveArgs),
    /// Triggers the agent to reload configuration files
    Reload(reload::ReloadArgs),
    /// Validate config files/directories
    #[command(alias = "configtest")]
    Validate(validate::ValidateArgs),
}

/// Why argv was not turned into a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    #[error(transparent)]
    Args(#[from] args::ArgsError),
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

impl CliError {
    /// Prints the error (or the help text it carries) and gives the exit code: 0 for
    /// help, 1 for usage errors (Go's flag package convention).
    pub fn report(&self) -> i32 {
        match self {
            CliError::Args(e) => {
                error_line(&e.to_string());
                1
            }
            CliError::Clap(e) => {
                use clap::error::{ContextKind, ContextValue, ErrorKind};
                if e.kind() == ErrorKind::UnknownArgument {
                    if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
                        // Go's wording, which scripts and people know; then clap's usage.
                        let name = arg.split('=').next().unwrap_or(arg).trim_start_matches('-');
                        error_line(&format!("flag provided but not defined: -{name}"));
                        let rendered = e.render().to_string();
                        if let Some(i) = rendered.find("Usage:") {
                            error_line(rendered[i..].trim_end());
                        }
                        return 1;
                    }
                }
                let _ = e.print();
                match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                    _ => 1,
                }
            }
        }
    }
}

/// Go's flag package lets a flag repeat, the last one winning; clap needs to be told.
fn override_self(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = cmd.args_override_self(true);
    for n in names {
        cmd = cmd.mut_subcommand(n, override_self);
    }
    cmd
}

/// The clap command tree, ready for parsing and introspection.
pub fn command() -> clap::Command {
    let mut cmd = override_self(Cli::command());
    cmd.build();
    cmd
}

/// Parses Go-style argv (argv\[0\] included).
pub fn parse<I, T>(argv: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut cmd = command();
    let normalized = args::normalize(&cmd, argv)?;
    let matches = cmd.try_get_matches_from_mut(normalized)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// Runs every command but `agent`; returns the exit code.
pub fn run(cmd: Command) -> i32 {
    match cmd {
        Command::Agent(_) => {
            error_line("internal error: the agent is started by main");
            1
        }
        Command::Catalog { cmd } => catalog::run(cmd),
        Command::Config { cmd } => config_cmd::run(cmd),
        Command::Kv { cmd } => kv::run(cmd),
        Command::Maint(a) => maint::run(a),
        Command::Services { cmd } => services::run(cmd),
        Command::Snapshot { cmd } => snapshot::run(cmd),
        Command::Members(a) => members::run(a),
        Command::Operator { cmd } => operator::run(cmd),
        Command::Version(a) => version::run(a),
        Command::Join(a) => join::run(a),
        Command::Leave(a) => leave::run(a),
        Command::Reload(a) => reload::run(a),
        Command::Validate(a) => validate::run(a),
    }
}

/// One line on stdout (Consul's `UI.Info`/`UI.Output`).
pub(crate) fn info_line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
}

/// One line on stderr (Consul's `UI.Error`).
pub(crate) fn error_line(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{s}");
}

/// Quotes like Go's `%q`, for the messages Consul formats with it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                if (c as u32) < 0x80 {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                } else {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Command {
        let mut v = vec!["muster"];
        v.extend_from_slice(args);
        parse(v).unwrap_or_else(|e| panic!("{args:?}: {e}")).command
    }

    #[test]
    fn agent_flags_go_style() {
        let Command::Agent(a) = p(&[
            "agent",
            "-dev",
            "-node",
            "n1",
            "-dc=eu",
            "-http-port",
            "-1",
            "-retry-join",
            "a",
            "--retry-join=b",
            "-config-file",
            "x.json",
            "-config-dir=/etc/d",
            "-ui=false",
        ]) else {
            panic!()
        };
        assert_eq!(a.dev, Some(true));
        assert_eq!(a.node.as_deref(), Some("n1"));
        assert_eq!(a.datacenter.as_deref(), Some("eu"));
        assert_eq!(a.http_port, Some(-1));
        assert_eq!(a.retry_join, ["a", "b"]);
        assert_eq!(
            a.config_paths,
            [std::path::PathBuf::from("x.json"), "/etc/d".into()]
        );
        assert_eq!(a.ui, Some(false));
    }

    #[test]
    fn repeated_scalar_flag_last_wins() {
        let Command::Agent(a) = p(&["agent", "-node=a", "-node=b"]) else {
            panic!()
        };
        assert_eq!(a.node.as_deref(), Some("b"));
    }

    #[test]
    fn kv_put_keeps_dash_data() {
        let Command::Kv {
            cmd: kv::KvCommand::Put(a),
        } = p(&["kv", "put", "-cas", "-modify-index=3", "k", "-v"])
        else {
            panic!()
        };
        assert!(a.cas);
        assert_eq!(a.modify_index, 3);
        assert_eq!(a.args, ["k", "-v"]);
    }

    #[test]
    fn kv_get_flags_and_http_addr() {
        let Command::Kv {
            cmd: kv::KvCommand::Get(a),
        } = p(&[
            "kv",
            "get",
            "-recurse",
            "-http-addr",
            "127.0.0.1:1",
            "-stale",
            "pre/",
        ])
        else {
            panic!()
        };
        assert!(a.recurse && a.server.stale);
        assert_eq!(a.http.http_addr.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(a.args, ["pre/"]);
    }

    #[test]
    fn other_commands_parse() {
        assert!(matches!(p(&["members", "-wan"]), Command::Members(m) if m.wan));
        assert!(matches!(
            p(&["operator", "raft", "list-peers", "-stale"]),
            Command::Operator {
                cmd: operator::OperatorCommand::Raft {
                    cmd: operator::RaftCommand::ListPeers(_)
                }
            }
        ));
        assert!(matches!(p(&["-v"]), Command::Version(_)));
        assert!(matches!(p(&["leave"]), Command::Leave(_)));
        assert!(
            matches!(p(&["join", "-wan", "127.0.0.11"]), Command::Join(j) if j.wan && j.addrs == ["127.0.0.11"])
        );
        assert!(matches!(
            p(&["reload", "--http-addr=127.0.0.1:8500"]),
            Command::Reload(_)
        ));
        assert!(
            matches!(p(&["validate", "/etc/consul.d"]), Command::Validate(v) if v.paths.len() == 1)
        );
        assert!(
            matches!(p(&["configtest", "-config-dir=/etc/x"]), Command::Validate(v) if v.config_paths.len() == 1)
        );
        assert!(
            matches!(p(&["kv", "export", ""]), Command::Kv { cmd: kv::KvCommand::Export(e) } if e.args == [""])
        );
    }

    #[test]
    fn usage_errors_exit_1_help_exits_0() {
        let e = parse(["muster", "agent", "-no-such-flag"]).unwrap_err();
        assert!(
            matches!(&e, CliError::Clap(c) if c.kind() == clap::error::ErrorKind::UnknownArgument)
        );
        let e = parse(["muster", "agent", "-h"]).unwrap_err();
        assert!(matches!(&e, CliError::Clap(c) if c.kind() == clap::error::ErrorKind::DisplayHelp));
        let e = parse(["muster", "agent", "---x"]).unwrap_err();
        assert!(matches!(e, CliError::Args(_)));
    }

    #[test]
    fn new_commands_parse() {
        assert!(matches!(
            p(&["catalog", "nodes", "-detailed", "-node-meta", "a=b", "-node-meta=c=d"]),
            Command::Catalog { cmd: catalog::CatalogCommand::Nodes(n) }
                if n.detailed && n.node_meta == [("a".into(), "b".into()), ("c".into(), "d".into())]
        ));
        assert!(matches!(
            p(&["catalog", "services", "-tags", "-node", "n1"]),
            Command::Catalog { cmd: catalog::CatalogCommand::Services(s) } if s.tags && s.node == "n1"
        ));
        assert!(matches!(
            p(&["catalog", "datacenters"]),
            Command::Catalog {
                cmd: catalog::CatalogCommand::Datacenters(_)
            }
        ));
        assert!(matches!(
            p(&["services", "deregister", "-id", "web"]),
            Command::Services { cmd: services::ServicesCommand::Deregister(d) } if d.id == "web"
        ));
        assert!(matches!(
            p(&["maint", "-enable", "-reason", "x y", "-service=web"]),
            Command::Maint(m) if m.enable && !m.disable && m.reason == "x y" && m.service == "web"
        ));
        assert!(parse(["muster", "catalog", "nodes", "-node-meta", "novalue"]).is_err());
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("web"), "\"web\"");
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
    }

    #[test]
    fn invalid_bool_value_is_an_error() {
        assert!(parse(["muster", "agent", "-dev=maybe"]).is_err());
    }
}
