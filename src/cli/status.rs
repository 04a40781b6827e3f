//! `fastpath status`: pools, held VFs and attached VFs from the running
//! agent (its status socket under the state dir) and the CNI records.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::status::{self, attachments, client, render};

/// Arguments of `fastpath status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// fastpath's state directory (the agent's status socket, CNI records).
    #[arg(long, env = "FASTPATH_STATE_DIR", default_value = "/var/lib/fastpath")]
    pub state_dir: PathBuf,
}

/// Asks the agent, joins the attachments, prints.
pub fn run(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let agent = client::fetch(&args.state_dir)?;
    let s = status::build(&agent, attachments::list(&args.state_dir));
    if args.json {
        render::json(&s, out)?;
    } else {
        render::text(&s, out)?;
    }
    Ok(ExitCode::SUCCESS)
}
