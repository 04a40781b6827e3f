//! Fetches the agent's view over its status socket
//! (`<state_dir>/agent.sock`, 0600: only root reads it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::status::{AgentStatus, socket_path};

/// The agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Connecting or talking to the socket.
    #[error(
        "agent status socket {path}: {source} (is `fastpath agent` running with this state dir?)"
    )]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The agent's answer was not what it serves.
    #[error("agent status socket {path}: unexpected answer: {what}")]
    Answer {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// `GET /status` on the agent's socket under `state_dir`.
pub fn fetch(state_dir: &Path) -> Result<AgentStatus, StatusError> {
    let path = socket_path(state_dir);
    let io = |source| StatusError::Socket {
        path: path.clone(),
        source,
    };
    let mut s = UnixStream::connect(&path).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: fastpath\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let answer = |what: String| StatusError::Answer {
        path: path.clone(),
        what,
    };
    let text = String::from_utf8(raw).map_err(|e| answer(e.to_string()))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| answer("no end of headers".into()))?;
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 200 ") {
        return Err(answer(status_line.to_string()));
    }
    serde_json::from_str(body).map_err(|e| answer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_agent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = fetch(dir.path()).unwrap_err().to_string();
        assert!(e.contains("agent.sock"), "{e}");
        assert!(
            e.ends_with("(is `fastpath agent` running with this state dir?)"),
            "{e}"
        );
    }
}
