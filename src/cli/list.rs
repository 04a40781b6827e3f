//! `fastpath list`: the node's SR-IOV inventory as a table or JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::inventory;
use crate::sysfs::Sysfs;

/// Arguments of `fastpath list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON (schema in docs/JSON.md) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Scans `sysfs` and writes the inventory to `out`.
pub fn run(sysfs: &Sysfs, args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let inv =
        inventory::scan(sysfs).with_context(|| format!("scanning {}", sysfs.root().display()))?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &inv)?;
        writeln!(out)?;
    } else {
        out.write_all(inventory::render_table(&inv).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
