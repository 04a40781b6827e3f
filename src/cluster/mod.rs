//! The Kubernetes API face: the one place that holds a `kube` client, its
//! watches and its writes. It turns what it reads into the plain data the
//! decisions take (claims, policies) and what they return into objects
//! (ResourceSlices, node state, events); no `kube` type leaves this module.

pub mod claims;
mod slice_build;
pub mod slices;

use std::path::PathBuf;

/// How to reach the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// An explicit API server URL (`http://127.0.0.1:8080` for the test
    /// stand-in); when absent, the in-cluster service account, then
    /// `$KUBECONFIG` / `~/.kube/config`, as `kubectl` finds them.
    pub api_server: Option<String>,
    /// A kubeconfig file to use instead of the inferred one.
    pub kubeconfig: Option<PathBuf>,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `--kube-api-server` is not a URL.
    #[error("--kube-api-server {url:?} is not a URL: {reason}")]
    BadUrl {
        /// The value given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No in-cluster account and no kubeconfig.
    #[error("finding the API server: {0}")]
    Config(String),
    /// The client could not be built from the config (TLS, auth).
    #[error("building the Kubernetes client: {0}")]
    Client(String),
}

/// A client for the API server `opts` names.
pub async fn client(opts: &ClusterOptions) -> Result<kube::Client, ClusterError> {
    let config = if let Some(url) = &opts.api_server {
        let uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClusterError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        kube::Config::new(uri)
    } else if let Some(path) = &opts.kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?
    } else {
        kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?
    };
    kube::Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// A kube client error in words a user can act on: the HTTP code and the
/// server's message, and for 401/403 what to fix; `what` names the request
/// (`patch resourceslices/node-a-...`).
pub(crate) fn describe(e: &kube::Error, what: &str) -> String {
    match e {
        kube::Error::Api(s) => {
            let hint = match s.code {
                401 => {
                    ": the API server does not accept the agent's credentials (check the service account token or the kubeconfig)"
                }
                403 => ": the agent's service account may not do this (apply the RBAC in deploy/)",
                _ => "",
            };
            format!("{what}: {} {} ({}){hint}", s.code, s.reason, s.message)
        }
        other => format!("{what}: {other}"),
    }
}
