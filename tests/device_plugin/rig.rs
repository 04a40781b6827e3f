//! A running agent on a fake sysfs tree with a fake kubelet beside it.

use std::path::PathBuf;
use std::time::Duration;

use fastpath::agent::{self, AgentError, AgentHandle, AgentOptions};
use sysfs_fixture::{FakeSysfs, PfSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const T: Duration = Duration::from_secs(5);

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub fs: FakeSysfs,
    pub opts: AgentOptions,
    pub handle: AgentHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), AgentError>>>,
}

pub fn options(dir: &std::path::Path, watcher: bool) -> AgentOptions {
    let registry = dir.join("plugins_registry");
    if watcher {
        std::fs::create_dir_all(&registry).unwrap();
    }
    std::fs::create_dir_all(dir.join("device-plugins")).unwrap();
    AgentOptions {
        config: dir.join("config.json"),
        resource_prefix: "intel.com".into(),
        device_plugin_dir: dir.join("device-plugins"),
        plugins_registry_dir: registry,
        devinfo_dir: dir.join("devinfo"),
        cdi: false,
        cdi_dir: dir.join("cdi"),
        state_dir: dir.join("state"),
        rescan_interval: Duration::from_millis(100),
        sysfs_root: dir.join("sys"),
        proc_root: dir.join("proc"),
        dra: None,
    }
}

/// Writes the tree and config; does not start the agent.
pub fn prepare(pfs: &[PfSpec], config: &str) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
    for p in pfs {
        fs.add_pf(p).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
    std::fs::write(dir.path().join("proc/net/route"), "Iface\tDestination\n").unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    (dir, fs)
}

impl Rig {
    pub fn start_with(dir: tempfile::TempDir, fs: FakeSysfs, opts: AgentOptions) -> Self {
        // The agent's logs, shown for failing tests (RUST_LOG filters).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let handle = AgentHandle::new();
        let (stop, rx) = oneshot::channel::<()>();
        let h = handle.clone();
        let o = opts.clone();
        let task = tokio::spawn(async move {
            agent::run(o, h, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            dir,
            fs,
            opts,
            handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn start(pfs: &[PfSpec], config: &str, watcher: bool) -> Self {
        let (dir, fs) = prepare(pfs, config);
        let opts = options(dir.path(), watcher);
        Self::start_with(dir, fs, opts)
    }

    pub fn dp_dir(&self) -> PathBuf {
        self.opts.device_plugin_dir.clone()
    }

    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("config.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.opts.config).unwrap();
    }

    /// Stops the agent and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), AgentError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let t = self.task.take().unwrap();
        tokio::time::timeout(T, t)
            .await
            .expect("agent stops")
            .unwrap()
    }
}

/// Waits until `path` exists.
pub async fn wait_for(path: &std::path::Path) {
    let deadline = tokio::time::Instant::now() + T;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
