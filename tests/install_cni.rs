//! `fastpath install-cni` end to end: the built binary copies itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fastpath");

#[test]
fn installs_the_running_binary_and_the_sriov_alias() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["install-cni", "--dest"])
        .arg(dest.path())
        .args(["--also-as", "sriov"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me = fs::read(BIN).unwrap();
    for name in ["fastpath", "sriov"] {
        let p = dest.path().join(name);
        assert_eq!(fs::read(&p).unwrap(), me, "{name} is a copy of the binary");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("sriov"), "{stdout}");
}

#[test]
fn a_missing_destination_fails_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("opt/cni/bin");
    let out = Command::new(BIN)
        .args(["install-cni", "--dest"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opt/cni/bin"), "{stderr}");
    assert!(!missing.exists());
}
