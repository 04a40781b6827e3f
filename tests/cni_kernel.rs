//! CNI ADD/DEL/CHECK/GC on real kernel objects (run as root): veth
//! stand-ins for VF netdevs, real network namespaces, Debian's real
//! host-local and static IPAM.

mod cni_host;

use cni_host::{Host, host_link, ns_addrs, ns_link};
use fastpath::cni::{Step, StepHook};
use serde_json::{Value, json};

const VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[test]
fn add_check_del_round_trip_per_version() {
    let mut h = Host::new("rt", 1);
    let pod = h.pod(0);
    for (n, v) in VERSIONS.iter().enumerate() {
        let container = format!("c{n}");
        let env = h.env(&container, "net1", Some(&pod));
        let conf = h.conf(v, 0, json!({"mtu": 9000}));
        let (code, res) = h.cni("ADD", &env, &conf);
        assert_eq!(code, 0, "{v}: {res}");
        assert_eq!(res["cniVersion"], *v);
        let iface = &res["interfaces"][0];
        assert_eq!(iface["name"], "net1");
        assert_eq!(iface["mac"], h.vfs[0].mac.as_str());
        assert_eq!(
            iface["sandbox"],
            Host::netns_path(&pod).display().to_string()
        );
        assert_eq!(iface.get("pciID").is_some(), *v == "1.1.0", "{v}: {res}");
        assert_eq!(
            res["ips"][0].get("version").is_some(),
            v.starts_with("0."),
            "{v}"
        );
        assert_eq!(res["ips"][0]["gateway"], "10.77.0.1");

        // In the pod: renamed, up, MTU, address; gone from the host.
        let l = ns_link(&pod, "net1").expect("net1 in pod");
        assert!(l.up && l.mtu == 9000 && l.mac == h.vfs[0].mac, "{l:?}");
        let addr = res["ips"][0]["address"].as_str().unwrap().to_string();
        assert_eq!(ns_addrs(&pod, "net1"), vec![addr]);
        let routes = cni_host::ip_out(&["-n", &pod, "route", "show", "10.88.0.0/16"]);
        assert!(routes.contains("via 10.77.0.1"), "{routes}");
        assert!(host_link(&h.vfs[0].ifname).is_none());
        let held = fastpath::cni::records::list(h.state.path()).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].pci.to_string(), h.vfs[0].pci);
        assert_eq!(
            held[0].pod_name.as_deref(),
            Some(format!("pod-{container}").as_str())
        );
        assert!(held[0].attached && !held[0].dpdk);

        let mut with_prev = conf.clone();
        with_prev["prevResult"] = res.clone();
        if *v != "0.3.1" {
            let (code, out) = h.cni("CHECK", &env, &with_prev);
            assert_eq!(code, 0, "CHECK {v}: {out}");
        }
        let (code, out) = h.cni("DEL", &env, &with_prev);
        assert_eq!(code, 0, "DEL {v}: {out}");
        h.assert_vf_home(0);
        assert!(ns_link(&pod, "net1").is_none());
        assert!(h.records().is_empty(), "{:?}", h.records());
        assert!(h.leases().is_empty(), "{:?}", h.leases());
    }
}

#[test]
fn check_notices_a_changed_interface() {
    let mut h = Host::new("ck", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.0.0", 0, json!({}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    cni_host::ip(&["-n", &pod, "link", "set", "net1", "mtu", "1400"]);
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = res;
    let (code, out) = h.cni("CHECK", &env, &with_prev);
    assert_eq!(code, 1);
    assert!(out["msg"].as_str().unwrap().contains("MTU"), "{out}");
    assert_eq!(h.cni("DEL", &env, &with_prev).0, 0);
    h.assert_vf_home(0);
}

#[test]
fn del_after_the_netns_was_deleted_cleans_records_and_ipam() {
    let mut h = Host::new("nd", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({}));
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    assert_eq!(h.leases().len(), 1);
    cni_host::ip(&["netns", "del", &pod]);
    // A veth dies with its namespace; a real VF comes back as devN (VM test).
    let (code, out) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{out}");
    assert!(h.records().is_empty());
    assert!(h.leases().is_empty(), "{:?}", h.leases());
    // And with CNI_NETNS empty, as the spec allows.
    let env_empty = h.env("c", "net1", None);
    assert_eq!(h.cni("DEL", &env_empty, &conf).0, 0);
}

#[test]
fn del_finds_a_vf_the_kernel_returned_under_another_name_by_pci_address() {
    let mut h = Host::new("kn", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.0.0", 0, json!({"mtu": 9000}));
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    // The netns goes away; a real VF would come back to the host as devN
    // with the pod's MAC and MTU. Stage exactly that with a fresh veth.
    cni_host::ip(&["netns", "del", &pod]);
    let kernel_name = format!("{}k0", h.tag);
    cni_host::ip(&[
        "link",
        "add",
        &kernel_name,
        "mtu",
        "9000",
        "address",
        "02:fa:ff:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        &format!("{}q0", h.tag),
        "netns",
        &h.far,
    ]);
    h.rename_vf_netdev(0, &kernel_name, "02:fa:ff:00:00:01");
    let (code, out) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{out}");
    assert!(host_link(&kernel_name).is_none(), "renamed back");
    h.assert_vf_home(0);
    assert!(h.records().is_empty() && h.leases().is_empty());
}

#[test]
fn add_takes_over_a_vf_whose_previous_pod_died_without_del() {
    let mut h = Host::new("so", 1);
    let (a, b) = (h.pod(0), h.pod(1));
    let conf = h.conf("1.1.0", 0, json!({}));
    assert_eq!(h.cni("ADD", &h.env("old", "net1", Some(&a)), &conf).0, 0);
    // Pod A dies without DEL; its VF comes back as a kernel-named netdev.
    cni_host::ip(&["netns", "del", &a]);
    let kernel_name = format!("{}k0", h.tag);
    cni_host::ip(&[
        "link",
        "add",
        &kernel_name,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{}q0", h.tag),
        "netns",
        &h.far,
    ]);
    h.rename_vf_netdev(0, &kernel_name, "02:00:00:00:00:01");
    let env_b = h.env("new", "net1", Some(&b));
    let (code, res) = h.cni("ADD", &env_b, &conf);
    assert_eq!(code, 0, "{res}");
    assert!(ns_link(&b, "net1").is_some());
    let held = fastpath::cni::records::list(h.state.path()).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].container_id, "new");
    // The old attachment's lease went with its restoration.
    assert_eq!(h.leases().len(), 1, "{:?}", h.leases());
    assert_eq!(h.cni("DEL", &env_b, &conf).0, 0);
    assert!(host_link(&h.vfs[0].ifname).is_some());
    assert!(h.records().is_empty());
}

#[test]
fn a_corrupt_record_is_set_aside_and_del_still_brings_the_vf_home() {
    let mut h = Host::new("cr", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.0.0", 0, json!({}));
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    // A slot torn by a power loss is not corrupt (the other slot is
    // read); a record an earlier version left can be, as can any file.
    let dir = h.state.path().join("cni");
    std::fs::remove_file(dir.join(format!("{}.rec", h.vfs[0].pci))).unwrap();
    let rec = dir.join(format!("{}.json", h.vfs[0].pci));
    std::fs::write(&rec, b"{\"version\": 1, \"pci\": ").unwrap();
    let (code, out) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{out}");
    assert!(ns_link(&pod, "net1").is_none());
    assert!(host_link(&h.vfs[0].ifname).is_some());
    assert!(h.records().is_empty() && h.leases().is_empty());
    assert!(
        rec.with_extension("json.corrupt").exists(),
        "kept for a human"
    );
}

/// A record the previous version left (`<pci>.json`, pretty JSON, no slot
/// file) is found and restored by this version's DEL: a node keeps its
/// attachments across an upgrade.
#[test]
fn del_restores_a_record_an_earlier_version_left() {
    let mut h = Host::new("up", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    let pci = h.vfs[0].pci.parse().unwrap();
    let rec = fastpath::cni::records::load(h.state.path(), pci)
        .unwrap()
        .unwrap();
    let dir = h.state.path().join("cni");
    std::fs::remove_file(dir.join(format!("{pci}.rec"))).unwrap();
    let old = dir.join(format!("{pci}.json"));
    std::fs::write(&old, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    assert_eq!(h.records(), [format!("{pci}.json")]);
    let (code, out) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{out}");
    assert!(ns_link(&pod, "net1").is_none());
    h.assert_vf_home(0);
    assert!(h.records().is_empty() && !old.exists());
    // And the VF attaches again, into a slot file.
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    assert_eq!(h.records(), [format!("{pci}.rec")]);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    assert!(h.records().is_empty());
}

#[test]
fn del_twice_and_del_of_something_never_added_succeed() {
    let mut h = Host::new("dt", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.0.0", 0, json!({}));
    assert_eq!(h.cni("DEL", &env, &conf).0, 0, "DEL before any ADD");
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    h.assert_vf_home(0);
    assert!(h.records().is_empty() && h.leases().is_empty());
}

#[test]
fn add_over_a_taken_ifname_fails_and_changes_nothing() {
    let mut h = Host::new("tk", 1);
    let pod = h.pod(0);
    // The pod already has a net1 (its peer is there too).
    cni_host::ip(&[
        "-n", &pod, "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
    ]);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({"mtu": 1400}));
    let (code, out) = h.cni("ADD", &env, &conf);
    assert_ne!(code, 0, "{out}");
    assert_eq!(out["code"], 100, "{out}");
    assert!(
        out["msg"].as_str().unwrap().contains("net1 already exists"),
        "{out}"
    );
    h.assert_vf_home(0);
    assert!(ns_link(&pod, "net1").is_some_and(|l| l.mtu == 1500));
    assert!(h.records().is_empty());
}

#[test]
fn del_without_a_record_brings_the_vf_home_by_device_id() {
    let mut h = Host::new("nr", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    for r in h.records() {
        std::fs::remove_file(h.state.path().join("cni").join(r)).unwrap();
    }
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = res;
    let (code, out) = h.cni("DEL", &env, &with_prev);
    assert_eq!(code, 0, "{out}");
    assert!(ns_link(&pod, "net1").is_none());
    let l = host_link(&h.vfs[0].ifname).expect("VF home under its sysfs name");
    assert!(!l.up);
    assert!(h.leases().is_empty());
}

/// Fails ADD right after the named step took effect.
struct FailAfter(&'static str);

impl StepHook for FailAfter {
    fn after(&self, step: &Step) -> Result<(), String> {
        if step.name() == self.0 {
            Err(format!("injected failure after {}", self.0))
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_failure_after_any_add_step_leaves_the_host_as_before() {
    let mut h = Host::new("fi", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({"mtu": 9000}));
    let before = host_link(&h.vfs[0].ifname).unwrap();
    for step in ["move_to_pod", "set_mtu", "up", "ipam", "addresses"] {
        let (code, out) = h.cni_hook("ADD", &env, &conf, &FailAfter(step));
        assert_eq!(code, 1, "{step}");
        assert_eq!(out["msg"], format!("step {step} failed"), "{out}");
        assert_eq!(
            host_link(&h.vfs[0].ifname).as_ref(),
            Some(&before),
            "after {step}"
        );
        assert!(ns_link(&pod, "net1").is_none(), "after {step}");
        assert!(h.records().is_empty(), "after {step}");
        assert!(h.leases().is_empty(), "after {step}: {:?}", h.leases());
    }
    // And the VF is still usable afterwards.
    assert_eq!(h.cni("ADD", &env, &conf).0, 0);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    h.assert_vf_home(0);
}

#[test]
fn pf_side_settings_on_a_pf_that_cannot_take_them_fail_before_any_change() {
    let mut h = Host::new("pf", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 0, json!({"vlan": 100, "spoofchk": "off"}));
    let before = host_link(&h.vfs[0].ifname).unwrap();
    let (code, out) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 1);
    assert_eq!(out["code"], 100, "{out}");
    let details = out["details"].as_str().unwrap();
    assert!(
        details.contains(&format!("PF {}pf (driver ice)", h.tag)),
        "{out}"
    );
    assert_eq!(host_link(&h.vfs[0].ifname), Some(before));
    assert!(h.records().is_empty() && h.leases().is_empty());
}

#[test]
fn a_vf_held_by_a_live_pod_is_refused() {
    let mut h = Host::new("bz", 1);
    let (a, b) = (h.pod(0), h.pod(1));
    let conf = h.conf("1.0.0", 0, json!({}));
    let env_a = h.env("ca", "net1", Some(&a));
    assert_eq!(h.cni("ADD", &env_a, &conf).0, 0);
    let (code, out) = h.cni("ADD", &h.env("cb", "net1", Some(&b)), &conf);
    assert_eq!(code, 1);
    assert_eq!(out["code"], 101, "{out}");
    assert!(
        out["details"].as_str().unwrap().contains("ns/pod-ca"),
        "{out}"
    );
    assert!(ns_link(&a, "net1").is_some());
    assert_eq!(h.cni("DEL", &env_a, &conf).0, 0);
    h.assert_vf_home(0);
}

#[test]
fn static_ipam_and_the_device_info_file() {
    let mut h = Host::new("st", 1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let devinfo = h.state.path().join("devinfo/net1.json");
    let conf = h.conf(
        "1.1.0",
        0,
        json!({
            "ipam": {"type": "static", "addresses": [{"address": "192.168.55.7/24", "gateway": "192.168.55.1"}],
                     "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["192.168.55.53"]}},
            "runtimeConfig": {"CNIDeviceInfoFile": devinfo.display().to_string()},
        }),
    );
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    assert_eq!(res["ips"][0]["address"], "192.168.55.7/24");
    assert_eq!(res["dns"]["nameservers"][0], "192.168.55.53");
    assert_eq!(res["interfaces"][0]["pciID"], h.vfs[0].pci.as_str());
    assert_eq!(ns_addrs(&pod, "net1"), vec!["192.168.55.7/24".to_string()]);
    let default = cni_host::ip_out(&["-n", &pod, "route", "show", "default"]);
    assert!(default.contains("via 192.168.55.1 dev net1"), "{default}");
    let info: Value = serde_json::from_slice(&std::fs::read(&devinfo).unwrap()).unwrap();
    assert_eq!(info["type"], "pci");
    assert_eq!(info["pci"]["pci-address"], h.vfs[0].pci.as_str());
    assert_eq!(info["pci"]["pf-pci-address"], "0000:3b:00.0");
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    assert!(!devinfo.exists());
    h.assert_vf_home(0);
}

#[test]
fn a_dpdk_vf_gets_ipam_and_a_pci_id_and_del_works() {
    let mut h = Host::new("dp", 2);
    h.make_dpdk(1);
    let pod = h.pod(0);
    let env = h.env("c", "net1", Some(&pod));
    let conf = h.conf("1.1.0", 1, json!({}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    let iface = &res["interfaces"][0];
    assert_eq!(iface["pciID"], h.vfs[1].pci.as_str());
    assert!(
        iface.get("sandbox").is_none() && iface.get("mac").is_none(),
        "{res}"
    );
    assert_eq!(res["ips"].as_array().unwrap().len(), 1);
    let held = fastpath::cni::records::list(h.state.path()).unwrap();
    assert!(held[0].dpdk);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    assert_eq!(h.cni("DEL", &env, &conf).0, 0);
    assert!(h.records().is_empty() && h.leases().is_empty());
}

#[test]
fn gc_restores_attachments_that_are_no_longer_valid() {
    let mut h = Host::new("gc", 2);
    let (a, b) = (h.pod(0), h.pod(1));
    assert_eq!(
        h.cni(
            "ADD",
            &h.env("ka", "net1", Some(&a)),
            &h.conf("1.1.0", 0, json!({}))
        )
        .0,
        0
    );
    assert_eq!(
        h.cni(
            "ADD",
            &h.env("kb", "net1", Some(&b)),
            &h.conf("1.1.0", 1, json!({}))
        )
        .0,
        0
    );
    let mut gc = h.conf("1.1.0", 0, json!({"deviceID": null}));
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ka", "ifname": "net1"}]);
    let (code, out) = h.cni("GC", &h.env("", "", None), &gc);
    assert_eq!(code, 0, "{out}");
    assert!(ns_link(&a, "net1").is_some());
    assert!(ns_link(&b, "net1").is_none());
    h.assert_vf_home(1);
    assert_eq!(h.records().len(), 1);
    assert_eq!(h.leases().len(), 1);
    let (code, out) = h.cni("STATUS", &h.env("", "", None), &gc);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        h.cni(
            "DEL",
            &h.env("ka", "net1", Some(&a)),
            &h.conf("1.1.0", 0, json!({}))
        )
        .0,
        0
    );
    h.assert_vf_home(0);
}

#[test]
fn parallel_add_del_on_32_vfs_leaks_nothing() {
    const N: usize = 32;
    let mut h = Host::new("pl", N);
    let pods: Vec<String> = (0..N).map(|i| h.pod(i)).collect();
    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let h = &h;
            s.spawn(move || {
                let env = h.env(&format!("c{i}"), "net1", Some(pod));
                let conf = h.conf("1.1.0", i, json!({}));
                let (code, out) = h.cni("ADD", &env, &conf);
                assert_eq!(code, 0, "ADD {i}: {out}");
                let (code, out) = h.cni("DEL", &env, &conf);
                assert_eq!(code, 0, "DEL {i}: {out}");
            });
        }
    });
    for (i, pod) in pods.iter().enumerate() {
        h.assert_vf_home(i);
        assert!(ns_link(pod, "net1").is_none());
    }
    assert!(h.records().is_empty(), "{:?}", h.records());
    assert!(h.leases().is_empty(), "{:?}", h.leases());
}

#[test]
fn the_binary_answers_as_a_cni_plugin_when_cni_command_is_set() {
    let mut h = Host::new("bn", 1);
    let pod = h.pod(0);
    let log_file = h.state.path().join("cni.log");
    let conf = h.conf(
        "1.0.0",
        0,
        json!({"logFile": log_file.display().to_string(), "logLevel": "debug"}),
    );
    let run = |cmd: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .env_clear()
            .envs(h.env("c", "net1", Some(&pod)))
            .env("CNI_COMMAND", cmd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("ADD");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout carries the result and nothing else; logs went to logFile.
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["interfaces"][0]["name"], "net1");
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("attached"), "{log}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("DEL");
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "DEL prints nothing");
    h.assert_vf_home(0);
}
