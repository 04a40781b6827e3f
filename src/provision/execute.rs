//! Runs single actions against the rooted sysfs (and netlink, modprobe),
//! timing the part spent in the kernel. Every action first checks whether
//! it is already done, so recovery can re-run a step safely.

use std::time::{Duration, Instant};

use super::apply::{ActionTiming, ApplyReport};
use super::plan::{ANY_DRIVER, Action, VFIO_PCI};
use super::policy::MacAddr;
use super::vf_mac;
use crate::pci::PciAddress;
use crate::sysfs::{Sysfs, SysfsError};

/// Poll interval of the kernel waits.
const POLL: Duration = Duration::from_millis(1);

/// One action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A sysfs read or write failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// A netlink VF MAC operation failed.
    #[error(transparent)]
    VfMac(#[from] vf_mac::VfMacError),
    /// modprobe failed or could not run.
    #[error("modprobe {module}: {reason}")]
    Modprobe {
        /// The module.
        module: String,
        /// Exit status or spawn error.
        reason: String,
    },
    /// The kernel did not finish in time.
    #[error("{what} after {timeout:?}")]
    Late {
        /// Which VF is late and for what.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// A MAC string in a plan or journal is not a MAC.
    #[error("{0}")]
    BadMac(String),
}

/// Performs actions against a rooted sysfs. Each action is safe to repeat
/// (recovery re-runs a whole step): it first checks whether it is done.
pub(super) struct Executor<'a> {
    pub(super) sysfs: &'a Sysfs,
    pub(super) timeout: Duration,
}

impl Executor<'_> {
    pub(super) fn timed(
        &self,
        step: &str,
        action: &Action,
        report: &mut ApplyReport,
    ) -> Result<(), ActionError> {
        let start = Instant::now();
        let mut kernel = Duration::ZERO;
        let r = self.run(action, &mut kernel);
        report.kernel += kernel;
        report.actions.push(ActionTiming {
            step: step.to_string(),
            action: action.clone(),
            kernel,
            total: start.elapsed(),
        });
        r
    }

    /// Runs `f` as kernel time.
    fn k<T>(kernel: &mut Duration, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        *kernel += t.elapsed();
        out
    }

    fn run(&self, action: &Action, kernel: &mut Duration) -> Result<(), ActionError> {
        let s = self.sysfs;
        match action {
            Action::LoadModule { module, params } => {
                if module == "vfio_pci" && s.pci_driver(VFIO_PCI)?.exists() {
                    return Ok(());
                }
                Self::k(kernel, || modprobe(module, params))
            }
            Action::SetPfMtu { ifname, mtu, .. } | Action::SetVfMtu { ifname, mtu, .. } => {
                let nd = s.class_net(ifname)?;
                Ok(Self::k(kernel, || nd.set_mtu(*mtu))?)
            }
            Action::SetNumVfs { pf, count } => {
                let dev = s.pci_device(*pf);
                if dev.sriov_numvfs()? == *count {
                    return Ok(());
                }
                Ok(Self::k(kernel, || dev.set_sriov_numvfs(*count))?)
            }
            Action::WaitVfs { pf, count } => Self::k(kernel, || self.wait_vfs(*pf, *count)),
            Action::PinVfMac {
                pf_ifname,
                index,
                mac,
                ..
            } => {
                let mac: MacAddr = mac.parse().map_err(ActionError::BadMac)?;
                Ok(Self::k(kernel, || {
                    vf_mac::set_admin_mac(pf_ifname, *index, mac.0)
                })?)
            }
            Action::Unbind { vf, driver } => {
                let dev = s.pci_device(*vf);
                // Done already, or (recovery) the VF has moved on to
                // another driver since the step was planned.
                match dev.driver()? {
                    None => return Ok(()),
                    Some(d) if driver != ANY_DRIVER && d != *driver => return Ok(()),
                    Some(_) => {}
                }
                Ok(Self::k(kernel, || dev.unbind())?)
            }
            Action::SetDriverOverride { vf, driver } => {
                let dev = s.pci_device(*vf);
                Ok(Self::k(kernel, || dev.set_driver_override(Some(driver)))?)
            }
            Action::ClearDriverOverride { vf } => {
                let dev = s.pci_device(*vf);
                Ok(Self::k(kernel, || dev.set_driver_override(None))?)
            }
            Action::Bind { vf, driver } => {
                let dev = s.pci_device(*vf);
                if dev.driver()?.as_deref() == Some(driver.as_str()) {
                    return Ok(());
                }
                let drv = s.pci_driver(driver)?;
                Ok(Self::k(kernel, || drv.bind(*vf))?)
            }
            Action::DriversProbe { vf } => {
                if s.pci_device(*vf).driver()?.is_some() {
                    return Ok(());
                }
                Ok(Self::k(kernel, || s.drivers_probe(*vf))?)
            }
            Action::WaitNetdev { vf } => Self::k(kernel, || self.wait_netdev(*vf)),
        }
    }

    fn wait_until(&self, mut pending: impl FnMut() -> Option<String>) -> Result<(), ActionError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match pending() {
                None => return Ok(()),
                Some(what) if Instant::now() >= deadline => {
                    return Err(ActionError::Late {
                        what,
                        timeout: self.timeout,
                    });
                }
                Some(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Waits for every `virtfnN` link and, when the kernel autoprobes new
    /// VFs, for each VF's driver and (kernel drivers) netdev.
    fn wait_vfs(&self, pf: PciAddress, count: u32) -> Result<(), ActionError> {
        let dev = self.sysfs.pci_device(pf);
        let autoprobe = dev.sriov_drivers_autoprobe()?;
        self.wait_until(|| {
            let links = dev.virtfns().unwrap_or_default();
            for i in 0..count {
                let Some((_, addr)) = links.iter().find(|(n, _)| *n == i) else {
                    return Some(format!("virtfn{i} of {pf} missing"));
                };
                if autoprobe && let Some(late) = self.vf_not_ready(*addr) {
                    return Some(format!("VF {i} ({addr}) of {pf}: {late}"));
                }
            }
            None
        })
    }

    fn wait_netdev(&self, vf: PciAddress) -> Result<(), ActionError> {
        self.wait_until(|| self.vf_not_ready(vf).map(|late| format!("VF {vf}: {late}")))
    }

    /// Why a VF is not ready yet: no driver, or a kernel driver without
    /// its netdev.
    fn vf_not_ready(&self, vf: PciAddress) -> Option<String> {
        let dev = self.sysfs.pci_device(vf);
        match dev.driver() {
            Ok(Some(d)) if d == VFIO_PCI || d == "uio_pci_generic" || d == "igb_uio" => None,
            Ok(Some(d)) => match dev.netdevs() {
                Ok(n) if !n.is_empty() => None,
                _ => Some(format!("bound to {d} but no netdev yet")),
            },
            Ok(None) => Some("no driver bound".into()),
            Err(e) => Some(e.to_string()),
        }
    }
}

fn modprobe(module: &str, params: &[String]) -> Result<(), ActionError> {
    let err = |reason: String| ActionError::Modprobe {
        module: module.to_string(),
        reason,
    };
    let status = std::process::Command::new("modprobe")
        .arg(module)
        .args(params)
        .status()
        .map_err(|e| err(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(err(status.to_string()))
    }
}
