//! `ip(8)` for unit tests that set up real links and namespaces (root).

/// Runs `ip args...`; whether it succeeded.
pub(crate) fn ip_ok(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `ip args...` and fails the test if it does not succeed.
pub(crate) fn ip(args: &[&str]) {
    assert!(ip_ok(args), "ip {}", args.join(" "));
}
