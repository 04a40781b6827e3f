//! Command-line interface: argument types and one module per command.
//! Only `main` touches the process environment; commands get their inputs
//! as arguments and write to the writer they are given.

mod agent;
mod doctor;
mod install_cni;
pub mod list;
mod pools;
mod provision;
mod status;

use std::io::Write;
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
// Parsed once per process; boxing the agent's many flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List SR-IOV PFs and their VFs.
    List(list::ListArgs),
    /// Check whether this node can run fastpath, and how to fix it.
    #[command(long_about = doctor::LONG_ABOUT)]
    Doctor(doctor::DoctorArgs),
    /// Install this binary into the CNI bin dir atomically (init container).
    InstallCni(install_cni::InstallCniArgs),
    /// Show what `apply` would change for a node policy, changing nothing.
    Plan(provision::ProvisionArgs),
    /// Create VFs and bind drivers as a node policy says.
    Apply(provision::ProvisionArgs),
    /// Show which device lands in which device-plugin pool and why (dry run).
    Pools(pools::PoolsArgs),
    /// Run the node agent: a kubelet device plugin for every pool.
    Agent(agent::AgentArgs),
    /// Show the running agent's pools, held VFs and VFs attached to pods.
    Status(status::StatusArgs),
}

/// Sets up `tracing` on stderr; `RUST_LOG` (default `info`) filters. The
/// filter belongs to the log layer alone, so that the layer explaining
/// refused gRPC authorities ([`crate::grpc_authority`]) can see h2's
/// debug event without it reaching the log.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Human => builder.boxed(),
        LogFormat::Json => builder.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(crate::grpc_authority::layer(
            &crate::grpc_authority::REFUSED,
            crate::grpc_authority::WARN_EVERY,
        ))
        .try_init();
}

/// Runs a parsed command line, writing its output to stdout. A reader that
/// goes away early (`fastpath list | head`) is not an error.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Buffered: stdout is line-buffered, and `list --json` on a large node
    // is tens of thousands of lines.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let result = run_to(cli, &mut stdout)
        .and_then(|code| stdout.flush().map(|()| code).map_err(anyhow::Error::from));
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Runs a parsed command line, writing its output to `out` (tests pass a
/// `Vec<u8>`; `main` passes stdout through [`run`]).
pub fn run_to(cli: Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let sysfs = Sysfs::new(cli.sysfs_root);
    match cli.command {
        Command::List(args) => list::run(&sysfs, &args, out),
        Command::Doctor(args) => doctor::run(&sysfs, &args, out),
        Command::InstallCni(args) => install_cni::run(&args, out),
        Command::Plan(args) => provision::plan(&sysfs, &args, out),
        Command::Apply(args) => provision::apply(&sysfs, &args, out),
        Command::Pools(args) => pools::run(&sysfs, &args, out),
        Command::Agent(args) => agent::run(sysfs.root(), args),
        Command::Status(args) => status::run(&args, out),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}
