//! One function per check: facts in, a finding out.

use std::path::Path;

use super::facts::{ClusterPolicy, DirState, Facts, ModuleState, PathState};
use super::{CheckId, Finding, Status};

const FIX_IOMMU: &str = "enable VT-d / AMD-Vi (IOMMU) in the firmware setup, add \
    `intel_iommu=on iommu=pt` (Intel) or `amd_iommu=on iommu=pt` (AMD) to \
    GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub (or grub2-mkconfig) and reboot";

fn finding(check: CheckId, status: Status, fatal: bool, message: String) -> Finding {
    Finding {
        check,
        status,
        fatal,
        message,
        fix: None,
    }
}

impl Finding {
    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// The verdict for a problem: a failure when the check is fatal here.
fn problem(fatal: bool) -> Status {
    if fatal { Status::Fail } else { Status::Warn }
}

fn cmdline_has(cmdline: &str, arg: &str) -> bool {
    cmdline.split_whitespace().any(|a| a == arg)
}

/// IOMMU groups are the proof: some kernels enable the IOMMU by default, so
/// the command line only explains why there are none.
pub fn iommu(facts: &Facts, dpdk: bool) -> Finding {
    let (dir, groups) = &facts.iommu_groups;
    let cmdline = facts.cmdline.as_deref().unwrap_or("");
    let why_needed = if dpdk {
        "vfio-pci pools need it"
    } else {
        "only vfio-pci (DPDK) pools need it"
    };
    match groups {
        Ok(n) if *n > 0 => finding(
            CheckId::Iommu,
            Status::Ok,
            dpdk,
            format!("IOMMU is on: {n} groups under {}", dir.display()),
        ),
        Ok(_) => {
            let cause = ["intel_iommu=off", "amd_iommu=off", "iommu=off"]
                .into_iter()
                .find(|a| cmdline_has(cmdline, a))
                .map(|a| format!("the kernel command line has {a}"))
                .or_else(|| {
                    (!cmdline_has(cmdline, "intel_iommu=on")
                        && !cmdline_has(cmdline, "amd_iommu=on"))
                    .then(|| "the kernel command line has no intel_iommu=on / amd_iommu=on".into())
                })
                .unwrap_or_else(|| "the firmware has VT-d / AMD-Vi disabled".into());
            finding(
                CheckId::Iommu,
                problem(dpdk),
                dpdk,
                format!(
                    "IOMMU is off: no groups under {} ({cause}); {why_needed}",
                    dir.display()
                ),
            )
            .with_fix(FIX_IOMMU)
        }
        Err(e) => finding(
            CheckId::Iommu,
            problem(dpdk),
            dpdk,
            format!("cannot tell whether the IOMMU is on: {e}"),
        )
        .with_fix(format!("mount sysfs at --sysfs-root; {why_needed}")),
    }
}

/// `iommu=pt` keeps kernel-driver VFs off the IOMMU's translation path.
pub fn iommu_passthrough(facts: &Facts) -> Finding {
    let on = matches!(facts.iommu_groups.1, Ok(n) if n > 0);
    let id = CheckId::IommuPassthrough;
    match &facts.cmdline {
        _ if !on => finding(id, Status::Skip, false, "IOMMU is off".into()),
        Ok(c) if cmdline_has(c, "iommu=pt") => {
            finding(id, Status::Ok, false, "iommu=pt is set".into())
        }
        Ok(_) => finding(
            id,
            Status::Warn,
            false,
            "iommu=pt is not set: every DMA of kernel-driver VFs and the host's own NICs \
             goes through IOMMU translation, which costs throughput"
                .into(),
        )
        .with_fix("add iommu=pt to the kernel command line and reboot"),
        Err(e) => finding(
            id,
            Status::Warn,
            false,
            format!("cannot read the kernel command line: {e}"),
        ),
    }
}

pub fn vfio_pci(facts: &Facts, dpdk: bool) -> Finding {
    let id = CheckId::VfioPci;
    match &facts.vfio_pci {
        ModuleState::Loaded => finding(id, Status::Ok, dpdk, "vfio_pci is loaded".into()),
        ModuleState::Builtin => finding(id, Status::Ok, dpdk, "vfio-pci is built into the kernel".into()),
        ModuleState::Loadable(path) => finding(
            id,
            Status::Ok,
            dpdk,
            format!("vfio-pci is not loaded but loadable ({path}); the agent runs modprobe vfio-pci when a pool needs it"),
        ),
        ModuleState::Missing { release } => finding(
            id,
            problem(dpdk),
            dpdk,
            format!("vfio-pci is neither loaded nor shipped with kernel {release}"),
        )
        .with_fix(format!(
            "install the kernel's extra modules (e.g. linux-modules-extra-{release}) or a kernel built with CONFIG_VFIO_PCI; \
             the DaemonSet must mount /lib/modules read-only"
        )),
        ModuleState::Unknown(e) => finding(
            id,
            Status::Warn,
            dpdk,
            format!("cannot tell whether vfio-pci is available: {e}"),
        )
        .with_fix("pass --modules-dir (default /lib/modules) or mount /lib/modules into the container"),
    }
}

pub fn hugepages(facts: &Facts, dpdk: bool) -> Finding {
    let id = CheckId::Hugepages;
    match (&facts.hugepages, dpdk) {
        (Ok(h), _) if h.total > 0 => finding(
            id,
            Status::Ok,
            dpdk,
            format!(
                "{} hugepages of {} kB reserved ({} MiB)",
                h.total,
                h.size_kb,
                h.total * h.size_kb / 1024
            ),
        ),
        (Ok(_), false) => finding(
            id,
            Status::Skip,
            false,
            "no hugepages reserved; only DPDK pools need them".into(),
        ),
        (Ok(_), true) => finding(
            id,
            Status::Fail,
            true,
            "no hugepages reserved, and DPDK applications need them".into(),
        )
        .with_fix(
            "reserve them at boot (`default_hugepagesz=1G hugepagesz=1G hugepages=16` on the kernel \
             command line) or at run time (`echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`), \
             then restart kubelet so it advertises hugepages-1Gi / hugepages-2Mi",
        ),
        (Err(e), _) => finding(
            id,
            problem(dpdk),
            dpdk,
            format!("cannot read hugepages: {e}"),
        )
        .with_fix("pass --proc-root pointing at the host's /proc"),
    }
}

pub fn sriov_pfs(facts: &Facts) -> Finding {
    let id = CheckId::SriovPfs;
    let (root, inv) = &facts.inventory;
    match inv {
        Ok(inv) if !inv.pfs.is_empty() => {
            let vfs: usize = inv.pfs.iter().map(|p| p.vfs.len()).sum();
            let total: u32 = inv.pfs.iter().map(|p| p.total_vfs).sum();
            finding(
                id,
                Status::Ok,
                true,
                format!(
                    "{} SR-IOV PFs with {vfs} VFs created of {total} possible",
                    inv.pfs.len()
                ),
            )
        }
        Ok(_) => finding(
            id,
            Status::Fail,
            true,
            format!(
                "no SR-IOV capable PF under {}",
                root.join("bus/pci/devices").display()
            ),
        )
        .with_fix(
            "enable SR-IOV in the firmware setup (and in the NIC's own firmware, e.g. mlxconfig \
             SRIOV_EN=1 NUM_OF_VFS=N for ConnectX), load the PF driver, and check `lspci -vvv` \
             lists 'Single Root I/O Virtualization' for the NIC",
        ),
        Err(e) => finding(
            id,
            Status::Fail,
            true,
            format!("cannot scan PCI devices: {e}"),
        )
        .with_fix("mount the host's /sys and pass --sysfs-root"),
    }
}

/// Reported, never fatal: the node keeps working, but changing such a
/// PF's VF count resets its link on most drivers and cuts the node off.
pub fn default_route(facts: &Facts) -> Finding {
    let id = CheckId::DefaultRoute;
    let (Ok(inv), Ok(routes)) = (&facts.inventory.1, &facts.default_routes) else {
        let why = facts.default_routes.as_ref().err().map_or_else(
            || "the SR-IOV inventory is unavailable".to_string(),
            |e| format!("cannot read routes: {e}"),
        );
        return finding(id, Status::Skip, false, why);
    };
    let carrying: Vec<String> = inv
        .pfs
        .iter()
        .flat_map(|pf| {
            let pf_hit = pf
                .netdev
                .as_ref()
                .filter(|n| routes.contains(&n.name))
                .map(|n| format!("PF {} ({})", pf.pci_address, n.name));
            let vf_hits = pf.vfs.iter().filter_map(|vf| {
                vf.netdev
                    .as_ref()
                    .filter(|n| routes.contains(&n.name))
                    .map(|n| format!("VF {} ({})", vf.pci_address, n.name))
            });
            pf_hit.into_iter().chain(vf_hits)
        })
        .collect();
    if carrying.is_empty() {
        return finding(
            id,
            Status::Ok,
            false,
            "no SR-IOV device carries the default route".into(),
        );
    }
    finding(
        id,
        Status::Warn,
        false,
        format!(
            "the default route goes through {}: handing it to a pod, or changing the PF's \
             VF count (which resets the PF's link on most drivers), cuts the node off",
            carrying.join(", ")
        ),
    )
    .with_fix(
        "keep this PF out of the node policy (or set its numVfs once at boot), and keep its \
         VFs out of pool selectors; move the default route to another NIC if pods need this one",
    )
}

pub fn socket(
    id: CheckId,
    (path, state): &(std::path::PathBuf, PathState),
    what: &str,
    fix: &str,
) -> Finding {
    let p = path.display();
    match state {
        PathState::Socket => finding(id, Status::Ok, true, format!("{what} is at {p}")),
        PathState::Missing => finding(
            id,
            Status::Fail,
            true,
            format!("{what} is missing: nothing at {p}"),
        )
        .with_fix(fix),
        PathState::NotSocket => finding(
            id,
            Status::Fail,
            true,
            format!("{p} exists but is not a socket"),
        )
        .with_fix(format!("remove it and restart kubelet; {fix}")),
        PathState::Unreadable(e) => {
            finding(id, Status::Fail, true, format!("cannot inspect {p}: {e}")).with_fix(fix)
        }
    }
}

pub fn cni_bin_dir(facts: &Facts) -> Finding {
    let id = CheckId::CniBinDir;
    let (path, state) = &facts.cni_bin_dir;
    let p = path.display();
    let mount = "the DaemonSet mounts the host's /opt/cni/bin read-write at /host/opt/cni/bin";
    match state {
        DirState::Writable => finding(id, Status::Ok, true, format!("{p} is writable")),
        DirState::Missing => finding(id, Status::Fail, true, format!("{p} does not exist"))
            .with_fix(format!(
                "install the CNI plugins (Debian: containernetworking-plugins) or create {p}; \
                 pass --cni-bin-dir if the runtime uses another dir (check the container \
                 runtime's CNI bin_dir setting)"
            )),
        DirState::NotDir => finding(id, Status::Fail, true, format!("{p} is not a directory"))
            .with_fix("point --cni-bin-dir at the runtime's CNI bin dir"),
        DirState::NotWritable(e) => {
            finding(id, Status::Fail, true, format!("{p} is not writable: {e}")).with_fix(format!(
                "remount it read-write (some immutable OSes use /var/lib/cni/bin instead); {mount}"
            ))
        }
    }
}

pub fn multus(facts: &Facts) -> Finding {
    let id = CheckId::Multus;
    let (dir, confs) = &facts.cni_confs;
    let install = "install Multus (thick plugin: its DaemonSet writes 00-multus.conf in the CNI \
        conf dir, named so it sorts first)";
    let confs = match confs {
        Ok(c) => c,
        Err(e) => {
            return finding(
                id,
                Status::Fail,
                true,
                format!("cannot read {}: {e}", dir.display()),
            )
            .with_fix(install);
        }
    };
    let first = confs.first();
    match (first, confs.iter().find(|c| c.is_multus)) {
        (Some(f), Some(_)) if f.is_multus => finding(
            id,
            Status::Ok,
            true,
            format!("Multus is the node's CNI: {}", in_dir(dir, &f.file)),
        ),
        (Some(f), Some(m)) => finding(
            id,
            Status::Fail,
            true,
            format!(
                "Multus config {} exists, but the runtime uses {} because it sorts first",
                in_dir(dir, &m.file),
                in_dir(dir, &f.file)
            ),
        )
        .with_fix("rename the Multus config so it sorts first (00-multus.conf)"),
        _ => finding(
            id,
            Status::Fail,
            true,
            format!(
                "no Multus config in {} ({} CNI configs)",
                dir.display(),
                confs.len()
            ),
        )
        .with_fix(install),
    }
}

/// Without the policies the agent runs from its files: worth fixing, but
/// the node still serves pods, so never fatal.
pub fn cluster_policy(facts: &Facts) -> Option<Finding> {
    let c = CheckId::ClusterPolicy;
    let overlay = "kubectl apply -k deploy/overlays/policy-from-cluster";
    Some(match facts.cluster_policy.as_ref()? {
        ClusterPolicy::Ready => finding(
            c,
            Status::Ok,
            false,
            "SriovNetworkNodePolicy objects are readable".into(),
        ),
        ClusterPolicy::CrdAbsent => finding(
            c,
            Status::Warn,
            false,
            "the SriovNetworkNodePolicy CRD is not installed: the agent runs from its files"
                .into(),
        )
        .with_fix(format!("{overlay} (it vendors the operator's CRDs)")),
        ClusterPolicy::Forbidden(m) => finding(
            c,
            Status::Warn,
            false,
            format!("listing SriovNetworkNodePolicy objects is forbidden ({m}): the agent runs from its files"),
        )
        .with_fix(format!("{overlay} (its Role lets the agent list and watch policies)")),
        ClusterPolicy::Unreachable(m) => finding(
            c,
            Status::Warn,
            false,
            format!("the API server cannot be reached: {m}"),
        )
        .with_fix("check --kube-api-server or the kubeconfig, and the network to the API server"),
    })
}

fn in_dir(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}
