//! Device plugin or DRA: a device is served in exactly one mode. The
//! `resourceList` and `draPools` entries are assigned separately (first
//! match wins within each list, as the reference does); a device both
//! lists select is a config error, never a silent pick, because a VF
//! handed out twice would be in two pods.

use std::collections::BTreeMap;

use super::{Config, HostFacts, Pools, Reasons, assign_entries, assign_with};
use crate::inventory::Inventory;
use crate::pci::PciAddress;

/// The device-plugin pools and the DRA pools of one inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct ModePools {
    /// From `resourceList`: served to kubelet as device plugins.
    pub device_plugin: Pools,
    /// From `draPools`: published as DRA devices.
    pub dra: Pools,
}

/// A device that both a `resourceList` and a `draPools` entry select.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "device {device} is selected by resourceList entry {device_plugin_pool:?} and by draPools entry {dra_pool:?}; a device is either a device-plugin or a DRA device: narrow one of the two selectors"
)]
pub struct ModeOverlap {
    /// The device.
    pub device: PciAddress,
    /// The `resourceList` pool (`<prefix>/<name>`).
    pub device_plugin_pool: String,
    /// The `draPools` entry's `resourceName`.
    pub dra_pool: String,
}

/// Assigns both lists; the first device (in `draPools` order, then by
/// address) that both select is the error.
pub fn assign_modes(
    inv: &Inventory,
    cfg: &Config,
    host: &HostFacts,
    wording: Reasons,
) -> Result<ModePools, ModeOverlap> {
    let (pools, overlaps) = assign_both(inv, cfg, host, wording);
    match overlaps.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(pools),
    }
}

/// Assigns both lists and lists every device both select (in `draPools`
/// order, then by address), for a caller that shows them all rather than
/// stopping at the first: `fastpath pools`.
pub fn assign_both(
    inv: &Inventory,
    cfg: &Config,
    host: &HostFacts,
    wording: Reasons,
) -> (ModePools, Vec<ModeOverlap>) {
    let device_plugin = assign_with(inv, cfg, host, wording);
    if cfg.dra_pools.is_empty() {
        // The common case: no second pass over every device per rescan.
        let dra = Pools {
            pools: Vec::new(),
            assignments: Vec::new(),
            notes: cfg.notes.clone(),
        };
        return (ModePools { device_plugin, dra }, Vec::new());
    }
    let dra = assign_entries(inv, "draPools", &cfg.dra_pools, &cfg.notes, host, wording);
    let served: BTreeMap<PciAddress, String> = device_plugin
        .pools
        .iter()
        .flat_map(|p| p.devices.iter().map(move |d| (d.view.pci, p.resource())))
        .collect();
    let overlaps = dra
        .pools
        .iter()
        .flat_map(|p| p.devices.iter().map(move |d| (p, d)))
        .filter_map(|(p, d)| {
            served.get(&d.view.pci).map(|dp| ModeOverlap {
                device: d.view.pci,
                device_plugin_pool: dp.clone(),
                dra_pool: p.config.resource_name.clone(),
            })
        })
        .collect();
    (ModePools { device_plugin, dra }, overlaps)
}

#[cfg(test)]
mod tests {
    use sysfs_fixture::FakeSysfs;
    use sysfs_fixture::presets::e810;

    use super::*;
    use crate::pools::{FactNeeds, config};
    use crate::procfs::Procfs;
    use crate::sysfs::Sysfs;

    fn modes(text: &str) -> Result<ModePools, ModeOverlap> {
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
        fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4))
            .unwrap();
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(proc_root.join("net")).unwrap();
        std::fs::write(proc_root.join("net/route"), "Iface\tDestination\n").unwrap();
        let sysfs = Sysfs::new(dir.path().join("sys"));
        let inv = crate::inventory::scan(&sysfs).unwrap();
        let cfg = config::parse(text, "intel.com").unwrap();
        let host = HostFacts::gather(&sysfs, &Procfs::new(proc_root), &inv, FactNeeds::of(&cfg));
        assign_modes(&inv, &cfg, &host, Reasons::Skip)
    }

    fn pcis(p: &Pools) -> Vec<Vec<String>> {
        p.pools
            .iter()
            .map(|p| p.devices.iter().map(|d| d.view.pci.to_string()).collect())
            .collect()
    }

    #[test]
    fn each_list_gets_its_own_devices() {
        type Members<'a> = Vec<Vec<&'a str>>;
        let cases: &[(&str, Members, Members)] = &[
            (
                r#"{"resourceList":[{"resourceName":"dp","selectors":{"pfNames":["ens1f0#0-1"]}}],
                   "draPools":[{"resourceName":"dra","selectors":{"pfNames":["ens1f0#2-3"]}}]}"#,
                vec![vec!["0000:3b:01.0", "0000:3b:01.1"]],
                vec![vec!["0000:3b:01.2", "0000:3b:01.3"]],
            ),
            (
                r#"{"draPools":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#0"]}},
                                {"resourceName":"b","selectors":{"pfNames":["ens1f0#0-1"]}}]}"#,
                vec![],
                // First match wins inside draPools, as in resourceList.
                vec![vec!["0000:3b:01.0"], vec!["0000:3b:01.1"]],
            ),
        ];
        for (text, dp, dra) in cases {
            let m = modes(text).unwrap();
            assert_eq!(pcis(&m.device_plugin), *dp, "{text}");
            assert_eq!(pcis(&m.dra), *dra, "{text}");
        }
    }

    #[test]
    fn a_device_in_both_modes_is_an_error_naming_both_pools() {
        let e = modes(
            r#"{"resourceList":[{"resourceName":"dp","selectors":{"pfNames":["ens1f0#0-2"]}}],
                "draPools":[{"resourceName":"dra","selectors":{"pfNames":["ens1f0#2-3"]}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            ModeOverlap {
                device: "0000:3b:01.2".parse().unwrap(),
                device_plugin_pool: "intel.com/dp".into(),
                dra_pool: "dra".into(),
            }
        );
        let msg = e.to_string();
        for part in ["0000:3b:01.2", "\"intel.com/dp\"", "\"dra\""] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn dra_pool_entries_are_validated_like_resource_list_entries() {
        let cases = [
            (
                r#"{"draPools":[{"resourceName":"a","selectors":{}},{"resourceName":"a","selectors":{}}]}"#,
                "draPools[1].resourceName: \"intel.com/a\" is already defined by draPools[0]",
            ),
            (
                r#"{"draPools":[{"resourceName":"a","selector":{}}]}"#,
                "draPools[0].selector: unknown field",
            ),
            (r#"{"draPools":{}}"#, "draPools: must be a list"),
            (r#"{}"#, "resourceList: missing"),
        ];
        for (text, want) in cases {
            let e = config::parse(text, "intel.com").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}
