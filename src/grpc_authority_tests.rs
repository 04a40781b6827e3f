use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[test]
fn h2s_message_gives_the_authority_and_other_messages_nothing() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        (
            r#"malformed headers: malformed authority (b"/var/lib/kubelet/device-plugins/a.sock"): invalid uri character"#,
            Some((
                "/var/lib/kubelet/device-plugins/a.sock",
                "invalid uri character",
            )),
        ),
        // A `): ` inside the authority: the reason is after the last one.
        (
            r#"malformed headers: malformed authority (b"x): y"): invalid authority"#,
            Some(("x): y", "invalid authority")),
        ),
        // Not quoted as h2 0.4 quotes it: kept whole rather than lost.
        (
            r#"malformed headers: malformed authority (/a.sock): invalid uri character"#,
            Some(("/a.sock", "invalid uri character")),
        ),
        (
            r#"malformed headers: malformed scheme ("1http"): invalid scheme"#,
            None,
        ),
        ("malformed headers: missing method", None),
        ("connection error PROTOCOL_ERROR", None),
        ("", None),
    ];
    for (msg, want) in cases {
        assert_eq!(parse(msg), *want, "{msg}");
    }
}

#[test]
fn the_first_refusal_warns_then_one_warning_per_interval_with_the_count_held_back() {
    let seen = RefusedAuthorities::new();
    let every = Duration::from_secs(60);
    let t0 = Instant::now();
    assert_eq!(seen.record("/a.sock", t0, every), Some(0));
    assert_eq!(
        seen.record("/a.sock", t0 + Duration::from_secs(1), every),
        None
    );
    assert_eq!(
        seen.record("/b.sock", t0 + Duration::from_secs(59), every),
        None
    );
    assert_eq!(
        seen.record("/b.sock", t0 + Duration::from_secs(60), every),
        Some(2)
    );
    assert_eq!(
        seen.record("/b.sock", t0 + Duration::from_secs(61), every),
        None
    );
    assert_eq!(
        seen.snapshot(),
        RefusedAuthorityView {
            count: 5,
            last_authority: Some("/b.sock".into()),
        }
    );
}

/// What `f` logs through the agent's stack as `cli::init_logging` builds
/// it (log layer with the `info` filter, this layer outside it; none
/// when `seen` is none), under a scoped dispatcher. The warning itself
/// needs the global one: tests/grpc_authority_log.rs.
fn log_with(seen: Option<&'static RefusedAuthorities>, f: impl FnOnce()) -> String {
    // fmt writes through `&File`; the test reads the file back.
    let sink = tempfile::NamedTempFile::new().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(sink.reopen().unwrap())
                .with_filter(EnvFilter::new("info")),
        )
        .with(seen.map(|s| layer(s, WARN_EVERY)));
    tracing::subscriber::with_default(subscriber, f);
    std::fs::read_to_string(sink.path()).unwrap()
}

#[test]
fn without_a_refusal_the_log_is_what_the_filter_alone_gives() {
    let seen: &'static RefusedAuthorities = Box::leak(Box::new(RefusedAuthorities::new()));
    let events = || {
        tracing::info!(pool = "intel.com/net", "serving");
        // h2's other debug events reach this layer and are ignored.
        tracing::debug!(target: "h2::server", "malformed headers: missing path");
        tracing::debug!(target: "h2::proto::connection", "Connection::poll; connection error");
        tracing::debug!("a fastpath debug line");
        tracing::warn!("a warning");
    };
    // Timestamps differ; the rest of each line must not.
    let strip = |s: String| -> Vec<String> {
        s.lines()
            .map(|l| l.split_once(' ').map_or(l, |x| x.1).to_string())
            .collect()
    };
    let with_layer = strip(log_with(Some(seen), events));
    let without = strip(log_with(None, events));
    assert_eq!(with_layer, without);
    assert_eq!(with_layer.len(), 2, "{with_layer:?}");
    assert_eq!(seen.snapshot(), RefusedAuthorityView::default());
}
