//! `muster-perf <workload> [options]`: runs one workload of docs/performance.md, prints the
//! table and writes the JSON result (see perf/README.md).
use anyhow::Result;
use clap::{Parser, Subcommand};

use muster_perf::proc::{cpu_count, pin_current, raise_nofile};
use muster_perf::result::{default_results_dir, RunResult};
use muster_perf::workloads::{self, Common};

#[derive(Parser)]
#[command(
    name = "muster-perf",
    about = "Muster's P99 harness: workloads W1-W6 against Muster and its peers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// W1 DNS: catalog served by Muster vs the same records as a static zone in NSD and Knot.
    #[command(alias = "dns")]
    W1(workloads::w1::W1Opts),
    /// W2 KV writes: PUT /v1/kv vs etcd's /v3/kv/put, 1/64/1000 clients.
    #[command(alias = "kv")]
    W2(workloads::w2::W2Opts),
    /// W3 registration storm: simulated agents register all instances, then 1%/s flap.
    #[command(alias = "storm")]
    W3(workloads::w3::W3Opts),
    /// W4 blocking-query fan-out: N parked watchers, one change, delay distribution.
    #[command(alias = "fanout")]
    W4(workloads::w4::W4Opts),
    /// W5 HTTP reads: health and KV reads vs nginx serving the same bytes.
    #[command(alias = "http")]
    W5(workloads::w5::W5Opts),
    /// W6 memory: instances + KV keys + idle watchers, RSS against raw data size.
    #[command(alias = "memory")]
    W6(workloads::w6::W6Opts),
    /// Not a P99 workload: txn writers vs recursive readers, prints "torn reads: X of Y"
    /// (issue 9). Writes no result file.
    Torn(workloads::torn::TornOpts),
}

impl Cmd {
    fn common(&self) -> &Common {
        match self {
            Cmd::W1(o) => &o.common,
            Cmd::W2(o) => &o.common,
            Cmd::W3(o) => &o.common,
            Cmd::W4(o) => &o.common,
            Cmd::W5(o) => &o.common,
            Cmd::W6(o) => &o.common,
            Cmd::Torn(o) => &o.common,
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = cli.cmd.common().clone();
    // Pin before the runtime starts its threads: they inherit the mask.
    let gen_cpus = common.gen_cpus();
    pin_current(&gen_cpus)?;
    // 50,000 sockets here and as many in the server, which inherits this limit.
    let nofile = raise_nofile(200_000);
    if nofile < 120_000 && !matches!(cli.cmd, Cmd::Torn(_)) {
        eprintln!("warning: RLIMIT_NOFILE is {nofile}; W4/W6 at 50,000 watchers need ~110,000");
    }
    let threads = match cpu_count(&gen_cpus) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    if let Cmd::Torn(o) = &cli.cmd {
        rt.block_on(workloads::torn::run(o))?;
        return Ok(());
    }
    let res: RunResult = rt.block_on(async {
        match &cli.cmd {
            Cmd::W1(o) => workloads::w1::run(o).await,
            Cmd::W2(o) => workloads::w2::run(o).await,
            Cmd::W3(o) => workloads::w3::run(o).await,
            Cmd::W4(o) => workloads::w4::run(o).await,
            Cmd::W5(o) => workloads::w5::run(o).await,
            Cmd::W6(o) => workloads::w6::run(o).await,
            Cmd::Torn(_) => unreachable!("handled above"),
        }
    })?;
    print!("{}", muster_perf::report::render(&res));
    let dir = common
        .results_dir
        .clone()
        .unwrap_or_else(default_results_dir);
    let path = res.write(&dir)?;
    println!("result: {}", path.display());
    Ok(())
}
