//! Pools built as data for the allocate and preferred-allocation tests.

use crate::pools::{AllocationPolicy, DeviceType, DeviceView, Pool, PoolDevice, ResourceConfig};

/// One device: address, PF address, NUMA node, driver, IOMMU group.
pub fn dev(pci: &str, pf: &str, numa: Option<u32>, driver: &str, group: Option<u32>) -> PoolDevice {
    PoolDevice {
        view: DeviceView {
            pci: pci.parse().unwrap(),
            pf: Some(pf.parse().unwrap()),
            pf_netdev: Some("ens1f0".into()),
            pf_link_up: true,
            vf_index: Some(0),
            vendor: None,
            device: None,
            driver: Some(driver.into()),
            netdev: None,
            link_type: None,
            numa_node: numa,
            iommu_group: group,
        },
        rdma: Vec::new(),
        rdma_chars: Vec::new(),
        selector: 0,
        is_rdma: false,
        need_vhost_net: false,
        unhealthy: None,
    }
}

/// A pool `intel.com/<name>` holding `devices`.
pub fn pool(name: &str, policy: AllocationPolicy, devices: Vec<PoolDevice>) -> Pool {
    Pool {
        config: ResourceConfig {
            resource_name: name.into(),
            resource_prefix: "intel.com".into(),
            device_type: DeviceType::NetDevice,
            exclude_topology: false,
            selectors: Vec::new(),
            additional_info: Default::default(),
            allocation_policy: policy,
        },
        devices,
    }
}
