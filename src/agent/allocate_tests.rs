use serde_json::Value;

use super::*;
use crate::agent::test_pool::{dev, pool};
use crate::pools::AllocationPolicy;

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn env_names_follow_the_reference() {
    assert_eq!(
        env_name("intel.com/sriov_dpdk"),
        "PCIDEVICE_INTEL_COM_SRIOV_DPDK"
    );
    assert_eq!(env_name("mellanox.com/cx6"), "PCIDEVICE_MELLANOX_COM_CX6");
}

#[test]
fn vfio_devices_get_container_and_group_nodes_and_info() {
    let p = pool(
        "sriov_dpdk",
        AllocationPolicy::Spread,
        vec![
            dev(
                "0000:3b:01.2",
                "0000:3b:00.0",
                Some(0),
                "vfio-pci",
                Some(43),
            ),
            dev(
                "0000:3b:01.3",
                "0000:3b:00.0",
                Some(0),
                "vfio-pci",
                Some(44),
            ),
        ],
    );
    let a = allocate(
        &p,
        &ids(&["0000:3b:01.2", "0000:3b:01.3"]),
        AllocateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        a.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK"],
        "0000:3b:01.2,0000:3b:01.3"
    );
    let info: Value = serde_json::from_str(&a.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK_INFO"]).unwrap();
    assert_eq!(info["0000:3b:01.2"]["generic"]["deviceID"], "0000:3b:01.2");
    assert_eq!(info["0000:3b:01.3"]["vfio"]["dev-mount"], "/dev/vfio/44");
    assert_eq!(info["0000:3b:01.3"]["vfio"]["mount"], "/dev/vfio/vfio");
    let paths: Vec<&str> = a.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/dev/vfio/vfio", "/dev/vfio/43", "/dev/vfio/44"]);
    assert!(a.devices.iter().all(|d| d.permissions == "rw"));
    assert_eq!(
        a.devinfo[0].0,
        "intel.com-sriov_dpdk-0000:3b:01.2-device.json"
    );
    let di: Value = serde_json::from_str(&a.devinfo[0].1).unwrap();
    assert_eq!(di["type"], "pci");
    assert_eq!(di["version"], "1.1.0");
    assert_eq!(di["pci"]["pf-pci-address"], "0000:3b:00.0");
    let noiommu = AllocateOptions {
        cdi: false,
        vfio_noiommu: true,
    };
    let a = allocate(&p, &ids(&["0000:3b:01.2"]), noiommu).unwrap();
    assert_eq!(a.devices[1].path, "/dev/vfio/noiommu-43");
}

#[test]
fn netdevice_vhost_and_rdma() {
    let mut plain = dev("0000:3b:01.0", "0000:3b:00.0", Some(0), "iavf", None);
    let mut vhost = dev("0000:3b:01.1", "0000:3b:00.0", Some(0), "iavf", None);
    vhost.need_vhost_net = true;
    let mut rdma = dev("0000:af:00.2", "0000:af:00.0", Some(1), "mlx5_core", None);
    rdma.is_rdma = true;
    rdma.rdma = vec!["mlx5_1".into()];
    rdma.rdma_chars = vec!["umad1".into(), "uverbs1".into()];
    plain.selector = 0;
    let p = pool("net", AllocationPolicy::Spread, vec![plain, vhost, rdma]);
    let a = allocate(&p, &ids(&["0000:3b:01.0"]), AllocateOptions::default()).unwrap();
    assert!(a.devices.is_empty());
    let info: Value = serde_json::from_str(&a.envs["PCIDEVICE_INTEL_COM_NET_INFO"]).unwrap();
    assert!(info["0000:3b:01.0"].get("vfio").is_none());
    let a = allocate(&p, &ids(&["0000:3b:01.1"]), AllocateOptions::default()).unwrap();
    let paths: Vec<&str> = a.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/dev/vhost-net", "/dev/net/tun"]);
    let a = allocate(&p, &ids(&["0000:af:00.2"]), AllocateOptions::default()).unwrap();
    let paths: Vec<&str> = a.devices.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/dev/infiniband/rdma_cm",
            "/dev/infiniband/umad1",
            "/dev/infiniband/uverbs1"
        ]
    );
    let di: Value = serde_json::from_str(&a.devinfo[0].1).unwrap();
    assert_eq!(di["pci"]["rdma-device"], "mlx5_1");
    let info: Value = serde_json::from_str(&a.envs["PCIDEVICE_INTEL_COM_NET_INFO"]).unwrap();
    assert_eq!(
        info["0000:af:00.2"]["rdma"]["uverbs"],
        "/dev/infiniband/uverbs1"
    );
}

#[test]
fn unknown_and_unhealthy_ids_are_named() {
    let mut sick = dev("0000:3b:01.1", "0000:3b:00.0", Some(0), "iavf", None);
    sick.unhealthy = Some("PF ens1f0 link is down".into());
    let p = pool(
        "net",
        AllocationPolicy::Spread,
        vec![
            dev("0000:3b:01.0", "0000:3b:00.0", Some(0), "iavf", None),
            sick,
        ],
    );
    let e = allocate(
        &p,
        &ids(&["0000:3b:01.0", "0000:3b:09.0"]),
        AllocateOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "device \"0000:3b:09.0\" is not in pool intel.com/net"
    );
    let e = allocate(&p, &ids(&["0000:3b:01.1"]), AllocateOptions::default()).unwrap_err();
    assert!(e.to_string().contains("0000:3b:01.1") && e.to_string().contains("link is down"));
    assert!(allocate(&p, &[], AllocateOptions::default()).is_err());
}

#[test]
fn cdi_mode_returns_names_not_device_specs() {
    let p = pool(
        "sriov_dpdk",
        AllocationPolicy::Spread,
        vec![dev(
            "0000:3b:01.2",
            "0000:3b:00.0",
            Some(0),
            "vfio-pci",
            Some(43),
        )],
    );
    let opts = AllocateOptions {
        cdi: true,
        vfio_noiommu: false,
    };
    let a = allocate(&p, &ids(&["0000:3b:01.2"]), opts).unwrap();
    assert!(a.devices.is_empty());
    assert_eq!(a.cdi_devices, ["intel.com/sriov_dpdk=0000:3b:01.2"]);
    assert_eq!(
        a.annotations["cdi.k8s.io/intel.com_sriov_dpdk"],
        "intel.com/sriov_dpdk=0000:3b:01.2"
    );
    let spec = cdi_spec(&p, opts);
    assert_eq!(spec["kind"], "intel.com/sriov_dpdk");
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/43"
    );
}
