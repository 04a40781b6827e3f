//! The real `fastpath agent` process serving the soak's 32 VF stand-ins to
//! a fake kubelet (real gRPC on unix sockets): start, SIGTERM, pool config
//! rewrites, the "still serving every VF" check, and its resident memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_kubelet::{FakeKubelet, PluginClient, ids};
use fastpath::agent::manager::socket_name;

/// How long the agent gets to (re-)register and list after a change.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(15);

/// How the 32 VFs are split into pools; a config reload moves between these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One pool `intel.com/soak_all` with every VF.
    One,
    /// `intel.com/soak_a` = VFs `0..k`, `intel.com/soak_b` = VFs `k..n`.
    Split(usize),
}

/// Every layout a reload may switch to.
pub const LAYOUTS: [Layout; 4] = [
    Layout::One,
    Layout::Split(8),
    Layout::Split(16),
    Layout::Split(24),
];

impl Layout {
    /// (full resource name, VF index range) of each pool.
    pub fn pools(self, n: usize) -> Vec<(String, std::ops::Range<usize>)> {
        match self {
            Layout::One => vec![("intel.com/soak_all".into(), 0..n)],
            Layout::Split(k) => vec![
                ("intel.com/soak_a".into(), 0..k),
                ("intel.com/soak_b".into(), k..n),
            ],
        }
    }

    /// The reference-format config selecting these pools by `pfNames` ranges.
    pub fn config(self, pf: &str, n: usize) -> String {
        let entries: Vec<String> = self
            .pools(n)
            .iter()
            .map(|(name, r)| {
                let short = name.trim_start_matches("intel.com/");
                format!(
                    r#"{{"resourceName":"{short}","selectors":{{"pfNames":["{pf}#{}-{}"]}}}}"#,
                    r.start,
                    r.end - 1
                )
            })
            .collect();
        format!(r#"{{"resourceList":[{}]}}"#, entries.join(","))
    }

    /// The pool VF `i` belongs to.
    pub fn pool_of(self, i: usize, n: usize) -> String {
        self.pools(n)
            .into_iter()
            .find(|(_, r)| r.contains(&i))
            .map(|(name, _)| name)
            .expect("every VF is in a pool")
    }
}

/// Paths the agent and the fake kubelet share.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    pub sysfs: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub device_plugins: PathBuf,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl AgentPaths {
    /// Lays out `dir` (device-plugin dir, fake proc with no default route).
    pub fn new(dir: &Path, sysfs: &Path, state: &Path) -> Self {
        let p = Self {
            sysfs: sysfs.to_path_buf(),
            state: state.to_path_buf(),
            config: dir.join("pools.json"),
            device_plugins: dir.join("device-plugins"),
            dir: dir.to_path_buf(),
            log: dir.join("agent.log"),
        };
        std::fs::create_dir_all(&p.device_plugins).unwrap();
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::write(dir.join("proc/net/route"), "Iface\tDestination\n").unwrap();
        p
    }

    /// Replaces the pool config atomically (as a ConfigMap update does).
    pub fn write_config(&self, text: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
    }

    /// The last lines of the agent's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// One running `fastpath agent` process.
pub struct AgentProc {
    child: Option<Child>,
}

impl AgentProc {
    /// Starts the binary in register mode (no plugins_registry), rescanning
    /// every 100 ms, appending its log to `paths.log`.
    pub fn start(paths: &AgentPaths) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.log)
            .unwrap();
        let dir = &paths.dir;
        let child = Command::new(crate::fastpath_bin())
            .arg("--sysfs-root")
            .arg(&paths.sysfs)
            .arg("agent")
            .arg("--config")
            .arg(&paths.config)
            .arg("--device-plugin-dir")
            .arg(&paths.device_plugins)
            .arg("--plugins-registry-dir")
            .arg(dir.join("no-plugins-registry"))
            .arg("--devinfo-dir")
            .arg(dir.join("devinfo"))
            .arg("--cdi-dir")
            .arg(dir.join("cdi"))
            .arg("--state-dir")
            .arg(&paths.state)
            .arg("--proc-root")
            .arg(dir.join("proc"))
            .args(["--rescan-interval", "100ms", "--http-addr", "off"])
            .env_remove("FASTPATH_POLICY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting fastpath agent");
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// VmRSS in KiB from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// SIGTERM, then the exit status must be success within 10 s.
    pub fn stop(mut self) -> Result<(), String> {
        let mut child = self.child.take().expect("running");
        terminate(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("agent exited with {st} after SIGTERM")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("agent did not stop within 10 s of SIGTERM".into());
                }
            }
        }
    }
}

fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Throws away registrations queued so far (before a restart or reload).
pub async fn drain_registrations(kubelet: &mut FakeKubelet) {
    while kubelet
        .next_registration(Duration::from_millis(1))
        .await
        .is_some()
    {}
}

/// Waits until kubelet has seen a registration for every name in `names`.
pub async fn await_registrations(
    kubelet: &mut FakeKubelet,
    names: &BTreeSet<String>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + SERVE_TIMEOUT;
    let mut seen = BTreeSet::new();
    while !names.is_subset(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match kubelet.next_registration(left).await {
            Some(r) => {
                if r.version != "v1beta1" {
                    return Err(format!("registration with version {:?}", r.version));
                }
                seen.insert(r.resource_name);
            }
            None => {
                return Err(format!(
                    "registrations seen {seen:?}, never all of {names:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Every pool of `layout` lists exactly its VFs over ListAndWatch, all
/// healthy (the whole pool, attached VFs included), and no socket of
/// another pool is left in the device-plugin dir.
pub async fn check_serving(dp_dir: &Path, layout: Layout, pcis: &[String]) -> Result<(), String> {
    let pools = layout.pools(pcis.len());
    let mut listed = 0;
    for (name, range) in &pools {
        let want: BTreeSet<String> = pcis[range.clone()].iter().cloned().collect();
        let sock = dp_dir.join(socket_name(name));
        let mut c = connect_retrying(&sock).await?;
        let mut w = c
            .list_and_watch()
            .await
            .map_err(|e| format!("{name}: ListAndWatch: {e}"))?;
        let got = w
            .until(SERVE_TIMEOUT, |l| {
                ids(l).into_iter().collect::<BTreeSet<_>>() == want
                    && l.devices.iter().all(|d| d.health == "Healthy")
            })
            .await;
        if got.is_none() {
            return Err(format!("{name} never listed exactly {want:?} healthy"));
        }
        listed += want.len();
    }
    if listed != pcis.len() {
        return Err(format!("{listed} VFs advertised, want {}", pcis.len()));
    }
    let expected: BTreeSet<String> = pools.iter().map(|(n, _)| socket_name(n)).collect();
    let deadline = Instant::now() + SERVE_TIMEOUT;
    loop {
        let extra: Vec<String> = std::fs::read_dir(dp_dir)
            .map_err(|e| format!("{}: {e}", dp_dir.display()))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".sock") && n != "kubelet.sock" && !expected.contains(n))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("sockets of removed pools left: {extra:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to a plugin socket, waiting for it to appear.
pub async fn connect_retrying(sock: &Path) -> Result<PluginClient, String> {
    let deadline = tokio::time::Instant::now() + SERVE_TIMEOUT;
    loop {
        match PluginClient::connect(sock).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("{}: {e}", sock.display()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// kubelet's Allocate of VF `pci` from `pool`, as before a pod's CNI ADD.
pub async fn allocate(dp_dir: &Path, pool: &str, pci: &str) -> Result<(), String> {
    let mut c = connect_retrying(&dp_dir.join(socket_name(pool))).await?;
    let a = c
        .allocate(&[pci.to_string()])
        .await
        .map_err(|e| format!("Allocate {pci} from {pool}: {e}"))?;
    let env = format!("PCIDEVICE_{}", pool.to_uppercase().replace(['.', '/'], "_"));
    match a.envs.get(&env) {
        Some(v) if v == pci => Ok(()),
        other => Err(format!("Allocate {pci} from {pool}: {env} = {other:?}")),
    }
}
