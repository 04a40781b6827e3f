//! Without the `fault-injection` feature (every release build) the crash
//! points are inert: the real binary, armed with FASTPATH_CRASH_AT at every
//! point ADD and DEL pass, attaches and restores a VF stand-in normally,
//! and has no `fault-points` command. (As root: real netns and veth.)

#![cfg(not(feature = "fault-injection"))]

mod cni_host;

use std::io::Write;
use std::process::{Command, Stdio};

use cni_host::Host;
use fastpath::fault::{CRASH_AT_ENV, POINTS};
use serde_json::json;

fn run_armed(cmd: &str, env: &fastpath::cni::Env, conf: &serde_json::Value, point: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .env("CNI_COMMAND", cmd)
        .env(CRASH_AT_ENV, point)
        .envs(env.iter())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} armed at {point}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_build_without_the_feature_ignores_crash_points() {
    let mut h = Host::new("fa", 1);
    let pod = h.pod(0);
    let conf = h.conf("1.1.0", 0, json!({"mtu": 1400}));
    for (n, point) in [
        "cni.add.after.record",
        "cni.add.after.move_to_pod",
        "cni.restore.after.move_home",
        "cni.restore.before.record_remove",
    ]
    .iter()
    .enumerate()
    {
        assert!(POINTS.contains(point));
        let env = h.env(&format!("c{n}"), "net1", Some(&pod));
        run_armed("ADD", &env, &conf, point);
        assert!(
            cni_host::ns_link(&pod, "net1").is_some(),
            "{point}: not attached"
        );
        run_armed("DEL", &env, &conf, point);
        h.assert_vf_home(0);
        assert!(h.records().is_empty(), "{point}: records left");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .arg("fault-points")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "fault-points exists without the feature"
    );
}
