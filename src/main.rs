use std::process::ExitCode;

use anyhow::Context as _;
use mimalloc::MiMalloc;
use muster::cli::{self, Command};
use muster::config::Config;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => return exit(e.report()),
    };
    match parsed.command {
        Command::Agent(args) => match run_agent(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("==> {e:#}");
                ExitCode::FAILURE
            }
        },
        other => exit(cli::run(other)),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run_agent(args: &cli::AgentArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args).context("invalid configuration")?;
    for w in cli::logger::install(&config.log).context("cannot set up logging")? {
        log::warn!("{w}");
    }
    for w in &config.warnings {
        log::warn!("{w}");
    }
    config
        .persist_node_id()
        .context("cannot write the node ID to the data dir")?;
    let pid_file = config.pid_file.clone();
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", p.display()))?;
    }
    muster::runtime::install_fail_stop();
    let result = muster::runtime::start(config);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    result.context("agent stopped")
}
