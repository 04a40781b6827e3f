use serde_json::json;

use super::*;
use crate::dra::cdi;
use crate::dra::claim_config::{API_VERSION, KIND};
use crate::dra::{AllocatedDevice, ClaimRef, ConfigSource, OpaqueConfig};
use crate::pools::{AllocationPolicy, DeviceType, DeviceView, ResourceConfig};

const NODE: &str = "node-a";

fn dev(pci: &str, driver: &str, group: u32) -> PoolDevice {
    PoolDevice {
        view: DeviceView {
            pci: pci.parse().unwrap(),
            pf: Some("0000:3b:00.0".parse().unwrap()),
            pf_netdev: Some("ens1f0".into()),
            pf_link_up: true,
            vf_index: Some(1),
            vendor: None,
            device: None,
            driver: Some(driver.into()),
            netdev: None,
            link_type: None,
            numa_node: None,
            iommu_group: Some(group),
        },
        rdma: vec![],
        rdma_chars: vec![],
        selector: 0,
        is_rdma: false,
        need_vhost_net: false,
        unhealthy: None,
    }
}

fn pools() -> Pools {
    Pools {
        pools: vec![Pool {
            config: ResourceConfig {
                resource_name: "dra_net".into(),
                resource_prefix: "intel.com".into(),
                device_type: DeviceType::NetDevice,
                exclude_topology: false,
                selectors: vec![],
                additional_info: Default::default(),
                allocation_policy: AllocationPolicy::Spread,
            },
            devices: vec![
                dev("0000:3b:01.0", "iavf", 10),
                dev("0000:3b:01.1", "vfio-pci", 11),
            ],
        }],
        assignments: vec![],
        notes: vec![],
    }
}

fn alloc(devices: &[(&str, &str, &str)], config: serde_json::Value) -> ClaimAllocation {
    let mut params = json!({"apiVersion": API_VERSION, "kind": KIND});
    for (k, v) in config.as_object().unwrap() {
        params[k] = v.clone();
    }
    ClaimAllocation {
        claim: ClaimRef {
            namespace: "ns".into(),
            name: "c".into(),
            uid: "u1".into(),
        },
        devices: devices
            .iter()
            .map(|(r, p, d)| AllocatedDevice {
                request: r.to_string(),
                pool: p.to_string(),
                device: d.to_string(),
            })
            .collect(),
        config: vec![OpaqueConfig {
            requests: vec![],
            source: ConfigSource::Claim,
            parameters: params,
        }],
    }
}

#[test]
fn plan_takes_only_this_nodes_dra_devices() {
    let ok = plan(
        &alloc(&[("net", NODE, "pci-0000-3b-01-0")], json!({"vlan": 5})),
        NODE,
        &pools(),
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].dev().view.pci.to_string(), "0000:3b:01.0");
    assert_eq!(ok[0].config.vlan, Some(5));
    assert_eq!(ok[0].dra_pool.resource(), "intel.com/dra_net");
    type Devices<'a> = &'a [(&'a str, &'a str, &'a str)];
    let cases: &[(Devices, serde_json::Value, &str)] = &[
        (&[], json!({}), "the claim has no device"),
        (
            &[("net", "node-b", "pci-0000-3b-01-0")],
            json!({}),
            "device pci-0000-3b-01-0 of request net is in pool \"node-b\", not this node's pool \"node-a\"",
        ),
        (
            &[("net", NODE, "pci-0000-3b-02-0")],
            json!({}),
            "device \"pci-0000-3b-02-0\" of request net is not a DRA device of this node",
        ),
        (
            &[("net", NODE, "gpu-0")],
            json!({}),
            "device \"gpu-0\" of request net is not a DRA device",
        ),
        (
            &[("net", NODE, "pci-0000-3b-01-0")],
            json!({"vlan": 4095}),
            "request net: claim config[0] parameters.vlan: 4095 is not a VLAN id",
        ),
    ];
    for (devs, cfg, want) in cases {
        let e = plan(&alloc(devs, cfg.clone()), NODE, &pools())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(want), "{e}");
    }
    let mut no_pf = pools();
    no_pf.pools[0].devices[0].view.pf_netdev = None;
    let e = plan(
        &alloc(&[("net", NODE, "pci-0000-3b-01-0")], json!({"trust": true})),
        NODE,
        &no_pf,
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::NoPf { field: "trust", .. }), "{e}");
    // Without PF-side settings a PF netdev is not needed.
    assert!(
        plan(
            &alloc(&[("net", NODE, "pci-0000-3b-01-0")], json!({"mtu": 9000})),
            NODE,
            &no_pf
        )
        .is_ok()
    );
}

#[test]
fn rebinds_only_to_the_other_kind() {
    let c = |d| VfConfig {
        driver: d,
        ..VfConfig::default()
    };
    let cases = [
        (None, Some("iavf"), None),
        (
            Some(VfDriver::VfioPci),
            Some("iavf"),
            Some(VfDriver::VfioPci),
        ),
        (Some(VfDriver::VfioPci), None, Some(VfDriver::VfioPci)),
        (Some(VfDriver::VfioPci), Some("vfio-pci"), None),
        (
            Some(VfDriver::Netdevice),
            Some("vfio-pci"),
            Some(VfDriver::Netdevice),
        ),
        (
            Some(VfDriver::Netdevice),
            Some("igb_uio"),
            Some(VfDriver::Netdevice),
        ),
        (Some(VfDriver::Netdevice), None, Some(VfDriver::Netdevice)),
        (Some(VfDriver::Netdevice), Some("mlx5_core"), None),
    ];
    for (want, driver, out) in cases {
        assert_eq!(rebind(&c(want), driver), out, "{want:?} {driver:?}");
    }
}

#[test]
fn the_record_holds_originals_and_changes() {
    let p = &plan(
        &alloc(
            &[("net", NODE, "pci-0000-3b-01-0")],
            json!({"vlan": 7, "trust": true, "mtu": 9000, "mac": "02:00:00:00:00:09"}),
        ),
        NODE,
        &pools(),
    )
    .unwrap()[0];
    let saved = VfState {
        vlan: Some(0),
        trust: Some(false),
        ..VfState::default()
    };
    let obs = Observed {
        driver: Some("iavf".into()),
        netdev: Some("ens1f0v1".into()),
        mtu: Some(1500),
        pf_driver: Some("ice".into()),
        saved_vf: Some(saved.clone()),
    };
    let r = device_record(p, &obs);
    assert_eq!(r.original_driver.as_deref(), Some("iavf"));
    assert_eq!(r.rebound, None);
    assert_eq!(
        r.pf,
        Some(PfRef {
            name: "ens1f0".into(),
            driver: "ice".into()
        })
    );
    assert_eq!(r.vf_index, Some(1));
    assert_eq!(r.saved_vf, Some(saved));
    assert_eq!(
        r.vf_settings,
        vec![
            VfSetting::Mac([2, 0, 0, 0, 0, 9]),
            VfSetting::Vlan {
                vlan: 7,
                qos: 0,
                proto: VlanProto::Dot1Q
            },
            VfSetting::Trust(true),
        ]
    );
    assert_eq!(
        (r.netdev.as_deref(), r.original_mtu, r.mtu),
        (Some("ens1f0v1"), Some(1500), Some(9000))
    );
    // A rebind to the kernel driver makes a new netdev: no MTU to restore.
    let p2 = &plan(
        &alloc(
            &[("net", NODE, "pci-0000-3b-01-1")],
            json!({"driver": "netdevice", "mtu": 9000}),
        ),
        NODE,
        &pools(),
    )
    .unwrap()[0];
    let r2 = device_record(
        p2,
        &Observed {
            driver: Some("vfio-pci".into()),
            ..Observed::default()
        },
    );
    assert_eq!(r2.rebound.as_deref(), Some("netdevice"));
    assert_eq!(
        (r2.netdev, r2.original_mtu, r2.mtu),
        (None, None, Some(9000))
    );
    assert_eq!(r2.pf, None);
}

fn output(devices: &[(&str, &str, &str)], drivers: &[&str]) -> cdi::ClaimOutput {
    let plans = plan(&alloc(devices, json!({})), NODE, &pools()).unwrap();
    let drivers: Vec<Option<String>> = drivers.iter().map(|d| Some(d.to_string())).collect();
    cdi::claim_output(
        "sriov.fastpath.dev",
        "upf-0-vf-x7k2p",
        &plans,
        &drivers,
        Default::default(),
    )
}

fn env(dev: &serde_json::Value) -> Vec<&str> {
    dev["containerEdits"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn cdi_output_names_each_vf_by_its_address_with_its_requests_env_and_nodes() {
    let out = output(
        &[
            ("net", NODE, "pci-0000-3b-01-0"),
            ("dpdk", NODE, "pci-0000-3b-01-1"),
        ],
        &["iavf", "vfio-pci"],
    );
    assert_eq!(
        out.ids,
        vec![
            vec!["sriov.fastpath.dev/vf=0000:3b:01.0".to_string()],
            vec!["sriov.fastpath.dev/vf=0000:3b:01.1".to_string()],
        ]
    );
    let spec = &out.spec;
    assert_eq!(spec["cdiVersion"], "0.6.0");
    assert_eq!(spec["kind"], "sriov.fastpath.dev/vf");
    let devs = spec["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0]["name"], "0000:3b:01.0");
    let env0 = env(&devs[0]);
    assert_eq!(env0[0], "PCIDEVICE_INTEL_COM_DRA_NET=0000:3b:01.0");
    assert!(env0[1].starts_with("PCIDEVICE_INTEL_COM_DRA_NET_INFO={\"0000:3b:01.0\""));
    assert!(devs[0]["containerEdits"].get("deviceNodes").is_none());
    assert_eq!(devs[1]["name"], "0000:3b:01.1");
    assert_eq!(env(&devs[1])[0], "PCIDEVICE_INTEL_COM_DRA_NET=0000:3b:01.1");
    assert_eq!(
        devs[1]["containerEdits"]["deviceNodes"],
        json!([{"path": "/dev/vfio/vfio", "permissions": "rw"},
               {"path": "/dev/vfio/11", "permissions": "rw"}])
    );
    // Each VF's file under its draPools entry (Multus master) and under
    // the claim's name (released Multus).
    let names: Vec<&str> = out.devinfo.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "upf-0-vf-x7k2p-0000:3b:01.0-device.json",
            "intel.com-dra_net-0000:3b:01.0-device.json",
            "upf-0-vf-x7k2p-0000:3b:01.1-device.json",
            "intel.com-dra_net-0000:3b:01.1-device.json",
        ]
    );
    assert_eq!(out.devinfo[0].1, out.devinfo[1].1);
    let info: serde_json::Value = serde_json::from_str(&out.devinfo[0].1).unwrap();
    assert_eq!(info["pci"]["pci-address"], "0000:3b:01.0");
    assert_eq!(info["pci"]["pf-pci-address"], "0000:3b:00.0");
}

#[test]
fn every_vf_of_a_request_carries_the_requests_whole_env() {
    let out = output(
        &[
            ("dpdk", NODE, "pci-0000-3b-01-1"),
            ("dpdk", NODE, "pci-0000-3b-01-0"),
        ],
        &["vfio-pci", "vfio-pci"],
    );
    let devs = out.spec["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    for d in devs {
        assert_eq!(
            env(d)[0],
            "PCIDEVICE_INTEL_COM_DRA_NET=0000:3b:01.1,0000:3b:01.0",
            "{d}"
        );
    }
    assert_eq!(env(&devs[0]), env(&devs[1]));
    assert_eq!(
        devs[1]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/10"
    );
}

#[test]
fn a_vf_named_twice_in_a_claim_is_one_cdi_device() {
    let out = output(
        &[
            ("net", NODE, "pci-0000-3b-01-0"),
            ("dpdk", NODE, "pci-0000-3b-01-0"),
        ],
        &["iavf", "iavf"],
    );
    let id = "sriov.fastpath.dev/vf=0000:3b:01.0".to_string();
    assert_eq!(out.ids, vec![vec![id.clone()], vec![id]]);
    assert_eq!(out.spec["devices"].as_array().unwrap().len(), 1);
}

#[test]
fn other_claims_records_holding_the_vfs_are_found() {
    use crate::dra::record::{ClaimRecord, Phase};
    let a = alloc(&[("net", NODE, "pci-0000-3b-01-0")], json!({}));
    let p = &plan(&a, NODE, &pools()).unwrap()[0];
    let dev = device_record(p, &Observed::default());
    let rec = |uid: &str, devices| ClaimRecord {
        claim: ClaimRef {
            namespace: "ns".into(),
            name: format!("c-{uid}"),
            uid: uid.into(),
        },
        phase: Phase::Prepared,
        devices,
        cdi_spec: None,
        devinfo: vec![],
    };
    let mut other_vf = dev.clone();
    other_vf.pci = "0000:3b:01.1".parse().unwrap();
    let records = vec![
        rec("u1", vec![dev.clone()]),
        rec("old", vec![other_vf.clone(), dev.clone()]),
        rec("elsewhere", vec![other_vf]),
    ];
    let found: Vec<(String, &str)> = holders(&records, &a)
        .into_iter()
        .map(|(pci, r)| (pci.to_string(), r.claim.uid.as_str()))
        .collect();
    // The claim's own record (u1, a retry) is not a holder.
    assert_eq!(found, [("0000:3b:01.0".to_string(), "old")]);
}
