//! ADD against real kernel behaviour (root): veths and a netns.

use super::*;
use crate::netlink::test_ip::{ip, ip_ok};

/// What makes the check before the move necessary, and the recovery
/// when the name is taken between check and move.
#[test]
fn a_taken_name_fails_the_move_after_the_link_changed_netns_and_it_is_brought_back() {
    let id = std::process::id();
    let (ns, vf) = (format!("fpu-{id}"), format!("fpu{id}v"));
    ip(&["netns", "add", &ns]);
    ip(&[
        "link",
        "add",
        &vf,
        "type",
        "veth",
        "peer",
        "name",
        &format!("fpu{id}p"),
    ]);
    ip(&[
        "-n", &ns, "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
    ]);
    let pod = NetNs::open(format!("/run/netns/{ns}")).unwrap();
    let mut host = Netlink::open().unwrap();
    let mut pod_nl = Netlink::open_in(&pod).unwrap();
    let link = host.require_link(&vf).unwrap();

    let err = host.move_to_netns(&link, pod.raw_fd(), "net1").unwrap_err();
    assert_eq!(err.errno(), Some(nix::errno::Errno::EEXIST), "{err}");
    let stranded = pod_nl.link_by_name(&vf).unwrap().is_some();
    let host_ns = NetNs::current().unwrap();
    let moved = move_home(&pod, &vf, &host_ns, &vf).unwrap();
    let home = host.link_by_name(&vf).unwrap();
    let pods_own = pod_nl.link_by_name("net1").unwrap();
    let _ = ip_ok(&["link", "del", &vf]);
    let _ = ip_ok(&["netns", "del", &ns]);
    assert!(stranded, "the kernel moved {vf} before failing the rename");
    assert!(moved && home.is_some(), "{vf} is home again");
    assert!(pods_own.is_some(), "the pod's own net1 stays");
}
