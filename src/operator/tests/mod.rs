//! Operator decision tests: shared fixtures here; selection and merging
//! by the operator's rules with every refusal in `merge`, rendering into
//! the node policy, pools and node-state status in `render`.

mod merge;
mod render;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sysfs_fixture::presets::{cx6dx_infiniband, e810, x710};
use sysfs_fixture::{FakeSysfs, PfSpec};

use super::*;
use crate::inventory;
use crate::sysfs::Sysfs;

fn inventory_of(pfs: &[PfSpec]) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(dir.path()).unwrap();
    for p in pfs {
        fs.add_pf(p).unwrap();
    }
    inventory::scan(&Sysfs::new(dir.path())).unwrap()
}

/// ens1f0 (E810, 128 VFs max, none yet), ens2f0 (X710, 64 max, 4 made
/// outside), ib0 (ConnectX-6 Dx in InfiniBand mode, 16 max).
fn node() -> Inventory {
    inventory_of(&[
        e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 0),
        x710("0000:5e:00.0", "ens2f0", "0000:5e:02.0", 4),
        cx6dx_infiniband("0000:af:00.0", "ib0", "0000:af:00.2", 0, 0),
    ])
}

fn labels() -> BTreeMap<String, String> {
    [("sriov", "yes"), ("zone", "a")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
}

/// A policy object with `spec` merged over a minimal valid one.
fn pol(name: &str, spec: Value) -> Value {
    let mut base = json!({
        "resourceName": name.replace('.', "_"),
        "nodeSelector": {"sriov": "yes"},
        "numVfs": 8,
        "nicSelector": {"pfNames": ["ens1f0"]},
    });
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    json!({
        "apiVersion": "sriovnetwork.openshift.io/v1",
        "kind": "SriovNetworkNodePolicy",
        "metadata": {"name": name, "namespace": "fastpath"},
        "spec": base,
    })
}

/// One line per PF: `ens1f0 numVfs=8 mtu=- [a:res:0-3:netdevice ...]`.
fn describe(d: &Decision) -> Vec<String> {
    d.interfaces
        .iter()
        .map(|i| {
            let mut gs: Vec<String> = i
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "{}:{}:{}-{}:{}",
                        g.policy, g.resource_name, g.range.0, g.range.1, g.device_type
                    )
                })
                .collect();
            gs.sort();
            let mtu = i.mtu.map_or("-".into(), |m| m.to_string());
            let name = i.name.clone().unwrap_or_default();
            format!("{name} numVfs={} mtu={mtu} [{}]", i.num_vfs, gs.join(" "))
        })
        .collect()
}

fn decide_all(objs: &[Value]) -> Decision {
    decide(objs, &labels(), &node(), &Options::default()).unwrap()
}
