//! The one fastpath binary: CLI commands, the node agent, and (when
//! `CNI_COMMAND` is set) the CNI plugin.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A CNI runtime executes us with CNI_COMMAND set and no arguments:
    // answer as the plugin, before clap sees the (empty) command line.
    if let Ok(command) = std::env::var("CNI_COMMAND") {
        let env: fastpath::cni::Env = std::env::vars().collect();
        // Under fault injection a crash point follows every ADD step.
        #[cfg(feature = "fault-injection")]
        let hook = fastpath::fault::CrashHook;
        #[cfg(not(feature = "fault-injection"))]
        let hook = fastpath::cni::NoHook;
        let code = fastpath::cni::run_with_hook(
            &command,
            &env,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &hook,
        );
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // The fault matrices ask the binary which crash points it has.
    #[cfg(feature = "fault-injection")]
    if std::env::args().nth(1).as_deref() == Some("fault-points") {
        for p in fastpath::fault::POINTS {
            println!("{p}");
        }
        return ExitCode::SUCCESS;
    }
    let cli = fastpath::cli::Cli::parse();
    // tracing-subscriber alone would colour a pipe or a log file whenever
    // NO_COLOR is unset; clap decides the same way for its own messages.
    let ansi = fastpath::cli::colour::wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    fastpath::cli::init_logging(cli.log_format, ansi);
    match fastpath::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fastpath: {e:#}");
            ExitCode::FAILURE
        }
    }
}
