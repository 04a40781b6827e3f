//! Writes a fixture tree: `sysfs-fixture <dir> [name]` (default `two-numa`,
//! the example host in `examples/sysfs`); `sysfs-fixture --list` names them.

use std::path::PathBuf;
use std::process::ExitCode;

use sysfs_fixture::catalog;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: sysfs-fixture <dir> [fixture] | --list");
        return ExitCode::from(2);
    };
    if dir.as_os_str() == "--list" {
        for f in catalog::fixtures() {
            println!("{:<18} {}", f.name, f.about);
        }
        return ExitCode::SUCCESS;
    }
    let name = args
        .next()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "two-numa".to_string());
    let Some(fixture) = catalog::fixture(&name) else {
        eprintln!("sysfs-fixture: no fixture {name:?} (see --list)");
        return ExitCode::from(2);
    };
    if dir.exists() {
        eprintln!("sysfs-fixture: {} exists; remove it first", dir.display());
        return ExitCode::from(2);
    }
    match fixture.write(&dir) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysfs-fixture: writing {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
