//! The kernel-facing actions a plan is made of, as plain data (serialized
//! into the journal and `fastpath plan --json`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pci::PciAddress;

/// One kernel-facing action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Action {
    /// `modprobe <module> [params]`.
    LoadModule {
        /// Module name.
        module: String,
        /// Module parameters.
        params: Vec<String>,
    },
    /// Write `mtu` of the PF netdev.
    SetPfMtu {
        /// The PF.
        pf: PciAddress,
        /// Its netdev.
        ifname: String,
        /// New MTU.
        mtu: u32,
    },
    /// Write `sriov_numvfs`.
    SetNumVfs {
        /// The PF.
        pf: PciAddress,
        /// The count written.
        count: u32,
    },
    /// Wait for `virtfn0..count-1`, and each VF's driver and netdev when
    /// the kernel autoprobes them.
    WaitVfs {
        /// The PF.
        pf: PciAddress,
        /// VFs expected.
        count: u32,
    },
    /// Pin a VF's admin MAC through its PF.
    PinVfMac {
        /// PF netdev.
        pf_ifname: String,
        /// VF index.
        index: u32,
        /// The VF.
        vf: PciAddress,
        /// The MAC.
        mac: String,
    },
    /// Write the VF's address to `driver/unbind`.
    Unbind {
        /// The VF.
        vf: PciAddress,
        /// Its current driver.
        driver: String,
    },
    /// Write `driver_override`.
    SetDriverOverride {
        /// The VF.
        vf: PciAddress,
        /// The driver.
        driver: String,
    },
    /// Write the VF's address to `bus/pci/drivers/<driver>/bind`.
    Bind {
        /// The VF.
        vf: PciAddress,
        /// The driver.
        driver: String,
    },
    /// Clear `driver_override`.
    ClearDriverOverride {
        /// The VF.
        vf: PciAddress,
    },
    /// Write the VF's address to `bus/pci/drivers_probe`.
    DriversProbe {
        /// The VF.
        vf: PciAddress,
    },
    /// Wait for the VF's kernel driver and netdev after a probe.
    WaitNetdev {
        /// The VF.
        vf: PciAddress,
    },
    /// Write `mtu` of a VF netdev.
    SetVfMtu {
        /// The VF.
        vf: PciAddress,
        /// Its netdev.
        ifname: String,
        /// New MTU.
        mtu: u32,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LoadModule { module, params } if params.is_empty() => {
                write!(f, "modprobe {module}")
            }
            Self::LoadModule { module, params } => {
                write!(f, "modprobe {module} {}", params.join(" "))
            }
            Self::SetPfMtu { pf, ifname, mtu } => {
                write!(f, "set mtu of {ifname} (PF {pf}) to {mtu}")
            }
            Self::SetNumVfs { pf, count } => write!(f, "write {count} to {pf}/sriov_numvfs"),
            Self::WaitVfs { pf, count } => write!(f, "wait for {count} VFs of {pf}"),
            Self::PinVfMac {
                pf_ifname,
                index,
                mac,
                ..
            } => write!(f, "pin admin MAC of VF {index} on {pf_ifname} to {mac}"),
            Self::Unbind { vf, driver } => write!(f, "unbind {vf} from {driver}"),
            Self::SetDriverOverride { vf, driver } => {
                write!(f, "write {driver} to {vf}/driver_override")
            }
            Self::Bind { vf, driver } => write!(f, "bind {vf} to {driver}"),
            Self::ClearDriverOverride { vf } => write!(f, "clear {vf}/driver_override"),
            Self::DriversProbe { vf } => write!(f, "probe {vf} (drivers_probe)"),
            Self::WaitNetdev { vf } => write!(f, "wait for {vf} driver and netdev"),
            Self::SetVfMtu { vf, ifname, mtu } => {
                write!(f, "set mtu of {ifname} (VF {vf}) to {mtu}")
            }
        }
    }
}
