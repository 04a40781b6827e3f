//! Why a gRPC client's calls were refused for their `:authority`.
//!
//! h2 (under tonic) resets every stream whose `:authority` is not a valid
//! URI authority with `RST_STREAM PROTOCOL_ERROR`, and says why only at
//! debug level in target `h2::server`. A kubelet older than 1.26 sends the
//! socket path as authority (1.26 and later send `localhost`), as does any
//! grpc-go client dialing a bare socket path, so without this module such
//! a kubelet sees every call fail and the agent logs nothing. Accepting the
//! path would mean changing h2's header validation; fastpath states the
//! minimum kubelet version instead (docs/OPERATIONS.md, "Supported
//! versions") and makes the refusal visible.
//!
//! [`layer`] catches h2's event through its own per-layer filter, which
//! enables only h2::server's debug events (error paths of h2's server, none
//! on a healthy connection), so the log filter and the log output stay as
//! they were. It logs a warning naming the authority and the minimum
//! kubelet version (at most one per [`WARN_EVERY`], with the number held
//! back), and counts the refusals for `/metrics` and `fastpath status`.
//!
//! Its cost: the filter raises tracing's global level (and the `log`
//! crate's, bridged by tracing-log) from `info` to `debug`. A `debug!`
//! call site elsewhere is then turned away by its cached interest, and a
//! `log::debug!` record (netlink, rustls) by one check of each filter,
//! where a level compare did it before: nanoseconds, and none of those
//! sites is on a hot path of the agent. The CNI process builds its own
//! subscriber and is not affected.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// The first kubelet that sends `:authority: localhost` (kubernetes PR 112597).
pub const MIN_KUBELET_VERSION: &str = "1.26";
/// At most one warning per this long; the refusals between are counted.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where h2 logs a malformed request, and how its message starts
/// (h2 0.4 `server.rs`, `convert_poll_message`).
const H2_TARGET: &str = "h2::server";
const MALFORMED_AUTHORITY: &str = "malformed headers: malformed authority (";

/// The process's refusals. The tracing subscriber is process-wide
/// (installed once, by `cli::init_logging`), so its count is too; the
/// agent's telemetry reads it for `/metrics` and the status socket.
pub static REFUSED: RefusedAuthorities = RefusedAuthorities::new();

/// Refusals counted, and when the last warning went out.
#[derive(Debug)]
pub struct RefusedAuthorities {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    count: u64,
    last: Option<String>,
    warned_at: Option<Instant>,
    held_back: u64,
}

/// What `/metrics` and `fastpath status` show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedAuthorityView {
    /// gRPC streams refused since the agent started.
    pub count: u64,
    /// The last authority refused (an older kubelet sends its socket path).
    pub last_authority: Option<String>,
}

impl Default for RefusedAuthorities {
    fn default() -> Self {
        Self::new()
    }
}

impl RefusedAuthorities {
    /// No refusals yet.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                count: 0,
                last: None,
                warned_at: None,
                held_back: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain counters: still right after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The count and the last authority.
    pub fn snapshot(&self) -> RefusedAuthorityView {
        let g = self.lock();
        RefusedAuthorityView {
            count: g.count,
            last_authority: g.last.clone(),
        }
    }

    /// Counts one refusal at `now`; `Some(held back)` when a warning is
    /// due (the first, or the first after `every`), with the refusals
    /// since the last warning that did not get one.
    fn record(&self, authority: &str, now: Instant, every: Duration) -> Option<u64> {
        let mut g = self.lock();
        g.count += 1;
        if g.last.as_deref() != Some(authority) {
            g.last = Some(authority.to_string());
        }
        let due = g
            .warned_at
            .is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            g.warned_at = Some(now);
            Some(std::mem::take(&mut g.held_back))
        } else {
            g.held_back += 1;
            None
        }
    }
}

/// The authority and h2's reason, from h2's message:
/// `malformed headers: malformed authority (b"/x.sock"): invalid uri character`.
fn parse(message: &str) -> Option<(&str, &str)> {
    let (quoted, why) = message
        .strip_prefix(MALFORMED_AUTHORITY)?
        .rsplit_once("): ")?;
    // h2 prints the authority with `{:?}` of its bytes: `b"..."`, with
    // non-printable bytes escaped.
    let authority = quoted
        .strip_prefix('b')
        .unwrap_or(quoted)
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    Some((authority, why))
}

/// The layer; install it with [`layer`], which adds its filter.
pub struct AuthorityLayer {
    seen: &'static RefusedAuthorities,
    every: Duration,
}

/// Collects an event's `message` field.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for AuthorityLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let Some((authority, why)) = parse(&m.0) else {
            return;
        };
        let Some(held_back) = self.seen.record(authority, Instant::now(), self.every) else {
            return;
        };
        // Emitted from inside the dispatch of h2's event: this layer sits
        // outside the log layer, which has already finished with it, and
        // its filter never passes fastpath's own events.
        tracing::warn!(
            authority,
            h2 = why,
            min_kubelet = MIN_KUBELET_VERSION,
            held_back,
            "gRPC call refused: its HTTP/2 :authority {authority:?} is not a host name, so h2 \
             resets the stream (RST_STREAM PROTOCOL_ERROR). kubelet sends \"localhost\" since \
             Kubernetes {MIN_KUBELET_VERSION}; fastpath needs kubelet {MIN_KUBELET_VERSION} or \
             later. Other gRPC clients must set the authority (grpc-go: \
             grpc.WithAuthority(\"localhost\"); grpcio: option grpc.default_authority)"
        );
    }
}

/// Passes only h2::server's debug events.
pub struct H2ServerEvents;

fn is_h2_server_debug_event(meta: &Metadata<'_>) -> bool {
    meta.is_event() && *meta.level() == Level::DEBUG && meta.target() == H2_TARGET
}

impl<S> Filter<S> for H2ServerEvents {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_h2_server_debug_event(meta)
    }

    // Decided once per call site, so no other event ever reaches the
    // layer and costs nothing beyond the cached interest.
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_h2_server_debug_event(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }
}

/// The layer with its filter, counting into `seen` ([`REFUSED`] in the
/// binary) and warning at most once per `every`.
pub fn layer<S>(
    seen: &'static RefusedAuthorities,
    every: Duration,
) -> Filtered<AuthorityLayer, H2ServerEvents, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    AuthorityLayer { seen, every }.with_filter(H2ServerEvents)
}

#[cfg(test)]
#[path = "grpc_authority_tests.rs"]
mod tests;
