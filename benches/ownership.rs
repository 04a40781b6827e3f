//! Latency the pod ownership check adds to a CNI ADD, against a fake
//! kubelet serving the real PodResources v1 API over a unix socket. Each
//! run is a whole `check_add` as the CNI calls it: socket stat, runtime
//! build, connect, HTTP/2 handshake, RPC(s), decision.
//! Run: `cargo bench --bench ownership` (or `hack/bench ownership`).

#[path = "../tests/support/podresources_fake.rs"]
mod podresources_fake;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fastpath::ownership::{NodeOwnership, OwnershipNetConf, PodRef, check_add};
use fastpath::pci::PciAddress;
use podresources_fake::{FakeKubelet, FakeState, GetMode, pod};

const RES: &str = "intel.com/sriov_netdevice";
const RUNS: usize = 300;

/// A node of 110 pods (kubelet's default max), each with one VF.
fn busy_node(get: GetMode) -> FakeState {
    let mut pods = Vec::new();
    for i in 0..110u32 {
        let dev = format!(
            "0000:{:02x}:{:02x}.{}",
            0x3b + i / 64,
            (i % 64) / 8 + 2,
            i % 8
        );
        pods.push(pod(
            &format!("ns{i}"),
            &format!("pod{i}"),
            &[(RES, &[dev.as_str()])],
        ));
    }
    FakeState {
        pods,
        get,
        delay: Duration::ZERO,
    }
}

fn measure(name: &str, mut f: impl FnMut()) {
    for _ in 0..20 {
        f();
    }
    let mut t: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<48} median {:>7.0} us   p90 {:>7.0} us   min {:>7.0} us   ({RUNS} runs)",
        us(t[RUNS / 2]),
        us(t[RUNS * 9 / 10]),
        us(t[0])
    );
}

fn main() {
    let pod0 =
        PodRef::from_cni_args("K8S_POD_NAMESPACE=ns0;K8S_POD_NAME=pod0;K8S_POD_UID=u").unwrap();
    let own: PciAddress = "0000:3b:02.0".parse().unwrap();
    let foreign: PciAddress = "0000:3b:02.1".parse().unwrap();
    let none = BTreeSet::new();
    let plain = OwnershipNetConf::default();
    let by_resource = OwnershipNetConf {
        ownership: None,
        resource_name: Some(RES.into()),
    };
    for get in [GetMode::Serve, GetMode::Unimplemented] {
        let dir = tempfile::tempdir().unwrap();
        let k = FakeKubelet::start(dir.path(), busy_node(get));
        let node = NodeOwnership {
            pod_resources_socket: k.socket.clone(),
            pool_resource_names: Some([RES.to_owned()].into()),
            ..NodeOwnership::default()
        };
        let via = match get {
            GetMode::Serve => "Get",
            _ => "List fallback",
        };
        measure(&format!("allowed, own deviceID ({via})"), || {
            check_add(&node, &plain, Some(&pod0), Some(own), &none).unwrap();
        });
        measure(&format!("refused, foreign deviceID ({via})"), || {
            check_add(&node, &plain, Some(&pod0), Some(foreign), &none).unwrap_err();
        });
        measure(
            &format!("deviceID resolved by resourceName ({via})"),
            || {
                check_add(&node, &by_resource, Some(&pod0), None, &none).unwrap();
            },
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeOwnership {
        pod_resources_socket: dir.path().join("absent.sock"),
        ..NodeOwnership::default()
    };
    measure("socket absent (default: warn, proceed)", || {
        check_add(&node, &plain, Some(&pod0), Some(own), &none).unwrap();
    });
}
