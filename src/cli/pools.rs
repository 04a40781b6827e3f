//! `fastpath pools`: a dry run of the device-plugin config against this
//! node: which device lands in which pool (device plugin or DRA) and why.
//! Starts nothing; a device both lists select fails it (exit 1), as it
//! stops the agent.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::inventory;
use crate::pools::{self, FactNeeds, HostFacts};
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

/// Arguments of `fastpath pools`.
#[derive(Debug, clap::Args)]
pub struct PoolsArgs {
    /// The reference device-plugin config file.
    #[arg(
        long,
        env = "FASTPATH_CONFIG",
        default_value = "/etc/pcidp/config.json"
    )]
    pub config: PathBuf,
    /// Prefix for entries without `resourcePrefix`.
    #[arg(long, default_value = "intel.com")]
    pub resource_prefix: String,
    /// Where procfs is mounted (default routes).
    #[arg(long, env = "FASTPATH_PROC_ROOT", default_value = crate::procfs::DEFAULT_ROOT)]
    pub proc_root: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Loads the config, scans sysfs and prints the assignment.
pub fn run(sysfs: &Sysfs, args: &PoolsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let cfg = pools::config::parse(&text, &args.resource_prefix)
        .with_context(|| format!("in {}", args.config.display()))?;
    let inv =
        inventory::scan(sysfs).with_context(|| format!("scanning {}", sysfs.root().display()))?;
    let host = HostFacts::gather(
        sysfs,
        &Procfs::new(&args.proc_root),
        &inv,
        FactNeeds::of(&cfg),
    );
    let (modes, overlaps) = pools::modes::assign_both(&inv, &cfg, &host, pools::Reasons::Explain);
    let result = pools::report::report(modes, &overlaps);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &result)?;
        writeln!(out)?;
    } else {
        out.write_all(pools::render_table(&result).as_bytes())?;
    }
    Ok(if overlaps.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
