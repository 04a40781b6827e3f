//! Writes the example host tree: `sysfs-fixture <dir>` (used to produce
//! `examples/sysfs` and by the demo).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: sysfs-fixture <dir>");
        return ExitCode::from(2);
    };
    if dir.exists() {
        eprintln!("sysfs-fixture: {} exists; remove it first", dir.display());
        return ExitCode::from(2);
    }
    match sysfs_fixture::presets::write_example_host(&dir) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysfs-fixture: writing {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
