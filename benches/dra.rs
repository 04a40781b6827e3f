//! DRA benchmarks (issue 16), against the stand-in API server:
//!
//! 1. Publishing ResourceSlices for 1,024 VFs (8 E810 PFs x 128, fake
//!    sysfs on tmpfs, every VF in one `draPools` entry, attributes from
//!    `dra::attributes`) through `cluster::slices::SlicePublisher`:
//!    requests per publish (from the stand-in's request log) and
//!    fastpath's own CPU time per publish of changed content; then 100
//!    rescans (scan, pools, attributes, publish) of unchanged content,
//!    which must send no request at all.
//! 2. NodePrepareResources and NodeUnprepareResources of one claim that
//!    needs no driver rebind (a netdevice VF, a veth stand-in on a fake
//!    sysfs as in tests/dra_kubelet.rs; run as root), through the plugin's
//!    gRPC socket with the fake kubelet's DRA client, the ResourceClaim
//!    read from the stand-in by `cluster::claims::ApiClaims`.
//!
//! fastpath's own time is CPU time: this process's (all threads) minus
//! that of the one thread that runs the stand-in API server and kubelet's
//! client (see `cluster_bed`). Wall times are printed beside it.
//! `FASTPATH_BENCH_CYCLES` sets the measured publishes and prepare cycles
//! (default 40); `FASTPATH_BENCH_ONLY=slices` or `=prepare` runs one part.
//! Run with `hack/bench dra`.

mod cluster_bed;
#[path = "../tests/cni_host/mod.rs"]
mod cni_host;
#[path = "../tests/dra_rig/mod.rs"]
mod dra_rig;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cluster_bed::{Outside, Sample, header, measure, ms, summarize};
use fake_apiserver::FakeApiServer;
use fake_kubelet::DraClient;
use fastpath::agent::telemetry::Telemetry;
use fastpath::cluster::claims::ApiClaims;
use fastpath::cluster::slices::SlicePublisher;
use fastpath::cluster::{ClusterOptions, client};
use fastpath::dra::attributes::{node_devices, pcie_root};
use fastpath::dra::plugin::DraPlugin;
use fastpath::dra::serve::{self, SocketDirs};
use fastpath::dra::{AttrValue, NodeDevices, device_name};
use fastpath::pci::PciAddress;
use fastpath::pools::{self, FactNeeds, HostFacts, Pools, Reasons};
use fastpath::procfs::Procfs;
use fastpath::sysfs::Sysfs;
use serde_json::json;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::e810;

const DRIVER: &str = dra_rig::DRIVER;
const NODE: &str = dra_rig::NODE;
const PFS: usize = 8;
const VFS: usize = 128;

fn cycles() -> usize {
    std::env::var("FASTPATH_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

fn runtime() -> tokio::runtime::Runtime {
    // As the agent runs: a multi-threaded runtime on the 2 cores.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let outside = Outside::start();
    let server = outside.run(FakeApiServer::start()).unwrap();
    server
        .seed(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
        .unwrap();
    let rt = runtime();
    let kube = rt
        .block_on(client(&ClusterOptions {
            api_server: Some(server.url()),
            kubeconfig: None,
        }))
        .unwrap();
    // FASTPATH_BENCH_ONLY=slices or =prepare runs one part (for a profile).
    let only = std::env::var("FASTPATH_BENCH_ONLY").unwrap_or_default();
    if only != "prepare" {
        slices(&outside, &server, &rt, kube.clone());
    }
    if only != "slices" {
        prepare(&outside, &server, &rt, kube);
    }
    drop(rt);
    drop(server);
}

/// The 1,024-VF tree and the pools config that puts every VF in DRA.
fn slice_tree(dir: &Path) -> (Sysfs, Procfs, pools::Config) {
    let fs = FakeSysfs::new(dir.join("sys")).unwrap();
    let mut names = Vec::new();
    for i in 0..PFS {
        let bus = 0x10 + 0x10 * i;
        let pf = e810(
            &format!("0000:{bus:02x}:00.0"),
            &format!("ens{i}f0"),
            &format!("0000:{:02x}:00.0", bus + 1),
            VFS,
        )
        .numa((i % 2) as i32)
        .iommu_groups(1000 * (i as u32 + 1));
        fs.add_pf(&pf).unwrap();
        names.push(format!("ens{i}f0"));
    }
    std::fs::create_dir_all(dir.join("proc/net")).unwrap();
    std::fs::write(dir.join("proc/net/route"), "Iface\tDestination\n").unwrap();
    let cfg = pools::config::parse(
        &json!({"draPools": [{"resourceName": "dra_net", "selectors": {"pfNames": names}}]})
            .to_string(),
        "intel.com",
    )
    .unwrap();
    (
        Sysfs::new(dir.join("sys")),
        Procfs::new(dir.join("proc")),
        cfg,
    )
}

/// A rescan as the agent does it: inventory, facts, pool modes.
fn dra_pools(sysfs: &Sysfs, procfs: &Procfs, cfg: &pools::Config) -> Pools {
    let inv = fastpath::inventory::scan_with_threads(sysfs, 1).unwrap();
    let facts = HostFacts::gather(sysfs, procfs, &inv, FactNeeds::of(cfg));
    pools::modes::assign_modes(&inv, cfg, &facts, Reasons::Skip)
        .unwrap()
        .dra
}

/// The attributes of every DRA device, with each VF's PCIe root read from
/// its `bus/pci/devices` link.
fn devices_of(root: &Path, dra: &Pools) -> NodeDevices {
    let roots: BTreeMap<PciAddress, String> = dra
        .pools
        .iter()
        .flat_map(|p| &p.devices)
        .filter_map(|d| {
            let link = root.join("bus/pci/devices").join(d.view.pci.to_string());
            let target = std::fs::read_link(link).ok()?;
            Some((d.view.pci, pcie_root(&target)?))
        })
        .collect();
    node_devices(DRIVER, NODE, dra, &roots)
}

fn slices(
    outside: &Outside,
    server: &FakeApiServer,
    rt: &tokio::runtime::Runtime,
    kube: kube::Client,
) {
    header("ResourceSlices for 1,024 VFs");
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let (sysfs, procfs, cfg) = slice_tree(dir.path());
    let root = dir.path().join("sys");
    let dra = dra_pools(&sysfs, &procfs, &cfg);
    let base = devices_of(&root, &dra);
    assert_eq!(base.devices.len(), PFS * VFS);
    assert!(
        base.devices.iter().all(|d| d
            .attributes
            .contains_key(fastpath::dra::attributes::PCIE_ROOT)),
        "every VF has its PCIe root"
    );
    let mut p = rt
        .block_on(SlicePublisher::start(kube, DRIVER, NODE))
        .unwrap();

    // Content that differs from the last publish: one VF's driver changed,
    // as a rebind of one VF would (a different VF each time).
    let changed = |i: usize| {
        let mut d = base.clone();
        let k = (i * 37) % d.devices.len();
        d.devices[k]
            .attributes
            .insert("driver".into(), AttrValue::String("vfio-pci".into()));
        d
    };
    let publish = |p: &mut SlicePublisher, d: &NodeDevices| -> (usize, usize, usize, Sample) {
        let before = server.requests().len();
        let patches = server.count("patch", "resourceslices");
        let (r, s) = measure(outside, || rt.block_on(p.publish(d)));
        let r = r.unwrap();
        let reqs = server.requests().len() - before;
        let patched = server.count("patch", "resourceslices") - patches;
        (r.written, reqs, patched, s)
    };
    // Warm-up: the first publish, then a few changes.
    for i in 0..5 {
        publish(&mut p, &changed(i));
    }
    let n = cycles().max(20);
    let mut samples = Vec::new();
    let mut reqs_seen = Vec::new();
    for i in 5..5 + n {
        let d = changed(i);
        let (written, reqs, patched, s) = publish(&mut p, &d);
        assert_eq!(written, PFS * VFS / 128, "one write per slice");
        assert_eq!((reqs, patched), (written, written), "one request per slice");
        reqs_seen.push(reqs);
        samples.push(s);
    }
    let (own, out, wall) = summarize(&samples);
    println!(
        "publish of changed content: {n} publishes, requests per publish {:?} (all server-side apply patches, 128 devices per slice)",
        reqs_seen.iter().collect::<std::collections::BTreeSet<_>>()
    );
    println!("  fastpath own CPU: {own}");
    println!("  stand-in API server CPU: {out}");
    println!("  wall: {wall}");

    // 100 rescans of unchanged content: scan, pools, attributes, publish.
    let (w, ..) = publish(&mut p, &base);
    assert_eq!(w, PFS * VFS / 128);
    let before = server.requests().len();
    let mut pub_samples = Vec::new();
    let mut map_samples = Vec::new();
    let mut scan_samples = Vec::new();
    for _ in 0..100 {
        let (dra, s_scan) = measure(outside, || dra_pools(&sysfs, &procfs, &cfg));
        let (d, s_map) = measure(outside, || devices_of(&root, &dra));
        let (r, s_pub) = measure(outside, || rt.block_on(p.publish(&d)));
        assert_eq!(r.unwrap().written, 0, "unchanged content writes nothing");
        scan_samples.push(s_scan);
        map_samples.push(s_map);
        pub_samples.push(s_pub);
    }
    let after = server.requests().len();
    assert_eq!(after - before, 0, "no request over 100 unchanged rescans");
    println!(
        "100 rescans of unchanged content: {} requests (asserted 0)",
        after - before
    );
    println!(
        "  publish (compare only) own CPU: {}",
        summarize(&pub_samples).0
    );
    println!(
        "  attributes of 1,024 VFs (incl. PCIe root links) own CPU: {}",
        summarize(&map_samples).0
    );
    println!(
        "  rescan (scan 1 thread, facts, pool modes) own CPU: {}",
        summarize(&scan_samples).0
    );
    println!("  requests in the log: {}", server.requests().len());
}

fn prepare(
    outside: &Outside,
    server: &FakeApiServer,
    rt: &tokio::runtime::Runtime,
    kube: kube::Client,
) {
    header("NodePrepareResources, one netdevice claim, no rebind");
    let rig = rt.block_on(dra_rig::Rig::new("bd", 2, &[]));
    // The rig's plugin reads claims from a table; this one reads them from
    // the stand-in, as the agent's does, on its own sockets.
    let sysfs = Sysfs::new(rig.host.sysfs.path());
    let pf = rig.host.pf.netdev.as_ref().unwrap().name.clone();
    let cfg = pools::config::parse(
        &json!({"draPools": [{"resourceName": "dra_net", "selectors": {"pfNames": [pf]}}]})
            .to_string(),
        "intel.com",
    )
    .unwrap();
    let dra = dra_pools(&sysfs, &Procfs::new(rig.dir.path().join("proc")), &cfg);
    let (_tx, pools_rx) = tokio::sync::watch::channel(Arc::new(dra));
    let dirs = SocketDirs {
        plugins_registry: rig.dir.path().join("bench-registry"),
        plugins: rig.dir.path().join("bench-plugins"),
    };
    let plugin = Arc::new(DraPlugin {
        ctx: rig.ctx.clone(),
        claims: Arc::new(ApiClaims::new(kube)),
        pools: pools_rx,
        lock: Default::default(),
        telemetry: Some(Arc::new(Telemetry::default())),
    });
    let _served = rt.block_on(async { serve::start(plugin, &dirs) }).unwrap();

    let pci: PciAddress = rig.pci(0).parse().unwrap();
    let stored = server
        .seed(json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "claim-bench", "namespace": "ns"},
            "spec": {"devices": {"requests": [{"name": "net", "exactly": {"deviceClassName": "sriov"}}]}},
            "status": {"allocation": {"devices": {
                "results": [{"request": "net", "driver": DRIVER, "pool": NODE, "device": device_name(pci)}],
                "config": [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters":
                    {"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig", "driver": "netdevice"}}}]}}}}))
        .unwrap();
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_string();
    let id = ("ns".to_string(), "claim-bench".to_string(), uid.clone());

    // kubelet: the plugin watcher finds the socket, then a DRA client.
    let registry = dirs.plugins_registry.clone();
    let kubelet = outside.run(async move {
        let found = fake_kubelet::discover_plugins(&registry).await.unwrap();
        let c = DraClient::connect(Path::new(&found[0].info.endpoint), "v1")
            .await
            .unwrap();
        Arc::new(tokio::sync::Mutex::new(c))
    });
    let call = |prep: bool| {
        let k = kubelet.clone();
        let id = id.clone();
        let uid = uid.clone();
        outside.run(async move {
            let claims = [(id.0.as_str(), id.1.as_str(), id.2.as_str())];
            let mut k = k.lock().await;
            if prep {
                let r = k.prepare(&claims).await.unwrap();
                let c = &r.claims[&uid];
                assert_eq!(c.error, "");
                assert_eq!(c.devices.len(), 1);
                assert_eq!(c.devices[0].cdi_device_ids.len(), 1);
            } else {
                let r = k.unprepare(&claims).await.unwrap();
                assert_eq!(r.claims[&uid].error, "");
            }
        })
    };
    for _ in 0..5 {
        call(true);
        call(false);
    }
    let n = cycles().max(30);
    let (mut prep, mut unprep) = (Vec::new(), Vec::new());
    let gets = server.count("get", "resourceclaims");
    let all = server.requests().len();
    for _ in 0..n {
        assert!(!rig.cdi_spec(&uid).exists());
        prep.push(measure(outside, || call(true)).1);
        assert!(rig.cdi_spec(&uid).exists(), "prepare wrote the CDI spec");
        unprep.push(measure(outside, || call(false)).1);
    }
    let gets = server.count("get", "resourceclaims") - gets;
    let all = server.requests().len() - all;
    assert_eq!(
        (gets, all),
        (n, n),
        "one claim read per prepare, nothing else"
    );
    println!(
        "{n} prepare+unprepare cycles; API requests: {gets} (one GET of the claim per prepare, none per unprepare)"
    );
    for (what, s) in [("prepare", &prep), ("unprepare", &unprep)] {
        let (own, out, wall) = summarize(s);
        println!("{what}:");
        println!("  fastpath own CPU: {own}");
        println!("  kubelet client + stand-in API server CPU: {out}");
        println!("  wall: {wall}");
    }
    let fsync_note = rig.ctx.state_dir.display();
    println!(
        "  (state dir {fsync_note}; wall includes the claim record's fsync; median own CPU prepare {} ms, unprepare {} ms)",
        ms(summarize(&prep).0.median),
        ms(summarize(&unprep).0.median)
    );
}
