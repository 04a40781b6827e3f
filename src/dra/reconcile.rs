//! The DRA plugin's start-up reconcile: a claim record outlives its claim
//! when the agent was down while kubelet gave up on it, or when a prepare
//! was killed half-way. Each record is looked up through the
//! [`ClaimSource`]; the decision is [`decide`], the restore the same one
//! NodeUnprepareResources runs.

use std::time::Duration;

use super::prepare_run::{self, DraContext};
use super::record::{self, Phase};
use super::{ClaimSource, ClaimSourceError};

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave it: the claim may still be in use, or we cannot tell.
    Keep,
    /// Undo it and drop the record.
    Restore,
}

/// What the API server said about a record's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimSeen {
    /// It exists, with the record's UID.
    Exists,
    /// It is gone (or another claim took its name: another UID).
    Gone,
    /// The API server could not be asked.
    Unknown,
}

impl ClaimSeen {
    /// From a [`ClaimSource::get`] answer.
    pub fn of<T>(r: &Result<Option<T>, ClaimSourceError>) -> Self {
        match r {
            Ok(Some(_)) => Self::Exists,
            Ok(None) | Err(ClaimSourceError::UidMismatch { .. }) => Self::Gone,
            // Deallocated: kubelet no longer needs it on this node.
            Err(ClaimSourceError::NotAllocated { .. }) => Self::Gone,
            Err(ClaimSourceError::Api { .. }) => Self::Unknown,
        }
    }
}

/// A record is restored when its claim is gone, or when its prepare never
/// finished (kubelet has not started a container on it and will prepare
/// again); kept when the claim is live and prepared, or unknown.
pub fn decide(phase: Phase, seen: ClaimSeen) -> Action {
    match (phase, seen) {
        (_, ClaimSeen::Gone) | (Phase::Preparing, ClaimSeen::Exists) => Action::Restore,
        (Phase::Prepared, ClaimSeen::Exists) | (_, ClaimSeen::Unknown) => Action::Keep,
    }
}

/// How long one claim lookup may take: the reconcile runs before the
/// device plugin serves, and an API server that does not answer must not
/// hold the node's pools back (an unanswered lookup keeps the record).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records restored and dropped.
    pub restored: usize,
    /// Records kept.
    pub kept: usize,
    /// Restores that failed (the record stays for the next start).
    pub failures: Vec<String>,
}

/// Looks up every record's claim and restores the ones [`decide`] says.
pub async fn run(ctx: &DraContext, claims: &dyn ClaimSource) -> Report {
    let state = ctx.state_dir.clone();
    let records = tokio::task::spawn_blocking(move || record::load_all(&state))
        .await
        .unwrap_or_default();
    let mut report = Report::default();
    for r in records {
        let lookup = claims.get(&r.claim, &ctx.driver, &ctx.node);
        let seen = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(answer) => ClaimSeen::of(&answer),
            Err(_) => ClaimSeen::Unknown,
        };
        match decide(r.phase, seen) {
            Action::Keep => report.kept += 1,
            Action::Restore => {
                tracing::info!(claim = %r.claim, ?seen, phase = ?r.phase, "restoring a claim record at start");
                let c = ctx.clone();
                let done = tokio::task::spawn_blocking(move || {
                    prepare_run::restore_or_keep(&c, &r).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match done {
                    Ok(()) => report.restored += 1,
                    Err(e) => report.failures.push(e),
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_gone_or_half_prepared_claims_are_restored() {
        use Action::{Keep, Restore};
        use ClaimSeen::{Exists, Gone, Unknown};
        let cases = [
            (Phase::Prepared, Exists, Keep),
            (Phase::Prepared, Gone, Restore),
            (Phase::Prepared, Unknown, Keep),
            (Phase::Preparing, Exists, Restore),
            (Phase::Preparing, Gone, Restore),
            (Phase::Preparing, Unknown, Keep),
        ];
        for (phase, seen, want) in cases {
            assert_eq!(decide(phase, seen), want, "{phase:?} {seen:?}");
        }
    }

    #[test]
    fn claim_source_answers_map_to_what_was_seen() {
        let api = ClaimSourceError::Api {
            claim: "c".into(),
            reason: "x".into(),
        };
        let uid = ClaimSourceError::UidMismatch {
            namespace: "n".into(),
            name: "c".into(),
            wanted: "a".into(),
            found: "b".into(),
        };
        let na = ClaimSourceError::NotAllocated { claim: "c".into() };
        assert_eq!(ClaimSeen::of::<()>(&Ok(Some(()))), ClaimSeen::Exists);
        assert_eq!(ClaimSeen::of::<()>(&Ok(None)), ClaimSeen::Gone);
        assert_eq!(ClaimSeen::of::<()>(&Err(uid)), ClaimSeen::Gone);
        assert_eq!(ClaimSeen::of::<()>(&Err(na)), ClaimSeen::Gone);
        assert_eq!(ClaimSeen::of::<()>(&Err(api)), ClaimSeen::Unknown);
    }
}
