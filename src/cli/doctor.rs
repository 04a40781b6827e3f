//! `fastpath doctor`: reads the node's facts (every path under a
//! configurable root) and prints what `crate::doctor` makes of them.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::doctor::{
    self, DirState, Facts, Hugepages, ModuleState, MultusConf, PathState, Probe, facts,
};
use crate::inventory;
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

/// `fastpath doctor --help`: what the exit code means and which checks
/// are fatal.
pub const LONG_ABOUT: &str =
    "Checks whether this node can run fastpath and says how to fix what is wrong.

Exit code 0: the node is ready; 1: a fatal check failed (or doctor itself failed).

Fatal checks: sriov-pfs (SR-IOV capable PFs found), device-plugin-socket and \
pod-resources-socket (kubelet's sockets present), cni-bin-dir (exists and writable), \
multus (a Multus config is the first CNI config). When DPDK pools are expected \
(--dpdk, a pool selecting driver vfio-pci/igb_uio/uio_pci_generic, or a policy with \
deviceType vfio-pci) iommu, vfio-pci and hugepages are fatal too.

Never fatal (warnings): iommu-passthrough (iommu=pt), default-route (an SR-IOV \
device carries the node's default route), cluster-policy (with --policy-source cluster: \
SriovNetworkNodePolicy objects readable).";

/// Arguments of `fastpath doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Treat the node as a DPDK node even if no vfio-pci pool is configured.
    #[arg(long)]
    pub dpdk: bool,
    /// Where procfs is mounted.
    #[arg(long, default_value = crate::procfs::DEFAULT_ROOT)]
    pub proc_root: PathBuf,
    /// Where the kernel modules live (`<dir>/<release>/modules.dep`).
    #[arg(long, default_value = "/lib/modules")]
    pub modules_dir: PathBuf,
    /// kubelet's root dir (holds device-plugins/ and pod-resources/).
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// The CNI bin dir fastpath is installed into.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// The CNI conf dir where Multus' config should be.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Pool config (reference resourceList JSON); read if present to see
    /// whether DPDK pools are expected.
    #[arg(
        long,
        env = "FASTPATH_CONFIG",
        default_value = "/etc/pcidp/config.json"
    )]
    pub config: PathBuf,
    /// Node policy (YAML); read if given, for deviceType vfio-pci.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Where the agent takes its policies from.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `--policy-source cluster`: check that policies can be read.
#[derive(Debug, Default, clap::Args)]
pub struct ClusterArgs {
    /// `cluster`: also check that SriovNetworkNodePolicy objects can be read.
    #[arg(long, value_enum, default_value_t = super::agent::PolicySource::Files)]
    pub policy_source: super::agent::PolicySource,
    /// The namespace the agent reads policies from.
    #[arg(long, env = "POD_NAMESPACE", default_value = "fastpath")]
    pub namespace: String,
    /// API server URL (default: in-cluster account, then kubeconfig).
    #[arg(long)]
    pub kube_api_server: Option<String>,
    /// kubeconfig file to use instead of the inferred one.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// Asks the API server about the policies, when asked to.
fn cluster_policy(args: &ClusterArgs) -> Option<facts::ClusterPolicy> {
    use crate::cluster::policy::Probe;
    use facts::ClusterPolicy as C;
    if args.policy_source != super::agent::PolicySource::Cluster {
        return None;
    }
    let opts = crate::cluster::ClusterOptions {
        api_server: args.kube_api_server.clone(),
        kubeconfig: args.kubeconfig.clone(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Some(C::Unreachable(format!("starting a runtime: {e}"))),
    };
    Some(rt.block_on(async {
        match crate::cluster::client(&opts).await {
            Err(e) => C::Unreachable(e.to_string()),
            Ok(client) => match crate::cluster::policy::probe(&client, &args.namespace).await {
                Probe::Ready => C::Ready,
                Probe::CrdAbsent => C::CrdAbsent,
                Probe::Forbidden(m) => C::Forbidden(m),
                Probe::Unreachable(m) => C::Unreachable(m),
            },
        }
    }))
}

/// Gathers the facts, prints the report; exit 1 when the node is not ready.
pub fn run(sysfs: &Sysfs, args: &DoctorArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let report = doctor::diagnose(&gather(sysfs, args));
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(doctor::render_table(&report).as_bytes())?;
    }
    Ok(if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads every fact doctor needs. Nothing here fails: an unreadable fact
/// carries its error into the report.
pub fn gather(sysfs: &Sysfs, args: &DoctorArgs) -> Facts {
    let procfs = Procfs::new(&args.proc_root);
    let iommu_dir = sysfs.root().join("kernel/iommu_groups");
    let kubelet = &args.kubelet_dir;
    let dp_sock = kubelet.join("device-plugins/kubelet.sock");
    let pr_sock = kubelet.join("pod-resources/kubelet.sock");
    Facts {
        dpdk: dpdk_expectation(args),
        cmdline: procfs.cmdline().map_err(|e| e.to_string()),
        iommu_groups: (iommu_dir.clone(), count_iommu_groups(&iommu_dir)),
        vfio_pci: vfio_pci(&procfs, &args.modules_dir),
        hugepages: procfs
            .hugepages()
            .map(|(total, size_kb)| Hugepages { total, size_kb })
            .map_err(|e| e.to_string()),
        inventory: (
            sysfs.root().to_path_buf(),
            inventory::scan(sysfs).map_err(|e| e.to_string()),
        ),
        default_routes: procfs.default_route_interfaces().map_err(|e| e.to_string()),
        device_plugin_socket: (dp_sock.clone(), socket_state(&dp_sock)),
        pod_resources_socket: (pr_sock.clone(), socket_state(&pr_sock)),
        cni_bin_dir: (args.cni_bin_dir.clone(), dir_writable(&args.cni_bin_dir)),
        cni_confs: (args.cni_conf_dir.clone(), cni_confs(&args.cni_conf_dir)),
        cluster_policy: cluster_policy(&args.cluster),
    }
}

/// A missing group dir is an IOMMU that is off, not an error.
fn count_iommu_groups(dir: &Path) -> Probe<usize> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(Result::ok).count()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn vfio_pci(procfs: &Procfs, modules_dir: &Path) -> ModuleState {
    let loaded = procfs.modules().unwrap_or_else(|e| {
        tracing::warn!("{e}");
        BTreeSet::new()
    });
    let release = match fs::read_to_string(procfs.root().join("sys/kernel/osrelease")) {
        Ok(r) => r.trim().to_string(),
        Err(e) if loaded.contains("vfio_pci") => {
            tracing::debug!("kernel release unknown: {e}");
            String::new()
        }
        Err(e) => return ModuleState::Unknown(format!("reading the kernel release: {e}")),
    };
    // A release with a '/' would escape modules_dir.
    if release.contains('/') {
        return ModuleState::Unknown(format!("odd kernel release {release:?}"));
    }
    let kdir = modules_dir.join(&release);
    let builtin = fs::read_to_string(kdir.join("modules.builtin")).ok();
    let dep = fs::read_to_string(kdir.join("modules.dep")).ok();
    facts::vfio_pci_state(&loaded, &release, builtin.as_deref(), dep.as_deref())
}

fn socket_state(path: &Path) -> PathState {
    match fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => PathState::Socket,
        Ok(_) => PathState::NotSocket,
        Err(e) if e.kind() == io::ErrorKind::NotFound => PathState::Missing,
        Err(e) => PathState::Unreadable(e.to_string()),
    }
}

/// Creates and removes a probe file: permission bits say nothing to root,
/// and only a real write notices a read-only mount.
fn dir_writable(dir: &Path) -> DirState {
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return DirState::NotDir,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return DirState::Missing,
        Err(e) => return DirState::NotWritable(e.to_string()),
    }
    let probe = dir.join(format!(".fastpath-doctor.{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            DirState::Writable
        }
        Err(e) => DirState::NotWritable(e.to_string()),
    }
}

/// CNI config files in the order libcni reads them (sorted by name).
fn cni_confs(dir: &Path) -> Probe<Vec<MultusConf>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| facts::is_cni_conf_name(n))
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|file| {
            let is_multus =
                fs::read_to_string(dir.join(&file)).is_ok_and(|t| facts::conf_is_multus(&t));
            MultusConf { file, is_multus }
        })
        .collect())
}

fn dpdk_expectation(args: &DoctorArgs) -> doctor::DpdkExpectation {
    let config = read_parsed(&args.config, |t| {
        serde_json::from_str(t).map_err(|e| e.to_string())
    });
    let policy = args
        .policy
        .as_deref()
        .and_then(|p| read_parsed(p, |t| serde_norway::from_str(t).map_err(|e| e.to_string())));
    facts::dpdk_from_config(args.dpdk, config.as_ref(), policy.as_ref())
}

/// A config that is absent or unparsable says nothing about DPDK; the agent
/// reports parse errors with the field, doctor only warns.
fn read_parsed(
    path: &Path,
    parse: impl Fn(&str) -> Result<serde_json::Value, String>,
) -> Option<serde_json::Value> {
    let text = fs::read_to_string(path).ok()?;
    parse(&text)
        .map_err(|e| tracing::warn!(path = %path.display(), "not parsed: {e}"))
        .ok()
}

#[cfg(test)]
#[path = "doctor_tests.rs"]
mod tests;
