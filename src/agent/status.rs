//! The agent's side of `fastpath status`: what it serves on its status
//! socket (`<state_dir>/agent.sock`, 0600) as JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::reconcile::StartupReport;
use super::telemetry::{DraView, PoolView, ReconcileView, State};
use crate::grpc_authority::RefusedAuthorityView;

/// The status socket under the state dir.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.sock")
}

/// The running agent's view, as served on `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Every pool served.
    pub pools: Vec<PoolView>,
    /// The last policy reconcile, when a policy is configured.
    pub last_reconcile: Option<ReconcileView>,
    /// The start-up reconcile of CNI records, once it ran.
    #[serde(default)]
    pub startup_reconcile: Option<StartupReport>,
    /// gRPC calls refused for their `:authority` (absent from older agents).
    #[serde(default)]
    pub refused_authorities: RefusedAuthorityView,
    /// The DRA plugin, when `--dra-driver` runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dra: Option<DraView>,
}

impl AgentStatus {
    /// From a telemetry snapshot.
    pub fn from_state(s: &State) -> Self {
        Self {
            pools: s.pools.clone(),
            last_reconcile: s.last_reconcile.clone(),
            startup_reconcile: s.startup.clone(),
            refused_authorities: s.refused_authorities.clone(),
            dra: s.dra.clone(),
        }
    }
}
