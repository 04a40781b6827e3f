//! Commands whose output goes to a pipe print no ANSI escape codes: log
//! lines (tracing) and clap's own messages, with `NO_COLOR` unset, so the
//! terminal check alone must keep them plain.

use std::path::Path;
use std::process::{Command, Output};

fn fastpath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn assert_plain(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains('\x1b'), "{what} has escape codes: {text:?}");
}

#[test]
fn a_log_line_to_a_pipe_is_plain() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    // doctor warns (a tracing event) about a policy it cannot parse.
    std::fs::write(&policy, "policies: [").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sysfs");
    let out = fastpath(&[
        "--sysfs-root",
        root.to_str().unwrap(),
        "doctor",
        "--proc-root",
        dir.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN"), "no log line to check: {stderr}");
    assert!(stderr.contains("not parsed"), "{stderr}");
    assert_plain("doctor's stderr", &out.stderr);
    assert_plain("doctor's stdout", &out.stdout);
}

#[test]
fn clap_messages_to_a_pipe_are_plain() {
    let out = fastpath(&["--no-such-flag"]);
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
    assert_plain("the usage error", &out.stderr);
    let out = fastpath(&["--help"]);
    assert!(out.status.success());
    assert_plain("--help", &out.stdout);
}
