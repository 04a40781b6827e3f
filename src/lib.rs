//! fastpath: SR-IOV / DPDK data-plane attachment for Kubernetes nodes.
//!
//! The library is organised by kernel surface (`sysfs`) and by decision
//! (`inventory`); the binary in `main.rs` dispatches CLI commands in `cli`.

pub mod cli;
pub mod doctor;
pub mod install;
pub mod inventory;
pub mod ownership;
pub mod pci;
pub mod podresources;
pub mod procfs;
pub mod sysfs;
pub mod vfrange;
