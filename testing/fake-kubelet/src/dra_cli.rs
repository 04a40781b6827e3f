//! `fake-kubelet --dra-driver NAME --dra-prepare NS/NAME/UID ...`: kubelet's
//! side of one DRA driver for the VM scenario: the plugin watcher finds the
//! driver in `--plugins-registry-dir` (GetInfo, NotifyRegistrationStatus),
//! then NodePrepareResources / NodeUnprepareResources of the claims named,
//! one call each, printed as JSON.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{DiscoveredPlugin, DraClient, register_plugin};

/// What the DRA part of the command line asks.
pub struct DraArgs<'a> {
    /// kubelet's plugins_registry directory.
    pub registry: &'a Path,
    /// The driver's name (its registration's `PluginInfo.name`).
    pub driver: &'a str,
    /// `v1` or `v1beta1`.
    pub version: &'a str,
    /// Claims to prepare, `NAMESPACE/NAME/UID`.
    pub prepare: &'a [String],
    /// Claims to unprepare after that, `NAMESPACE/NAME/UID`.
    pub unprepare: &'a [String],
    /// How long to wait for the driver and for each call.
    pub timeout: Duration,
}

/// `NS/NAME/UID` into kubelet's (namespace, name, uid).
fn claim_id(s: &str) -> anyhow::Result<(String, String, String)> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [ns, name, uid] if !ns.is_empty() && !name.is_empty() && !uid.is_empty() => {
            Ok((ns.to_string(), name.to_string(), uid.to_string()))
        }
        _ => bail!("{s:?} is not NAMESPACE/NAME/UID"),
    }
}

/// The plugin watcher's view: every socket in the registry, GetInfo, until
/// one names `driver` (sockets that do not answer, e.g. left by a killed
/// agent, are skipped, as kubelet skips them).
async fn find(
    registry: &Path,
    driver: &str,
    timeout: Duration,
) -> anyhow::Result<DiscoveredPlugin> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut socks: Vec<_> = std::fs::read_dir(registry)
            .with_context(|| format!("reading {}", registry.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect();
        socks.sort();
        for s in socks {
            if let Ok(p) = register_plugin(&s).await
                && p.info.name == driver
                && p.info.r#type == device_plugin::DRA_PLUGIN_TYPE
            {
                return Ok(p);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no DRA driver {driver} registered in {}",
                registry.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn borrowed(v: &[(String, String, String)]) -> Vec<(&str, &str, &str)> {
    v.iter()
        .map(|(n, m, u)| (n.as_str(), m.as_str(), u.as_str()))
        .collect()
}

/// Registration, then the prepares, then the unprepares.
pub async fn run(a: DraArgs<'_>) -> anyhow::Result<Value> {
    let prepare = a
        .prepare
        .iter()
        .map(|s| claim_id(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let unprepare = a
        .unprepare
        .iter()
        .map(|s| claim_id(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plugin = find(a.registry, a.driver, a.timeout).await?;
    let mut c = DraClient::connect(Path::new(&plugin.info.endpoint), a.version).await?;
    let mut out = json!({
        "driver": plugin.info.name,
        "endpoint": plugin.info.endpoint,
        "supportedVersions": plugin.info.supported_versions,
        "prepare": {},
        "unprepare": {},
    });
    if !prepare.is_empty() {
        let refs = borrowed(&prepare);
        let r = tokio::time::timeout(a.timeout, c.prepare(&refs))
            .await
            .context("NodePrepareResources timed out")?
            .context("NodePrepareResources")?;
        for (uid, claim) in r.claims {
            let devices: Vec<Value> = claim
                .devices
                .iter()
                .map(|d| {
                    json!({
                        "requestNames": d.request_names,
                        "poolName": d.pool_name,
                        "deviceName": d.device_name,
                        "cdiDeviceIDs": d.cdi_device_ids,
                    })
                })
                .collect();
            out["prepare"][uid] = json!({"devices": devices, "error": claim.error});
        }
    }
    if !unprepare.is_empty() {
        let refs = borrowed(&unprepare);
        let r = tokio::time::timeout(a.timeout, c.unprepare(&refs))
            .await
            .context("NodeUnprepareResources timed out")?
            .context("NodeUnprepareResources")?;
        for (uid, claim) in r.claims {
            out["unprepare"][uid] = json!({"error": claim.error});
        }
    }
    Ok(out)
}
