//! The agent's start-up reconcile on real kernel objects: veth stand-ins
//! for VFs, real pod network namespaces, Debian's real host-local IPAM,
//! and the real `fastpath agent` binary against a fake kubelet.

mod cni_host;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use cni_host::{Host, host_link, ns_link};
use fake_kubelet::FakeKubelet;
use fastpath::agent::reconcile_run::{self, StartupOptions};
use fastpath::cni::records::{self, Phase};
use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// What a pod's netns deletion does to a real VF: the kernel moves it to
/// the host netns, under a kernel-given `devN` name when its pod-side
/// name is taken. Done here with the same RTM_NEWLINK (`dev%d` makes the
/// kernel pick the name); returns the name the kernel gave.
fn return_to_host_as_kernel_named(pod: &str, ifname: &str) -> String {
    let host = NetNs::current().unwrap();
    let ns = NetNs::open(Host::netns_path(pod)).unwrap();
    let ifname = ifname.to_string();
    let index = ns
        .run(move || {
            let mut nl = Netlink::open().unwrap();
            let link = nl.link_by_name(&ifname).unwrap().unwrap();
            nl.set_up(&link, false).unwrap();
            nl.move_to_netns(&link, host.raw_fd(), "dev%d").unwrap();
            link.index
        })
        .unwrap();
    let links: Value = serde_json::from_str(&cni_host::ip_out(&["-j", "link", "show"])).unwrap();
    let name = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"] == index)
        .and_then(|l| l["ifname"].as_str())
        .expect("the moved link keeps its ifindex")
        .to_string();
    assert!(name.starts_with("dev"), "{name}");
    name
}

fn add(h: &Host, vf: usize, pod: &str, extra: Value) {
    let env = h.env(&format!("c{vf}"), "net1", Some(pod));
    let (code, out) = h.cni("ADD", &env, &h.conf("1.1.0", vf, extra));
    assert_eq!(code, 0, "ADD VF {vf}: {out}");
}

fn del_netns(pod: &str) {
    cni_host::ip(&["netns", "del", pod]);
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn agent_dirs(root: &Path) {
    std::fs::create_dir_all(root.join("proc/net")).unwrap();
    std::fs::write(root.join("proc/net/route"), "Iface\tDestination\n").unwrap();
    std::fs::create_dir_all(root.join("device-plugins")).unwrap();
    std::fs::write(
        root.join("config.json"),
        r#"{"resourceList":[{"resourceName":"rc","selectors":{"drivers":["iavf"]}}]}"#,
    )
    .unwrap();
}

/// (a) netns gone, VF back in the host under a kernel name: renamed back
/// with its MAC and MTU; (b) netns gone and the veth died with it: record
/// and lease cleaned up; (c) a live attachment: untouched; (d) a record
/// left in the Adding phase by a crashed ADD, netns gone: restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_restores_what_dead_pods_left_and_leaves_live_ones() {
    let mut h = Host::new("rc", 4);
    let pods: Vec<String> = (0..4).map(|i| h.pod(i)).collect();
    // VF 0 gets the pod's own MTU, which must not survive (a pod-side MAC
    // is a PF-side setting, which needs a real PF: the VM step has it).
    add(&h, 0, &pods[0], json!({"mtu": 1400}));
    for (i, pod) in pods.iter().enumerate().skip(1) {
        add(&h, i, pod, json!({}));
    }
    assert_eq!(h.leases().len(), 4);

    // (a) The kernel returns VF 0 as devN (the pod's MTU on it).
    let dev_a = return_to_host_as_kernel_named(&pods[0], "net1");
    assert_eq!(host_link(&dev_a).unwrap().mtu, 1400);
    let mac0 = h.vfs[0].mac.clone();
    h.rename_vf_netdev(0, &dev_a, &mac0);
    del_netns(&pods[0]);
    // (b) VF 1's netns is deleted; the veth dies with it.
    del_netns(&pods[1]);
    // (d) VF 3's ADD "crashed": its record is back to what ADD writes
    // before its first step, and its netns is gone with the VF returned.
    let pci3 = h.vfs[3].pci.parse().unwrap();
    let mut rec = records::load(h.state.path(), pci3).unwrap().unwrap();
    rec.phase = Phase::Adding;
    rec.reached = 0;
    rec.result = None;
    records::save(h.state.path(), &rec, records::Durability::Full).unwrap();
    let dev_d = return_to_host_as_kernel_named(&pods[3], "net1");
    let mac3 = h.vfs[3].mac.clone();
    h.rename_vf_netdev(3, &dev_d, &mac3);
    del_netns(&pods[3]);
    let live_before = ns_link(&pods[2], "net1").expect("VF 2 in its pod");

    let root = tempfile::tempdir().unwrap();
    agent_dirs(root.path());
    let dp = root.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&dp).await.unwrap();
    let http = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .arg("--sysfs-root")
        .arg(h.sysfs.path())
        .arg("agent")
        .arg("--config")
        .arg(root.path().join("config.json"))
        .arg("--device-plugin-dir")
        .arg(&dp)
        .arg("--plugins-registry-dir")
        .arg(root.path().join("no-registry"))
        .arg("--devinfo-dir")
        .arg(root.path().join("devinfo"))
        .arg("--state-dir")
        .arg(h.state.path())
        .arg("--proc-root")
        .arg(root.path().join("proc"))
        .arg("--http-addr")
        .arg(http.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The reconcile runs before the pools are served.
    assert_eq!(kubelet.registrations(1, T).await.len(), 1);
    let metrics = tokio::task::spawn_blocking(move || get(http, "/metrics"))
        .await
        .unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(["status", "--json", "--state-dir"])
        .arg(h.state.path())
        .output()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit}");

    // (a) and (d): home under the original name, MAC, MTU, admin-down.
    h.assert_vf_home(0);
    h.assert_vf_home(3);
    // The kernel names are free again; a parallel test may have taken one
    // since, so check that no link under them is one of our VFs.
    for (dev, mac) in [(&dev_a, &mac0), (&dev_d, &mac3)] {
        assert!(
            host_link(dev).is_none_or(|l| &l.mac != mac),
            "{dev} still ours"
        );
    }
    // (c) untouched.
    assert_eq!(ns_link(&pods[2], "net1"), Some(live_before));
    let left: Vec<String> = records::load_all(h.state.path())
        .unwrap()
        .iter()
        .map(|r| r.pci.to_string())
        .collect();
    assert_eq!(left, [h.vfs[2].pci.clone()], "only the live record stays");
    // (b) and the others: only the live attachment keeps its lease.
    assert_eq!(h.leases().len(), 1, "{:?}", h.leases());

    for (name, want) in [
        ("fastpath_reconcile_runs_total", 1.0),
        ("fastpath_reconcile_restored_total", 3.0),
        ("fastpath_reconcile_renamed_total", 2.0),
        ("fastpath_reconcile_dropped_total", 0.0),
        ("fastpath_reconcile_failed_total", 0.0),
        ("fastpath_reconcile_live", 1.0),
    ] {
        assert_eq!(sample(&metrics, name), Some(want), "{name} in\n{metrics}");
    }
    assert!(sample(&metrics, "fastpath_reconcile_last_duration_seconds").is_some_and(|d| d > 0.0));
    assert!(status.status.success());
    let s: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["startupReconcile"]["restored"], 3, "{s}");
    assert_eq!(s["startupReconcile"]["renamed"], 2, "{s}");

    // The live pod's DEL still works after the reconcile.
    let env = h.env("c2", "net1", Some(&pods[2]));
    let (code, out) = h.cni("DEL", &env, &h.conf("1.1.0", 2, json!({})));
    assert_eq!(code, 0, "{out}");
    h.assert_vf_home(2);
    assert!(h.leases().is_empty());
}

/// A VF whose lock a CNI call holds is left to it (counted busy, record
/// kept); the next start restores it. A record already home is dropped.
#[test]
fn a_locked_vf_is_left_to_its_holder_and_an_already_home_vf_is_dropped() {
    let mut h = Host::new("rl", 2);
    let pods: Vec<String> = (0..2).map(|i| h.pod(i)).collect();
    for (i, pod) in pods.iter().enumerate() {
        add(&h, i, pod, json!({}));
    }
    // VF 0: a DEL killed after restoring and before removing the record
    // (simulated by moving it home by hand under its original name).
    let dev = return_to_host_as_kernel_named(&pods[0], "net1");
    cni_host::ip(&["link", "set", &dev, "name", &h.vfs[0].ifname]);
    del_netns(&pods[0]);
    // VF 1: netns gone, but a CNI call holds its lock.
    del_netns(&pods[1]);
    let pci1 = h.vfs[1].pci.parse().unwrap();
    let held = fastpath::cni::lock::lock_vf(h.state.path(), pci1).unwrap();
    let opts = StartupOptions {
        state_dir: h.state.path().to_path_buf(),
        sysfs_root: h.sysfs.path().to_path_buf(),
        recover_provisioning: true,
    };
    let r = reconcile_run::run(&opts);
    assert_eq!((r.dropped, r.busy, r.restored), (1, 1, 0), "{r:?}");
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!(r.provisioning, None, "no journal");
    h.assert_vf_home(0);
    assert_eq!(h.records().len(), 1);
    drop(held);
    let r = reconcile_run::run(&opts);
    assert_eq!((r.restored, r.busy), (1, 0), "{r:?}");
    assert!(h.records().is_empty());
    assert!(h.leases().is_empty(), "{:?}", h.leases());
}

/// The reconcile runs while CNI calls work on other VFs (an agent
/// restarted in the middle of pod churn): every ADD and DEL succeeds, no
/// reconcile fails, the dead attachments are restored, nothing leaks.
#[test]
fn reconciles_during_parallel_add_and_del_disturb_nothing() {
    let mut h = Host::new("rp", 8);
    let pods: Vec<String> = (0..8).map(|i| h.pod(i)).collect();
    // VFs 0-3: attachments whose netns died with the VF returned as devN.
    for (i, pod) in pods.iter().enumerate().take(4) {
        add(&h, i, pod, json!({}));
        let dev = return_to_host_as_kernel_named(pod, "net1");
        let mac = h.vfs[i].mac.clone();
        h.rename_vf_netdev(i, &dev, &mac);
        del_netns(pod);
    }
    let opts = StartupOptions {
        state_dir: h.state.path().to_path_buf(),
        sysfs_root: h.sysfs.path().to_path_buf(),
        recover_provisioning: false,
    };
    let churning = std::sync::atomic::AtomicUsize::new(4);
    let reports = std::thread::scope(|s| {
        // VFs 4-7: ADD/DEL cycles in their live pods.
        for (i, pod) in pods.iter().enumerate().skip(4) {
            let (h, churning) = (&h, &churning);
            s.spawn(move || {
                let env = h.env(&format!("c{i}"), "net1", Some(pod));
                let conf = h.conf("1.1.0", i, json!({}));
                for round in 0..6 {
                    let (code, out) = h.cni("ADD", &env, &conf);
                    assert_eq!(code, 0, "ADD VF {i} round {round}: {out}");
                    std::thread::sleep(Duration::from_millis(10));
                    let (code, out) = h.cni("DEL", &env, &conf);
                    assert_eq!(code, 0, "DEL VF {i} round {round}: {out}");
                }
                churning.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        // The agent "restarts" over and over while the pods churn.
        let mut reports = Vec::new();
        while churning.load(std::sync::atomic::Ordering::SeqCst) > 0 || reports.len() < 3 {
            reports.push(reconcile_run::run(&opts));
        }
        reports
    });
    for r in &reports {
        assert!(r.failures.is_empty(), "{r:?}");
    }
    let seen: Vec<(u64, u64, u64, u64)> = reports
        .iter()
        .map(|r| (r.records, r.live, r.busy, r.restored))
        .collect();
    eprintln!("reconcile runs (records, live, busy, restored): {seen:?}");
    let met: u64 = reports.iter().map(|r| r.live + r.busy).sum();
    assert!(met > 0, "no reconcile met a churning VF: {seen:?}");
    let restored: u64 = reports.iter().map(|r| r.restored).sum();
    assert_eq!(
        restored, 4,
        "each dead attachment restored once: {reports:?}"
    );
    for i in 0..8 {
        h.assert_vf_home(i);
    }
    assert!(h.records().is_empty(), "{:?}", h.records());
    assert!(h.leases().is_empty(), "{:?}", h.leases());
}
