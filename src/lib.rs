//! fastpath: SR-IOV / DPDK data-plane attachment for Kubernetes nodes.
//!
//! The library is organised by kernel surface (`sysfs`) and by decision
//! (`inventory`); the binary in `main.rs` dispatches CLI commands in `cli`.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod doctor;
pub mod dra;
pub mod fault;
pub mod install;
pub mod inventory;
pub mod netlink;
pub mod netns;
pub mod operator;
pub mod ownership;
pub mod pci;
mod pci_names;
pub mod podresources;
pub mod pools;
pub mod procfs;
pub mod provision;
pub mod status;
pub mod sysfs;
pub mod vfrange;
