//! The agent against a fake kubelet over real gRPC on unix sockets, on
//! fake sysfs trees: registration in both modes, ListAndWatch first list
//! and live updates, kubelet restart, Allocate, preferred allocation,
//! config reload, CDI.

mod rig;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fake_kubelet::{FakeKubelet, PluginClient, discover_plugins, healthy_ids, ids};
use rig::{Rig, T, strings, wait_for};
use serde_json::Value;
use sysfs_fixture::presets::{e810, example_host, nth_addr};

const CONFIG: &str = r#"{"resourceList":[
  {"resourceName":"sriov_netdevice","selectors":{"drivers":["iavf"]}},
  {"resourceName":"sriov_dpdk","selectors":{"drivers":["vfio-pci"]}},
  {"resourceName":"vhost","resourcePrefix":"mellanox.com","selectors":{"vendors":["15b3"],"linkTypes":["ether"],"needVhostNet":true}},
  {"resourceName":"ib","resourcePrefix":"mellanox.com","excludeTopology":true,"selectors":{"linkTypes":["infiniband"],"isRdma":true}}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_mode_lists_and_allocates_every_kind() {
    let rig = Rig::start(&example_host(), CONFIG, false);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let regs = kubelet.registrations(4, T).await;
    let mut names: Vec<&str> = regs.iter().map(|r| r.resource_name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "intel.com/sriov_dpdk",
            "intel.com/sriov_netdevice",
            "mellanox.com/ib",
            "mellanox.com/vhost"
        ]
    );
    for r in &regs {
        assert_eq!(r.version, "v1beta1");
        assert!(
            r.options
                .as_ref()
                .unwrap()
                .get_preferred_allocation_available
        );
        let sock = kubelet.endpoint_path(r);
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", sock.display());
    }
    let reg = |name: &str| regs.iter().find(|r| r.resource_name == name).unwrap();

    // netdevice: env and _INFO, no device nodes, a Device Info file.
    let mut c = PluginClient::connect(&kubelet.endpoint_path(reg("intel.com/sriov_netdevice")))
        .await
        .unwrap();
    assert!(
        c.options()
            .await
            .unwrap()
            .get_preferred_allocation_available
    );
    let mut w = c.list_and_watch().await.unwrap();
    let first = w.next(T).await.unwrap();
    assert_eq!(ids(&first), ["0000:3b:01.0", "0000:3b:01.1"]);
    assert_eq!(first.devices[0].health, "Healthy");
    assert_eq!(first.devices[0].topology.as_ref().unwrap().nodes[0].id, 0);
    let a = c.allocate(&strings(&["0000:3b:01.1"])).await.unwrap();
    assert_eq!(
        a.envs["PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE"],
        "0000:3b:01.1"
    );
    let info: Value =
        serde_json::from_str(&a.envs["PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE_INFO"]).unwrap();
    assert_eq!(info["0000:3b:01.1"]["generic"]["deviceID"], "0000:3b:01.1");
    assert!(a.devices.is_empty());
    let devinfo = rig
        .opts
        .devinfo_dir
        .join("intel.com-sriov_netdevice-0000:3b:01.1-device.json");
    let di: Value = serde_json::from_str(&std::fs::read_to_string(devinfo).unwrap()).unwrap();
    assert_eq!(di["pci"]["pci-address"], "0000:3b:01.1");
    assert_eq!(di["pci"]["pf-pci-address"], "0000:3b:00.0");

    // Unknown ID: a gRPC error naming it.
    let e = c.allocate(&strings(&["0000:3b:01.2"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("0000:3b:01.2"), "{}", e.message());

    // vfio-pci: container and group device nodes.
    let mut c = PluginClient::connect(&kubelet.endpoint_path(reg("intel.com/sriov_dpdk")))
        .await
        .unwrap();
    let a = c.allocate(&strings(&["0000:3b:01.2"])).await.unwrap();
    let paths: Vec<&str> = a.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(paths, ["/dev/vfio/vfio", "/dev/vfio/43"]);
    assert!(
        a.devices
            .iter()
            .all(|d| d.permissions == "rw" && d.container_path == d.host_path)
    );
    let info: Value = serde_json::from_str(&a.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK_INFO"]).unwrap();
    assert_eq!(info["0000:3b:01.2"]["vfio"]["dev-mount"], "/dev/vfio/43");

    // needVhostNet.
    let mut c = PluginClient::connect(&kubelet.endpoint_path(reg("mellanox.com/vhost")))
        .await
        .unwrap();
    let a = c.allocate(&strings(&["0000:af:00.2"])).await.unwrap();
    let paths: Vec<&str> = a.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(paths, ["/dev/vhost-net", "/dev/net/tun"]);

    // isRdma + excludeTopology.
    let mut c = PluginClient::connect(&kubelet.endpoint_path(reg("mellanox.com/ib")))
        .await
        .unwrap();
    let first = c.list_and_watch().await.unwrap().next(T).await.unwrap();
    assert_eq!(ids(&first), ["0000:af:01.2", "0000:af:01.3"]);
    assert!(first.devices.iter().all(|d| d.topology.is_none()));
    let a = c.allocate(&strings(&["0000:af:01.2"])).await.unwrap();
    let paths: Vec<&str> = a.devices.iter().map(|d| d.host_path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/dev/infiniband/rdma_cm",
            "/dev/infiniband/umad4",
            "/dev/infiniband/uverbs4"
        ]
    );

    let sockets: Vec<_> = regs.iter().map(|r| kubelet.endpoint_path(r)).collect();
    rig.stop().await.unwrap();
    for s in sockets {
        assert!(!s.exists(), "{} left behind", s.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_watcher_mode_registers_through_get_info() {
    let rig = Rig::start(&example_host(), CONFIG, true);
    let registry = rig.opts.plugins_registry_dir.clone();
    // Every pool's socket, not a sample: the servers start one after
    // another, so waiting for two let discovery race the other two.
    for pool in [
        "intel.com_sriov_netdevice",
        "intel.com_sriov_dpdk",
        "mellanox.com_vhost",
        "mellanox.com_ib",
    ] {
        wait_for(&registry.join(format!("{pool}.sock"))).await;
    }
    let found = discover_plugins(&registry).await.unwrap();
    assert_eq!(found.len(), 4);
    let dpdk = found
        .iter()
        .find(|p| p.info.name == "intel.com/sriov_dpdk")
        .unwrap();
    assert_eq!(dpdk.info.r#type, "DevicePlugin");
    assert_eq!(dpdk.info.supported_versions, ["v1beta1"]);
    let mut c = PluginClient::connect(std::path::Path::new(&dpdk.info.endpoint))
        .await
        .unwrap();
    let first = c.list_and_watch().await.unwrap().next(T).await.unwrap();
    assert_eq!(ids(&first), ["0000:3b:01.2", "0000:3b:01.3"]);
    // No kubelet.sock registration happens in this mode.
    assert!(!rig.dp_dir().join("intel.com_sriov_dpdk.sock").exists());
    rig.stop().await.unwrap();
    assert!(!registry.join("intel.com_sriov_dpdk.sock").exists());
}

const E810_POOL: &str =
    r#"{"resourceList":[{"resourceName":"net","selectors":{"pfNames":["ens1f0"]}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfs_appearing_disappearing_and_link_state_update_the_list() {
    let pf = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2).numa(1);
    let rig = Rig::start(std::slice::from_ref(&pf), E810_POOL, false);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let reg = kubelet.registrations(1, T).await.pop().unwrap();
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    let mut w = c.list_and_watch().await.unwrap();
    assert_eq!(
        ids(&w.next(T).await.unwrap()),
        ["0000:3b:01.0", "0000:3b:01.1"]
    );

    // Two more VFs appear (sriov_numvfs raised).
    let grown = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4).numa(1);
    for i in 2..4 {
        rig.fs.add_vf(&grown, i, &grown.vfs[i]).unwrap();
    }
    rig.fs
        .write_attr("0000:3b:00.0", "sriov_numvfs", "4\n")
        .unwrap();
    let l = w
        .until(Duration::from_secs(1), |l| l.devices.len() == 4)
        .await
        .expect("update within 1 s");
    assert_eq!(ids(&l)[3], nth_addr("0000:3b:01.0", 3));

    // The PF link goes down: every VF Unhealthy; and back up.
    rig.fs.set_operstate("ens1f0", "down").unwrap();
    w.until(T, |l| healthy_ids(l).is_empty())
        .await
        .expect("unhealthy");
    let e = c.allocate(&strings(&["0000:3b:01.0"])).await.unwrap_err();
    assert!(e.message().contains("unhealthy"), "{}", e.message());
    rig.fs.set_operstate("ens1f0", "up").unwrap();
    w.until(T, |l| healthy_ids(l).len() == 4)
        .await
        .expect("healthy again");

    // All VFs disappear: a PF without VFs is itself a candidate (as in the
    // reference), so pfNames ["ens1f0"] now selects the PF.
    rig.fs.remove_vfs(&grown).unwrap();
    w.until(T, |l| ids(l) == ["0000:3b:00.0"])
        .await
        .expect("VFs gone");
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_rescan_is_immediate() {
    let pf = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 1);
    let (dir, fs) = rig::prepare(std::slice::from_ref(&pf), E810_POOL);
    let mut opts = rig::options(dir.path(), false);
    opts.rescan_interval = Duration::from_secs(3600);
    let rig = Rig::start_with(dir, fs, opts);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let reg = kubelet.registrations(1, T).await.pop().unwrap();
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    let mut w = c.list_and_watch().await.unwrap();
    assert_eq!(w.next(T).await.unwrap().devices.len(), 1);
    let grown = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2);
    rig.fs.add_vf(&grown, 1, &grown.vfs[1]).unwrap();
    rig.handle.rescan();
    w.until(Duration::from_millis(500), |l| l.devices.len() == 2)
        .await
        .expect("provisioning's rescan is seen without waiting for the interval");
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_is_followed_by_reregistration_within_a_second() {
    let rig = Rig::start(&example_host(), CONFIG, false);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    assert_eq!(kubelet.registrations(4, T).await.len(), 4);
    let started = tokio::time::Instant::now();
    let mut kubelet = kubelet.restart().await.unwrap();
    let regs = kubelet.registrations(4, Duration::from_secs(1)).await;
    assert_eq!(regs.len(), 4, "re-registered after {:?}", started.elapsed());
    let dpdk = regs
        .iter()
        .find(|r| r.resource_name == "intel.com/sriov_dpdk")
        .unwrap();
    // kubelet deleted the plugin sockets; the agent serves on fresh ones.
    // A registration can land just before the agent notices its socket is
    // gone and rebinds (kubelet then sees a second registration), so the
    // client retries within the same second.
    let sock = kubelet.endpoint_path(dpdk);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let first = loop {
        let attempt = async {
            let mut c = PluginClient::connect(&sock).await.ok()?;
            c.list_and_watch().await.ok()?.next(T).await
        };
        match attempt.await {
            Some(l) => break l,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("plugin not serving 1 s after kubelet restart"),
        }
    };
    assert_eq!(ids(&first), ["0000:3b:01.2", "0000:3b:01.3"]);
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_good_and_bad() {
    let rig = Rig::start(
        &example_host(),
        E810_POOL.replace("ens1f0", "ens1f0#0-1").as_str(),
        false,
    );
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let reg = kubelet.registrations(1, T).await.pop().unwrap();
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    let mut w = c.list_and_watch().await.unwrap();
    assert_eq!(
        ids(&w.next(T).await.unwrap()),
        ["0000:3b:01.0", "0000:3b:01.1"]
    );

    // Good: the pool widens and a new pool appears, without a restart.
    rig.write_config(
        r#"{"resourceList":[{"resourceName":"net","selectors":{"pfNames":["ens1f0#0-3"]}},
            {"resourceName":"igb","selectors":{"drivers":["igbvf"]}}]}"#,
    );
    w.until(T, |l| l.devices.len() == 4)
        .await
        .expect("pool widened");
    // Earlier registrations of "net" may still be queued (the agent registers
    // at start and again when it sees kubelet.sock created).
    let new = loop {
        let r = kubelet
            .next_registration(T)
            .await
            .expect("new pool registers");
        if r.resource_name != "intel.com/net" {
            break r;
        }
    };
    assert_eq!(new.resource_name, "intel.com/igb");

    // Bad: rejected, the running pools stay and keep serving.
    rig.write_config(
        r#"{"resourceList":[{"resourceName":"net","selectors":{"pfNames":["ens1f0#3-0"]}}]}"#,
    );
    rig.handle.reload();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        kubelet.endpoint_path(&new).exists(),
        "igb pool still served"
    );
    let a = c.allocate(&strings(&["0000:3b:01.3"])).await.unwrap();
    assert_eq!(a.envs["PCIDEVICE_INTEL_COM_NET"], "0000:3b:01.3");
    assert!(
        w.next(Duration::from_millis(300)).await.is_none(),
        "no update for a rejected config"
    );

    // A pool dropped from the config stops and loses its socket.
    rig.write_config(E810_POOL);
    let deadline = tokio::time::Instant::now() + T;
    while kubelet.endpoint_path(&new).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "igb socket not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_stops_the_agent_at_start() {
    let bad = r#"{"resourceList":[{"resourceName":"a","selectors":[{},{"pfNames":["ens1f0","x#1-0"]}]}]}"#;
    let rig = Rig::start(&example_host(), bad, false);
    let e = rig.stop().await.unwrap_err().to_string();
    assert!(
        e.contains("resourceList[0].selectors[1].pfNames[1]: invalid pfNames entry \"x#1-0\""),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_allocation_over_grpc() {
    // Two PFs on NUMA 0, one on NUMA 1.
    let pfs = vec![
        e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4).numa(0),
        e810("0000:3b:00.1", "ens1f1", "0000:3b:11.0", 4).numa(0),
        e810("0000:af:00.0", "ens2f0", "0000:af:01.0", 4).numa(1),
    ];
    let cfg = r#"{"resourceList":[
        {"resourceName":"spread","selectors":{"pfNames":["ens1f0#0-1","ens1f1#0-1","ens2f0#0-1"]}},
        {"resourceName":"pack","allocationPolicy":"pack","selectors":{"pfNames":["ens1f0","ens1f1","ens2f0"]}}]}"#;
    let rig = Rig::start(&pfs, cfg, false);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let regs = kubelet.registrations(2, T).await;
    let reg = |n: &str| regs.iter().find(|r| r.resource_name == n).unwrap();
    let mut spread = PluginClient::connect(&kubelet.endpoint_path(reg("intel.com/spread")))
        .await
        .unwrap();
    let all = ids(&spread
        .list_and_watch()
        .await
        .unwrap()
        .next(T)
        .await
        .unwrap());
    let got = spread.preferred(&all, &[], 2).await.unwrap();
    assert_eq!(
        got,
        ["0000:3b:01.0", "0000:3b:11.0"],
        "one NUMA node, two PFs"
    );
    let got = spread
        .preferred(&all, &strings(&["0000:af:01.1"]), 2)
        .await
        .unwrap();
    assert_eq!(
        got,
        ["0000:af:01.1", "0000:af:01.0"],
        "must-include first, its NUMA node"
    );

    let mut pack = PluginClient::connect(&kubelet.endpoint_path(reg("intel.com/pack")))
        .await
        .unwrap();
    let all = ids(&pack.list_and_watch().await.unwrap().next(T).await.unwrap());
    // The spread pool took VFs 0-1 of each PF (first pool wins), so each
    // PF has two left: pack empties one PF, then moves to the next on the
    // same NUMA node.
    let got = pack.preferred(&all, &[], 3).await.unwrap();
    assert_eq!(got, ["0000:3b:01.2", "0000:3b:01.3", "0000:3b:11.2"]);
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdi_mode_returns_cdi_names_and_writes_the_spec() {
    let (dir, fs) = rig::prepare(&example_host(), CONFIG);
    let mut opts = rig::options(dir.path(), false);
    opts.cdi = true;
    let rig = Rig::start_with(dir, fs, opts);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let regs = kubelet.registrations(4, T).await;
    let dpdk = regs
        .iter()
        .find(|r| r.resource_name == "intel.com/sriov_dpdk")
        .unwrap();
    let mut c = PluginClient::connect(&kubelet.endpoint_path(dpdk))
        .await
        .unwrap();
    let a = c.allocate(&strings(&["0000:3b:01.3"])).await.unwrap();
    assert!(a.devices.is_empty());
    assert_eq!(a.cdi_devices[0].name, "intel.com/sriov_dpdk=0000:3b:01.3");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(rig.opts.cdi_dir.join("intel.com-sriov_dpdk.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec["kind"], "intel.com/sriov_dpdk");
    assert_eq!(spec["devices"][1]["name"], "0000:3b:01.3");
    assert_eq!(
        spec["devices"][1]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/44"
    );
    rig.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serving_removes_sockets_and_exits_zero() {
    let (dir, _fs) = rig::prepare(&example_host(), CONFIG);
    let opts = rig::options(dir.path(), false);
    let mut kubelet = FakeKubelet::start(&opts.device_plugin_dir).await.unwrap();
    // FASTPATH_TEST_BIN: another build of the binary (hack/test runs this
    // test against the static one hack/build-release ships).
    let bin = std::env::var_os("FASTPATH_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_fastpath").into());
    let mut child = tokio::process::Command::new(bin)
        .arg("--sysfs-root")
        .arg(&opts.sysfs_root)
        .arg("agent")
        .arg("--config")
        .arg(&opts.config)
        .arg("--device-plugin-dir")
        .arg(&opts.device_plugin_dir)
        .arg("--plugins-registry-dir")
        .arg(&opts.plugins_registry_dir)
        .arg("--devinfo-dir")
        .arg(&opts.devinfo_dir)
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("--proc-root")
        .arg(&opts.proc_root)
        .arg("--rescan-interval")
        .arg("200ms")
        // Any free port: tests run beside each other on one host.
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .spawn()
        .unwrap();
    let regs = kubelet.registrations(4, T).await;
    assert_eq!(regs.len(), 4);
    let sockets: Vec<_> = regs.iter().map(|r| kubelet.endpoint_path(r)).collect();
    assert!(sockets.iter().all(|s| s.exists()));
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(T, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for s in sockets {
        assert!(!s.exists(), "{} left behind", s.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_vfs_inside_pods_are_still_advertised() {
    // VFs 0-2 have their netdevs inside pods: no host netdev, iavf bound.
    let mut pf = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4).numa(0);
    for vf in &mut pf.vfs[0..3] {
        vf.netdev = None;
    }
    let cfg = r#"{"resourceList":[{"resourceName":"net","selectors":{"pfNames":["ens1f0#0-3"],"linkTypes":["ether"],"drivers":["iavf"]}}]}"#;
    let rig = Rig::start(std::slice::from_ref(&pf), cfg, false);
    let mut kubelet = FakeKubelet::start(&rig.dp_dir()).await.unwrap();
    let reg = kubelet.registrations(1, T).await.pop().unwrap();
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    let first = c.list_and_watch().await.unwrap().next(T).await.unwrap();
    assert_eq!(healthy_ids(&first).len(), 4, "{first:?}");
    rig.stop().await.unwrap();
}
