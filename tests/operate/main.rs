//! The whole node agent (`agent::node::run`) on a fake tree with a fake
//! kubelet and a fake kernel: the node policy applied on start and on
//! change with the pools updated at once, an invalid policy rejected,
//! `/healthz`, `/readyz` and `/metrics` scraped over TCP and parsed, and
//! `fastpath status` against the live agent.

mod kernel;
mod prom;
#[allow(dead_code)] // the device-plugin tests use the rest
#[path = "../device_plugin/rig.rs"]
mod rig;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use fake_kubelet::{FakeKubelet, PluginClient, ids};
use fastpath::agent::node::{self, NodeError, NodeOptions};
use fastpath::agent::policy::PolicyOptions;
use fastpath::agent::{AgentHandle, status};
use kernel::FakeKernel;
use rig::{T, options, prepare};
use sysfs_fixture::PfSpec;
use sysfs_fixture::presets::igb;
use tokio::sync::oneshot;

const PF: &str = "0000:05:00.0";
const CONFIG: &str =
    r#"{"resourceList":[{"resourceName":"igbvf","selectors":{"drivers":["igbvf"]}}]}"#;

fn pf(n: usize) -> PfSpec {
    igb(PF, "enp5s0", "0000:05:10.0", n).iommu_groups(10)
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn write_policy(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// One GET over a fresh TCP connection: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

async fn scrape(addr: SocketAddr) -> prom::Exposition {
    let (code, body) = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    prom::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// Scrapes until `pred` holds.
async fn scrape_until(
    addr: SocketAddr,
    pred: impl Fn(&prom::Exposition) -> bool,
) -> prom::Exposition {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let e = scrape(addr).await;
        if pred(&e) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched: {:?}",
            e.samples
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn numvfs(dir: &Path) -> String {
    std::fs::read_to_string(
        dir.join("sys/bus/pci/devices")
            .join(PF)
            .join("sriov_numvfs"),
    )
    .unwrap()
}

fn status_cli(state: &Path, json: bool) -> String {
    let mut argv = vec!["fastpath", "status", "--state-dir", state.to_str().unwrap()];
    if json {
        argv.push("--json");
    }
    let cli = fastpath::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    fastpath::cli::run_to(cli, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_reach_kubelet_and_metrics_and_status_show_them() {
    let (dir, fs) = prepare(&[pf(0)], CONFIG);
    let _kernel = FakeKernel::start(fs, PF, pf);
    let mut agent = options(dir.path(), false);
    // Only the rescan the policy triggers can show new VFs this quickly.
    agent.rescan_interval = Duration::from_secs(60);
    let state = agent.state_dir.clone();
    let policy_path = dir.path().join("policy.yaml");
    write_policy(&policy_path, "policies: [{pfNames: [enp5s0], numVfs: 2}]\n");
    let mut policy = PolicyOptions::new(
        policy_path.clone(),
        state.clone(),
        agent.sysfs_root.clone(),
        agent.proc_root.clone(),
    );
    policy.poll_interval = Duration::from_millis(50);
    policy.reconcile.wait_timeout = Duration::from_secs(2);
    let http = free_port();
    let mut kubelet = FakeKubelet::start(&agent.device_plugin_dir).await.unwrap();
    let handle = AgentHandle::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let h = handle.clone();
    let opts = NodeOptions {
        agent,
        policy: Some(policy),
        http_addr: Some(http),
    };
    let task = tokio::spawn(async move {
        node::run(opts, h, async {
            let _ = stopped.await;
        })
        .await
    });

    // Applied before the first scan: the pool starts with both VFs.
    let reg = kubelet.next_registration(T).await.expect("registers");
    assert_eq!(reg.resource_name, "intel.com/igbvf");
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    let mut w = c.list_and_watch().await.unwrap();
    assert_eq!(
        ids(&w.next(T).await.unwrap()),
        ["0000:05:10.0", "0000:05:10.2"]
    );
    assert_eq!(numvfs(dir.path()), "2\n");

    // A policy change is applied and advertised without waiting for the
    // 60 s rescan.
    write_policy(&policy_path, "policies: [{pfNames: [enp5s0], numVfs: 3}]\n");
    let grown = w
        .until(T, |r| r.devices.len() == 3)
        .await
        .expect("pool grows");
    assert_eq!(
        ids(&grown),
        ["0000:05:10.0", "0000:05:10.2", "0000:05:10.4"]
    );
    assert_eq!(numvfs(dir.path()), "3\n");

    // A policy that does not fit the node is rejected; nothing changes.
    write_policy(&policy_path, "policies: [{pfNames: [enp5s0], numVfs: 9}]\n");
    scrape_until(http, |e| {
        e.get("fastpath_policy_reloads_total", &[("result", "error")]) == Some(1.0)
    })
    .await;
    assert_eq!(numvfs(dir.path()), "3\n");

    // Two CNI invocations reported through the metrics files.
    let cni = state.join("metrics/cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("1-7.json"),
        r#"{"command":"ADD","ok":true,"durationUs":4000}"#,
    )
    .unwrap();
    std::fs::write(
        cni.join("2-7.json"),
        r#"{"command":"DEL","ok":false,"durationUs":300000,"errorCode":11}"#,
    )
    .unwrap();
    handle.rescan();
    let m = scrape_until(http, |e| {
        e.get(
            "fastpath_cni_duration_seconds_count",
            &[("command", "DEL"), ("result", "error")],
        ) == Some(1.0)
    })
    .await;
    let res = [("resource", "intel.com/igbvf")];
    assert_eq!(m.get("fastpath_pool_capacity", &res), Some(3.0));
    assert_eq!(m.get("fastpath_pool_allocatable", &res), Some(3.0));
    assert_eq!(m.get("fastpath_pool_unhealthy", &res), Some(0.0));
    assert_eq!(m.get("fastpath_pool_registered", &res), Some(1.0));
    assert_eq!(
        m.get(
            "fastpath_kubelet_registrations_total",
            &[("resource", "intel.com/igbvf"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("fastpath_policy_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("fastpath_provision_reconciles_total", &[("result", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "fastpath_provision_reconciles_total",
            &[("result", "error")]
        ),
        Some(1.0)
    );
    // 0 -> 2: write 2; 2 -> 3: write 0, write 3; each followed by a wait.
    assert_eq!(
        m.get(
            "fastpath_provision_action_duration_seconds_count",
            &[("action", "setNumVfs")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.get(
            "fastpath_provision_action_duration_seconds_count",
            &[("action", "waitVfs")]
        ),
        Some(2.0)
    );
    assert!(
        m.get("fastpath_rescan_duration_seconds_count", &[])
            .unwrap()
            >= 2.0
    );
    let add = [("command", "ADD"), ("result", "ok")];
    assert_eq!(
        m.get("fastpath_cni_duration_seconds_count", &add),
        Some(1.0)
    );
    assert_eq!(
        m.get("fastpath_cni_duration_seconds_sum", &add),
        Some(0.004)
    );
    let le = |b: &str| {
        m.get(
            "fastpath_cni_duration_seconds_bucket",
            &[("command", "ADD"), ("result", "ok"), ("le", b)],
        )
    };
    assert_eq!(
        (le("0.0025"), le("0.005"), le("+Inf")),
        (Some(0.0), Some(1.0), Some(1.0))
    );
    assert!(!cni.join("1-7.json").exists(), "drained");
    let (code, _) = tokio::task::spawn_blocking(move || get(http, "/healthz"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, body) = tokio::task::spawn_blocking(move || get(http, "/readyz"))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // status: from the live agent over its 0600 socket.
    let sock = status::socket_path(&state);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || status_cli(&st, false))
        .await
        .unwrap();
    assert!(
        text.starts_with(
            "POOL             REGISTERED  CAPACITY  HEALTHY  ALLOCATED\n\
             intel.com/igbvf  yes                3        3          0\n\n\
             policy: last reconcile "
        ),
        "{text}"
    );
    assert!(text.contains(" FAILED: applying "), "{text}");
    assert!(
        text.contains("policies[0].numVfs: 9 exceeds sriov_totalvfs 7 of 0000:05:00.0"),
        "{text}"
    );
    let st = state.clone();
    let json = tokio::task::spawn_blocking(move || status_cli(&st, true))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["pools"][0]["resource"], "intel.com/igbvf");
    assert_eq!(v["pools"][0]["capacity"], 3);
    assert_eq!(v["pools"][0]["healthy"], 3);
    assert!(
        v["lastReconcile"]["error"]
            .as_str()
            .unwrap()
            .contains("numVfs: 9")
    );
    assert_eq!(v["attachments"], serde_json::json!([]));

    // SIGHUP (the CLI calls reload()) re-reads the rejected file: rejected
    // again, still nothing changed.
    handle.reload();
    scrape_until(http, |e| {
        e.get("fastpath_policy_reloads_total", &[("result", "error")]) == Some(2.0)
    })
    .await;
    assert_eq!(numvfs(dir.path()), "3\n");

    stop.send(()).unwrap();
    tokio::time::timeout(T, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!sock.exists(), "status socket removed on exit");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_at_start_stops_the_agent_and_changes_nothing() {
    let (dir, _fs) = prepare(&[pf(0)], CONFIG);
    let agent = options(dir.path(), false);
    let policy_path = dir.path().join("policy.yaml");
    write_policy(&policy_path, "policies: [{pfNames: [enp5s0], numVfs: 9}]\n");
    let policy = PolicyOptions::new(
        policy_path,
        agent.state_dir.clone(),
        agent.sysfs_root.clone(),
        agent.proc_root.clone(),
    );
    let state = agent.state_dir.clone();
    let opts = NodeOptions {
        agent,
        policy: Some(policy),
        http_addr: None,
    };
    let e = tokio::time::timeout(
        T,
        node::run(opts, AgentHandle::new(), std::future::pending()),
    )
    .await
    .expect("returns")
    .unwrap_err();
    assert!(matches!(e, NodeError::Policy(_)), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("policies[0].numVfs: 9 exceeds sriov_totalvfs 7 of 0000:05:00.0"),
        "{e}"
    );
    assert_eq!(numvfs(dir.path()), "0\n");
    assert!(!status::socket_path(&state).exists());
    assert!(
        !dir.path()
            .join("device-plugins/intel.com_igbvf.sock")
            .exists()
    );
}
