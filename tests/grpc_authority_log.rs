//! The refused-authority warning through the global subscriber, as the
//! agent installs it. Its own test binary with a single test: the warning
//! is logged from inside the dispatch of h2's event, which tracing allows
//! only under the global dispatcher (a scoped one is busy during a
//! dispatch and drops nested events), and the global one is set once per
//! process.

use fastpath::grpc_authority::{self, RefusedAuthorities, RefusedAuthorityView};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

/// h2's event, as h2 0.4 emits it: target, level, and its message, with
/// the authority printed as the `Bytes` it is (`b"..."`).
fn h2_refuses(authority: &str) {
    tracing::debug!(
        target: "h2::server",
        "malformed headers: malformed authority (b{:?}): {}",
        authority,
        "invalid uri character"
    );
}

#[test]
fn a_refused_authority_is_one_warning_per_interval_and_nothing_else_changes() {
    static SEEN: RefusedAuthorities = RefusedAuthorities::new();
    // fmt writes through `&File`; the test reads the file back.
    let sink = tempfile::NamedTempFile::new().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(sink.reopen().unwrap())
                .with_filter(EnvFilter::new("info")),
        )
        .with(grpc_authority::layer(&SEEN, grpc_authority::WARN_EVERY));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let path = "/var/lib/kubelet/device-plugins/intel.com_net.sock";
    tracing::info!("before");
    for _ in 0..3 {
        h2_refuses(path);
    }
    // Other debug events, h2's or not, stay out of the log.
    tracing::debug!(target: "h2::server", "malformed headers: missing method");
    tracing::debug!("a fastpath debug line");
    h2_refuses("tmp%2Fx.sock");
    tracing::info!("after");

    let out = std::fs::read_to_string(sink.path()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].ends_with("INFO grpc_authority_log: before"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("INFO grpc_authority_log: after"),
        "{out}"
    );
    let warning = lines[1];
    for part in [
        " WARN fastpath::grpc_authority: gRPC call refused",
        &format!("{path:?}"),
        "kubelet 1.26 or later",
        "grpc.default_authority",
        "min_kubelet=\"1.26\"",
        "held_back=0",
    ] {
        assert!(warning.contains(part), "{part} not in {warning}");
    }
    assert_eq!(
        SEEN.snapshot(),
        RefusedAuthorityView {
            count: 4,
            last_authority: Some("tmp%2Fx.sock".into()),
        }
    );
}
