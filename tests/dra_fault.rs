//! DRA prepare and unprepare killed with SIGKILL at every DRA crash point
//! (the real binary, built with `--features fault-injection`, as the
//! agent), then recovered by the next agent's start-up reconcile or by
//! kubelet's retry: the VF stand-in's MTU is back, no record or CDI file
//! is left, and the claim prepares again.
//!
//! `cargo test --features fault-injection --test dra_fault` (as root).

#![cfg(feature = "fault-injection")]

mod cni_host;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cni_host::{Host, host_link};
use fake_apiserver::FakeApiServer;
use fake_kubelet::{DraClient, discover_plugins};
use fastpath::fault::{CRASH_AT_ENV, POINTS};
use serde_json::json;

const DRIVER: &str = "sriov.fastpath.dev";
const T: Duration = Duration::from_secs(10);

struct Node {
    host: Host,
    dir: tempfile::TempDir,
    api: FakeApiServer,
    uid: String,
}

impl Node {
    async fn new(tag: &str) -> Self {
        let host = Host::new(tag, 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(dir.path().join("proc/net/route"), "Iface\tDestination\n").unwrap();
        std::fs::create_dir_all(dir.path().join("plugins_registry")).unwrap();
        let pf = host.pf.netdev.as_ref().unwrap().name.clone();
        std::fs::write(
            dir.path().join("config.json"),
            json!({"draPools": [{"resourceName": "dra_net", "selectors": {"pfNames": [pf]}}]})
                .to_string(),
        )
        .unwrap();
        let api = FakeApiServer::start().await.unwrap();
        api.seed(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}))
            .unwrap();
        let device = fastpath::dra::device_name(host.vfs[0].pci.parse().unwrap());
        let claim = api
            .seed(json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": "net", "namespace": "ns"},
                "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov"}}]}},
                "status": {"allocation": {"devices": {
                    "results": [{"request": "vf", "driver": DRIVER, "pool": "node-a", "device": device}],
                    "config": [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters":
                        {"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig", "mtu": 9000}}}]}}}}))
            .unwrap();
        let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
        Self {
            host,
            dir,
            api,
            uid,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn agent(&self, crash_at: Option<&str>) -> Child {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fastpath"));
        c.env_remove(CRASH_AT_ENV)
            .env_remove("NODE_NAME")
            .arg("--sysfs-root")
            .arg(self.host.sysfs.path())
            .arg("agent")
            .arg("--config")
            .arg(self.p("config.json"))
            .arg("--device-plugin-dir")
            .arg(self.p("device-plugins"))
            .arg("--plugins-registry-dir")
            .arg(self.p("plugins_registry"))
            .arg("--kubelet-plugins-dir")
            .arg(self.p("plugins"))
            .arg("--devinfo-dir")
            .arg(self.p("devinfo"))
            .arg("--cdi-dir")
            .arg(self.p("cdi"))
            .arg("--state-dir")
            .arg(self.host.state.path())
            .arg("--proc-root")
            .arg(self.p("proc"))
            .args(["--http-addr", "off", "--rescan-interval", "100ms"])
            .args(["--dra-driver", "--node-name", "node-a"])
            .arg("--kube-api-server")
            .arg(self.api.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = crash_at {
            c.env(CRASH_AT_ENV, p);
        }
        c.spawn().expect("spawning the agent")
    }

    fn record(&self) -> PathBuf {
        self.host
            .state
            .path()
            .join(format!("dra/claims/{}.json", self.uid))
    }

    fn cdi(&self) -> PathBuf {
        self.p(&format!("cdi/{DRIVER}-{}.json", self.uid))
    }

    fn mtu(&self) -> u64 {
        host_link(&self.host.vfs[0].ifname).unwrap().mtu
    }

    /// kubelet's client, once the agent's plugin answers.
    async fn kubelet(&self) -> DraClient {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if let Ok(found) = discover_plugins(&self.p("plugins_registry")).await
                && let Some(d) = found.first()
                && let Ok(c) = DraClient::connect(Path::new(&d.info.endpoint), "v1").await
            {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the DRA plugin never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, prepare: bool) -> Result<String, tonic::Status> {
        let mut k = self.kubelet().await;
        let claims = [("ns", "net", self.uid.as_str())];
        if prepare {
            let r = k.prepare(&claims).await?;
            Ok(r.claims[&self.uid].error.clone())
        } else {
            let r = k.unprepare(&claims).await?;
            Ok(r.claims[&self.uid].error.clone())
        }
    }
}

async fn killed(mut child: Child) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.signal(), Some(9), "{st:?}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent was not killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dra_crash_point_is_recovered() {
    let points: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("dra."))
        .collect();
    assert_eq!(points.len(), 4);
    for (n, point) in points.iter().enumerate() {
        let node = Node::new(&format!("df{n}")).await;
        let mtu = node.mtu();
        if point.starts_with("dra.prepare.") {
            let agent = node.agent(Some(point));
            // The call dies with the agent.
            let _ = node.call(true).await;
            killed(agent).await;
            assert!(
                node.record().exists(),
                "{point}: the record is written first"
            );
            // The next agent's start-up reconcile restores the half-done
            // prepare (the claim exists, its record never got to prepared).
            let agent = node.agent(None);
            until(&format!("{point}: record restored"), || {
                !node.record().exists()
            })
            .await;
            assert_eq!(node.mtu(), mtu, "{point}");
            assert!(!node.cdi().exists(), "{point}");
            // kubelet retries: the claim prepares from scratch.
            assert_eq!(node.call(true).await.unwrap(), "", "{point}");
            assert_eq!(node.mtu(), 9000, "{point}");
            assert_eq!(node.call(false).await.unwrap(), "", "{point}");
            assert_eq!(node.mtu(), mtu, "{point}");
            stop(agent);
        } else {
            let agent = node.agent(Some(point));
            assert_eq!(node.call(true).await.unwrap(), "", "{point}");
            let _ = node.call(false).await;
            killed(agent).await;
            // Restored but the record not yet removed: kubelet's retry of
            // unprepare restores again (idempotent) and removes it.
            assert!(node.record().exists(), "{point}");
            let agent = node.agent(None);
            assert_eq!(node.call(false).await.unwrap(), "", "{point}");
            assert!(!node.record().exists() && !node.cdi().exists(), "{point}");
            assert_eq!(node.mtu(), mtu, "{point}");
            stop(agent);
        }
    }
}
