//! Command-line interface: argument types and one module per command.
//! Only `main` touches the process environment; commands get their inputs
//! as arguments and write to the writer they are given.

mod agent;
mod list;
mod pools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::sysfs::Sysfs;

/// fastpath: SR-IOV VFs for Kubernetes pods (provisioner, device plugin, CNI).
#[derive(Debug, Parser)]
#[command(name = "fastpath", version, about)]
pub struct Cli {
    /// Where sysfs is mounted (a fake tree for tests and demos).
    #[arg(long, global = true, env = "FASTPATH_SYSFS_ROOT", default_value = crate::sysfs::DEFAULT_ROOT)]
    pub sysfs_root: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// fastpath's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List SR-IOV PFs and their VFs.
    List(list::ListArgs),
    /// Show which device lands in which device-plugin pool and why (dry run).
    Pools(pools::PoolsArgs),
    /// Run the node agent: a kubelet device plugin for every pool.
    Agent(agent::AgentArgs),
}

/// Sets up `tracing` on stderr; `RUST_LOG` (default `info`) filters.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a parsed command line, writing its output to stdout.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let sysfs = Sysfs::new(cli.sysfs_root);
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::List(args) => list::run(&sysfs, &args, &mut stdout),
        Command::Pools(args) => pools::run(&sysfs, &args, &mut stdout),
        Command::Agent(args) => agent::run(sysfs.root(), args),
    }
}
