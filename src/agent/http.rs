//! A minimal HTTP/1.1 server for the agent's own faces: `/healthz`,
//! `/readyz`, `/metrics` on `--http-addr` (TCP) and `/status` on the
//! status socket (unix, 0600). One request per connection, GET/HEAD only,
//! bounded request size and time: nothing here needs more, and a
//! hand-written one keeps a full HTTP stack out of the agent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::metrics;
use super::status::AgentStatus;
use super::telemetry::{State, Telemetry};

/// Longest request head accepted.
const MAX_HEAD: usize = 8192;
/// Time a client gets to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `/healthz`, `/readyz`, `/metrics`.
    Health,
    /// `/status` (JSON) only: the local status socket.
    Status,
}

/// A response: status code, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub code: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn text(code: u16, body: impl Into<String>) -> Reply {
    Reply {
        code,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

/// The loop must have gone round within this long for `/healthz`.
pub fn stall_limit(rescan_interval: Duration) -> Duration {
    rescan_interval * 3 + Duration::from_secs(30)
}

/// `/healthz`: the agent loop is ticking.
pub fn healthz(s: &State, now: Instant, stall: Duration) -> Reply {
    match s.last_tick {
        Some(t) if now.saturating_duration_since(t) <= stall => text(200, "ok\n"),
        Some(t) => text(
            503,
            format!(
                "agent loop stalled: last round {:.1}s ago\n",
                now.saturating_duration_since(t).as_secs_f64()
            ),
        ),
        None => text(503, "agent loop not started\n"),
    }
}

/// `/readyz`: every pool registered with kubelet (or none configured).
pub fn readyz(s: &State) -> Reply {
    if !s.started {
        return text(503, "first scan not done\n");
    }
    let pending: Vec<&str> = s
        .pools
        .iter()
        .filter(|p| !p.registered)
        .map(|p| p.resource.as_str())
        .collect();
    if pending.is_empty() {
        text(200, "ok\n")
    } else {
        text(
            503,
            format!("not registered with kubelet: {}\n", pending.join(", ")),
        )
    }
}

/// What to answer for `method path` on `face`.
pub fn route(face: Face, method: &str, path: &str, t: &Telemetry, stall: Duration) -> Reply {
    if method != "GET" && method != "HEAD" {
        return text(405, "only GET and HEAD\n");
    }
    let path = path.split('?').next().unwrap_or(path);
    let s = t.snapshot();
    match (face, path) {
        (Face::Health, "/healthz") => healthz(&s, Instant::now(), stall),
        (Face::Health, "/readyz") => readyz(&s),
        (Face::Health, "/metrics") => Reply {
            code: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(&s),
        },
        (Face::Status, "/status") => match serde_json::to_string(&AgentStatus::from_state(&s)) {
            Ok(body) => Reply {
                code: 200,
                content_type: "application/json",
                body,
            },
            Err(e) => text(500, format!("{e}\n")),
        },
        _ => text(404, "not found\n"),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Reads the request head: `Ok(None)` when the client sent too much or
/// closed early.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one connection: one request, one response, close.
pub async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    face: Face,
    t: &Telemetry,
    stall: Duration,
) -> std::io::Result<()> {
    let (reply, head_only) = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut s)).await {
        Err(_) => (text(408, "request timeout\n"), false),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => (text(431, "request head too large or incomplete\n"), false),
        Ok(Ok(Some(head))) => {
            let mut parts = head.lines().next().unwrap_or("").split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") => {
                    (route(face, m, p, t, stall), m == "HEAD")
                }
                _ => (text(400, "bad request line\n"), false),
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.code,
        reason(reply.code),
        reply.content_type,
        reply.body.len()
    );
    if !head_only {
        out.push_str(&reply.body);
    }
    s.write_all(out.as_bytes()).await?;
    s.shutdown().await
}

/// Accepts on `listener` until the task is dropped.
pub async fn serve_tcp(listener: tokio::net::TcpListener, t: Arc<Telemetry>, stall: Duration) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let t = t.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(conn, Face::Health, &t, stall).await;
                });
            }
            Err(e) => {
                tracing::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts status requests on the unix socket until the task is dropped.
pub async fn serve_unix(listener: tokio::net::UnixListener, t: Arc<Telemetry>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let t = t.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(conn, Face::Status, &t, Duration::ZERO).await;
                });
            }
            Err(e) => {
                tracing::warn!("status socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::telemetry::PoolView;

    fn pool(name: &str, registered: bool) -> PoolView {
        PoolView {
            resource: name.into(),
            registered,
            devices: vec![],
        }
    }

    #[test]
    fn readiness_waits_for_every_registration() {
        let mut s = State::default();
        assert_eq!(readyz(&s).code, 503);
        s.started = true;
        assert_eq!(readyz(&s).code, 200, "no pools configured is ready");
        s.pools = vec![pool("a/x", true), pool("a/y", false)];
        let r = readyz(&s);
        assert_eq!(
            (r.code, r.body.as_str()),
            (503, "not registered with kubelet: a/y\n")
        );
        s.pools[1].registered = true;
        assert_eq!(readyz(&s).code, 200);
    }

    #[test]
    fn liveness_fails_when_the_loop_stalls() {
        let now = Instant::now();
        let mut s = State::default();
        assert_eq!(healthz(&s, now, Duration::from_secs(1)).code, 503);
        s.last_tick = Some(now);
        assert_eq!(
            healthz(&s, now + Duration::from_millis(900), Duration::from_secs(1)).code,
            200
        );
        assert_eq!(
            healthz(&s, now + Duration::from_secs(2), Duration::from_secs(1)).code,
            503
        );
    }

    #[tokio::test]
    async fn one_request_per_connection_and_bad_input_is_refused() {
        let t = Telemetry::default();
        for (req, want) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            ("GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                "POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            ("garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            ("GET /status HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        ] {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            client.write_all(req.as_bytes()).await.unwrap();
            serve_conn(server, Face::Health, &t, Duration::from_secs(1))
                .await
                .unwrap();
            let mut out = String::new();
            client.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with(want), "{req:?}: {out}");
        }
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[b'a'; MAX_HEAD + 2048]).await.unwrap();
        serve_conn(server, Face::Health, &t, Duration::from_secs(1))
            .await
            .unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }
}
