//! Provisioning never destroys or unbinds a VF a pod holds: a real CNI ADD
//! (veth stand-in, real netns) records the VF, and `fastpath plan` on the
//! same node then holds the count change that would destroy it, until DEL.

mod cni_host;

use std::process::ExitCode;

use clap::Parser;
use cni_host::Host;
use serde_json::json;

fn plan(h: &Host, policy: &std::path::Path) -> String {
    let cli = fastpath::cli::Cli::try_parse_from([
        "fastpath",
        "--sysfs-root",
        h.sysfs.path().to_str().unwrap(),
        "plan",
        "--policy",
        policy.to_str().unwrap(),
        "--state-dir",
        h.state.path().to_str().unwrap(),
    ])
    .unwrap();
    let mut out = Vec::new();
    let code = fastpath::cli::run_to(cli, &mut out).unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_vf_attached_to_a_pod_holds_the_count_change_until_del() {
    let mut h = Host::new("ph", 2);
    let pod = h.pod(0);
    let policy = h.state.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!("policies:\n  - pfNames: [{}pf]\n    numVfs: 1\n", h.tag),
    )
    .unwrap();

    let env = h.env("c0", "net1", Some(&pod));
    let conf = h.conf("1.0.0", 0, json!({}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");

    // `fastpath status` shows the same record as an attachment of its pod.
    let att = fastpath::status::attachments::list(h.state.path()).unwrap();
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].pci.to_string(), h.vfs[0].pci);
    assert_eq!(
        (att[0].pod_name.as_str(), att[0].ifname.as_str()),
        ("pod-c0", "net1")
    );

    let held = plan(&h, &policy);
    assert!(held.contains("held until pods release their VFs"), "{held}");
    assert!(held.contains(&h.vfs[0].pci), "{held}");
    assert!(held.contains("numVfs 2 -> 1"), "{held}");
    assert!(
        !held.contains("sriov_numvfs"),
        "a held VF must not be destroyed: {held}"
    );

    let (code, res) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{res}");
    assert!(
        fastpath::status::attachments::list(h.state.path())
            .unwrap()
            .is_empty()
    );
    let free = plan(&h, &policy);
    assert!(!free.contains("held until"), "{free}");
    assert!(
        free.contains("write 1 to 0000:3b:00.0/sriov_numvfs"),
        "{free}"
    );
}
