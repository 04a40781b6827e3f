//! `fastpath install-cni`: copies this binary into the CNI bin dir (the
//! DaemonSet's init container runs it) so the runtime can exec it as a CNI
//! plugin, optionally also under the reference plugin's name `sriov`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::install::install_binary;

/// The name the CNI binary is installed under.
const CNI_NAME: &str = "fastpath";

/// Arguments of `fastpath install-cni`.
#[derive(Debug, clap::Args)]
pub struct InstallCniArgs {
    /// The CNI bin directory to install into (must exist).
    #[arg(long, default_value = "/opt/cni/bin")]
    pub dest: PathBuf,

    /// Also install under this name (`sriov`: NADs written for sriov-cni
    /// then run fastpath unchanged).
    #[arg(long, value_name = "NAME")]
    pub also_as: Vec<String>,

    /// The binary to copy (default: the running executable).
    #[arg(long)]
    pub source: Option<PathBuf>,
}

/// Installs the binary and prints each installed path.
pub fn run(args: &InstallCniArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let source = match &args.source {
        Some(s) => s.clone(),
        None => std::env::current_exe().context("finding the running executable")?,
    };
    let mut names = vec![CNI_NAME];
    names.extend(args.also_as.iter().map(String::as_str));
    let installed = install_binary(&source, &args.dest, &names)?;
    for p in installed {
        writeln!(out, "installed {}", p.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
