//! The one fastpath binary: CLI commands, the node agent, and (when
//! `CNI_COMMAND` is set) the CNI plugin.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fastpath::cli::Cli::parse();
    fastpath::cli::init_logging(cli.log_format);
    match fastpath::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fastpath: {e:#}");
            ExitCode::FAILURE
        }
    }
}
