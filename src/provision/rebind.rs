//! One VF to vfio-pci or back to a kernel driver, outside a policy: what
//! a DRA claim asks for. The actions are the ones a policy's rebind step
//! plans ([`super::plan`] builds its steps from these functions) and they
//! run on the same executor, which checks each action before repeating it.

use std::time::Duration;

use super::apply::ApplyReport;
use super::execute::{ActionError, Executor};
use super::plan::{ANY_DRIVER, Action, VFIO_PCI};
use crate::pci::PciAddress;
use crate::sysfs::Sysfs;

/// `vf` from `driver` (or unbound) to vfio-pci, through `driver_override`
/// so no other driver grabs it in between.
pub fn to_vfio(vf: PciAddress, driver: Option<&str>) -> Vec<Action> {
    let mut actions = unbind_from(vf, driver);
    actions.extend([
        Action::SetDriverOverride {
            vf,
            driver: VFIO_PCI.into(),
        },
        Action::Bind {
            vf,
            driver: VFIO_PCI.into(),
        },
        Action::ClearDriverOverride { vf },
    ]);
    actions
}

/// `vf` from `driver` (a userspace driver, or unbound) back to whichever
/// kernel driver probes it, then a wait for its netdev.
pub fn to_kernel(vf: PciAddress, driver: Option<&str>) -> Vec<Action> {
    let mut actions = unbind_from(vf, driver);
    actions.extend([
        Action::ClearDriverOverride { vf },
        Action::DriversProbe { vf },
        Action::WaitNetdev { vf },
    ]);
    actions
}

fn unbind_from(vf: PciAddress, driver: Option<&str>) -> Vec<Action> {
    driver
        .map(|d| Action::Unbind {
            vf,
            driver: d.to_string(),
        })
        .into_iter()
        .collect()
}

/// Puts `vf` back on `driver` exactly (or leaves it unbound): the undo of
/// a rebind, whatever the VF is bound to now.
pub fn back_to(vf: PciAddress, driver: Option<&str>) -> Vec<Action> {
    let mut undo = vec![Action::Unbind {
        vf,
        driver: ANY_DRIVER.into(),
    }];
    if let Some(d) = driver {
        undo.extend([
            Action::SetDriverOverride {
                vf,
                driver: d.to_string(),
            },
            Action::Bind {
                vf,
                driver: d.to_string(),
            },
        ]);
    }
    undo.push(Action::ClearDriverOverride { vf });
    undo
}

/// Runs `actions` in order against `sysfs`; waits are bounded by
/// `timeout`. Stops at the first failure (the caller undoes).
pub fn run(sysfs: &Sysfs, actions: &[Action], timeout: Duration) -> Result<(), ActionError> {
    let ex = Executor { sysfs, timeout };
    let mut report = ApplyReport::default();
    for a in actions {
        ex.timed("rebind", a, &mut report)?;
    }
    Ok(())
}
