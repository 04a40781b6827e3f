use std::path::Path;

use super::*;
use crate::pci::PciId;
use crate::pools::{AllocationPolicy, DeviceType, DeviceView, Pool, ResourceConfig};
use crate::sysfs::LinkType;

fn vf() -> PoolDevice {
    PoolDevice {
        view: DeviceView {
            pci: "0000:3b:02.1".parse().unwrap(),
            pf: Some("0000:3b:00.0".parse().unwrap()),
            pf_netdev: Some("ens1f0".into()),
            pf_link_up: true,
            vf_index: Some(9),
            vendor: Some(PciId(0x8086)),
            device: Some(PciId(0x1889)),
            driver: Some("iavf".into()),
            netdev: Some("ens1f0v9".into()),
            link_type: Some(LinkType::Ether),
            numa_node: Some(1),
            iommu_group: Some(77),
        },
        rdma: vec![],
        rdma_chars: vec![],
        selector: 0,
        is_rdma: false,
        need_vhost_net: false,
        unhealthy: None,
    }
}

fn str_attr(s: &str) -> AttrValue {
    AttrValue::String(s.into())
}

#[test]
fn a_vf_maps_to_every_attribute() {
    let d = device(&vf(), "intel.com/dra_vf", Some("pci0000:3a"));
    assert_eq!(d.name, "pci-0000-3b-02-1");
    let want: BTreeMap<String, AttrValue> = [
        ("pciAddress", str_attr("0000:3b:02.1")),
        ("pfName", str_attr("ens1f0")),
        ("pfPciAddress", str_attr("0000:3b:00.0")),
        ("vfIndex", AttrValue::Int(9)),
        ("vendor", str_attr("8086")),
        ("deviceID", str_attr("1889")),
        ("driver", str_attr("iavf")),
        ("numaNode", AttrValue::Int(1)),
        ("linkType", str_attr("ether")),
        ("rdma", AttrValue::Bool(false)),
        ("iommuGroup", AttrValue::Int(77)),
        (PCI_BUS_ID, str_attr("0000:3b:02.1")),
        (PCIE_ROOT, str_attr("pci0000:3a")),
        (MULTUS_DEVICE_ID, str_attr("0000:3b:02.1")),
        (MULTUS_RESOURCE_NAME, str_attr("intel.com/dra_vf")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(d.attributes, want);
}

#[test]
fn unknown_facts_are_left_out_and_rdma_follows_the_device() {
    type Edit = fn(&mut PoolDevice);
    let cases: &[(Edit, &str, Option<AttrValue>)] = &[
        (|d| d.view.numa_node = None, "numaNode", None),
        (|d| d.view.iommu_group = None, "iommuGroup", None),
        (|d| d.view.pf_netdev = None, "pfName", None),
        (|d| d.view.driver = None, "driver", None),
        (|d| d.view.link_type = None, "linkType", None),
        (
            |d| d.view.link_type = Some(LinkType::Infiniband),
            "linkType",
            Some(str_attr("infiniband")),
        ),
        (
            |d| d.rdma = vec!["mlx5_3".into()],
            "rdma",
            Some(AttrValue::Bool(true)),
        ),
        (
            |d| d.view.driver = Some("vfio-pci".into()),
            "driver",
            Some(str_attr("vfio-pci")),
        ),
    ];
    for (edit, key, want) in cases {
        let mut v = vf();
        edit(&mut v);
        let d = device(&v, "intel.com/dra_vf", None);
        assert_eq!(d.attributes.get(*key), want.as_ref(), "{key}");
        assert!(!d.attributes.contains_key(PCIE_ROOT));
    }
}

#[test]
fn node_devices_cover_every_dra_pool_in_name_order() {
    let mut a = vf();
    a.view.pci = "0000:3b:02.2".parse().unwrap();
    let b = vf();
    let pool = |name: &str, devices| Pool {
        config: ResourceConfig {
            resource_name: name.into(),
            resource_prefix: "intel.com".into(),
            device_type: DeviceType::NetDevice,
            exclude_topology: false,
            selectors: vec![],
            additional_info: Default::default(),
            allocation_policy: AllocationPolicy::Spread,
        },
        devices,
    };
    let pools = Pools {
        pools: vec![pool("x", vec![a]), pool("y", vec![b])],
        assignments: vec![],
        notes: vec![],
    };
    let roots = [("0000:3b:02.2".parse().unwrap(), "pci0000:3a".to_string())].into();
    let n = node_devices("sriov.fastpath.dev", "node-a", &pools, &roots);
    assert_eq!(
        (n.driver.as_str(), n.node.as_str()),
        ("sriov.fastpath.dev", "node-a")
    );
    let names: Vec<&str> = n.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["pci-0000-3b-02-1", "pci-0000-3b-02-2"]);
    assert_eq!(n.devices[0].attributes.get(PCIE_ROOT), None);
    // Multus maps each device to its own pool's resource name.
    let multus: Vec<_> = n
        .devices
        .iter()
        .map(|d| d.attributes.get(MULTUS_RESOURCE_NAME))
        .collect();
    assert_eq!(
        multus,
        [
            Some(&str_attr("intel.com/y")),
            Some(&str_attr("intel.com/x"))
        ]
    );
    assert_eq!(
        n.devices[1].attributes.get(PCIE_ROOT),
        Some(&str_attr("pci0000:3a"))
    );
}

#[test]
fn a_resource_name_too_long_for_an_attribute_is_left_out() {
    let fits = format!("intel.com/{}", "a".repeat(54));
    let long = format!("intel.com/{}", "a".repeat(55));
    let d = device(&vf(), &fits, None);
    assert_eq!(
        d.attributes.get(MULTUS_RESOURCE_NAME),
        Some(&str_attr(&fits))
    );
    let d = device(&vf(), &long, None);
    assert_eq!(d.attributes.get(MULTUS_RESOURCE_NAME), None);
    assert!(d.attributes.contains_key(MULTUS_DEVICE_ID));
}

#[test]
fn pcie_root_is_the_host_bridge_directory() {
    let cases = [
        (
            "../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1",
            Some("pci0000:3a"),
        ),
        ("/sys/devices/pci0001:00/0001:00:01.0", Some("pci0001:00")),
        (
            "../../../devices/pci0000:00/0000:00:1f.0",
            Some("pci0000:00"),
        ),
        // Not a host bridge: platform or virtual devices, odd names.
        ("../../../devices/platform/foo", None),
        ("../../../devices/pci0000:3/x", None),
        ("../../../devices/pcixxxx:00/x", None),
        ("../../../devices/pci0000:3a0/x", None),
        ("", None),
    ];
    for (path, want) in cases {
        assert_eq!(pcie_root(Path::new(path)).as_deref(), want, "{path}");
    }
}
