//! gRPC over unix sockets, the only transport kubelet uses for these APIs.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Error};

/// Connects a channel to the gRPC server listening on the unix socket
/// `path` (the URI is a placeholder; every connection dials the socket).
pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Channel, Error> {
    let path: PathBuf = path.as_ref().to_path_buf();
    Endpoint::from_static("http://[::1]:1")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}
