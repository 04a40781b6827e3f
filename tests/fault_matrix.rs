//! The host fault matrix (issue 7, "crash anywhere, recover everything"):
//! the real binary, built with `--features fault-injection`, is killed
//! with SIGKILL at every crash point a veth stand-in can reach, then the
//! recovery path runs (the runtime's next DEL, or GC with no valid
//! attachments) and the VF must be fully restored: back in the host netns
//! under its name with its MAC, MTU and admin state, no record, no lock
//! held, no IPAM lease; and a fresh ADD+DEL on it works. PF-side points
//! need a real PF: hack/vm/guest/steps/145-fault-matrix.sh covers them.
//!
//! `cargo test --features fault-injection --test fault_matrix` (as root).

#![cfg(feature = "fault-injection")]

mod cni_host;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use cni_host::{Host, LinkFacts, host_link, ip_out};
use fastpath::cni::Env;
use fastpath::fault::{CRASH_AT_ENV, POINTS};
use serde_json::{Value, json};

/// How a run of the binary ended.
#[derive(Debug)]
enum Outcome {
    Exited(i32, String),
    Killed(i32),
}

/// Runs the real binary as the CNI plugin, optionally armed to crash.
fn run_bin(cmd: &str, env: &Env, conf: &Value, crash_at: Option<&str>) -> Outcome {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fastpath"));
    c.env_remove(CRASH_AT_ENV)
        .env("CNI_COMMAND", cmd)
        .envs(env.iter())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = crash_at {
        c.env(CRASH_AT_ENV, p);
    }
    let mut child = c.spawn().expect("spawning fastpath");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match (out.status.code(), out.status.signal()) {
        (Some(code), _) => Outcome::Exited(
            code,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        (None, Some(sig)) => Outcome::Killed(sig),
        _ => unreachable!("a process ends by exit or signal"),
    }
}

fn expect_killed(point: &str, o: Outcome) {
    match o {
        Outcome::Killed(sig) => assert_eq!(sig, libc::SIGKILL, "{point}: died of signal {sig}"),
        Outcome::Exited(code, out) => {
            panic!("{point}: expected SIGKILL, exited {code}: {out}")
        }
    }
}

fn expect_ok(what: &str, o: Outcome) {
    match o {
        Outcome::Exited(0, _) => {}
        other => panic!("{what}: {other:?}"),
    }
}

/// The matrix's one VF stand-in, pod and config.
struct Rig {
    h: Host,
    pod: String,
    before: LinkFacts,
    conf: Value,
    runs: usize,
}

impl Rig {
    fn new() -> Self {
        let mut h = Host::new("fm", 1);
        let pod = h.pod(0);
        let before = host_link(&h.vfs[0].ifname).expect("VF stand-in in the host");
        // Every ADD step a veth can take: move, MTU, up, IPAM, addresses.
        // (`mac` also pins the admin MAC through the PF, which needs a
        // real PF: the VM covers it.)
        let conf = h.conf("1.1.0", 0, json!({"mtu": 1400}));
        Rig {
            h,
            pod,
            before,
            conf,
            runs: 0,
        }
    }

    fn env(&self, container: &str) -> Env {
        self.h.env(container, "net1", Some(&self.pod))
    }

    fn gc_conf(&self) -> Value {
        let mut gc = self.conf.clone();
        if let Some(o) = gc.as_object_mut() {
            o.remove("deviceID");
        }
        gc["cni.dev/valid-attachments"] = json!([]);
        gc
    }

    fn run(&mut self, cmd: &str, container: &str, crash_at: Option<&str>) -> Outcome {
        self.runs += 1;
        let (env, conf) = if cmd == "GC" {
            (self.h.env("", "", None), self.gc_conf())
        } else {
            (self.env(container), self.conf.clone())
        };
        run_bin(cmd, &env, &conf, crash_at)
    }

    /// Fully restored, nothing left over: the VF as it was before any ADD,
    /// the pod empty, no record, no held lock, no lease.
    fn assert_restored(&self, case: &str) {
        let vf = &self.h.vfs[0];
        let now = host_link(&vf.ifname)
            .unwrap_or_else(|| panic!("{case}: {} is not back in the host", vf.ifname));
        assert_eq!(now, self.before, "{case}: VF state differs from before ADD");
        let pod_links = ip_out(&["-n", &self.pod, "-o", "link", "show"]);
        assert_eq!(
            pod_links.lines().count(),
            1,
            "{case}: pod holds more than lo: {pod_links}"
        );
        assert!(
            self.h.records().is_empty(),
            "{case}: records left {:?}",
            self.h.records()
        );
        assert!(
            self.h.leases().is_empty(),
            "{case}: leases left {:?}",
            self.h.leases()
        );
        let lock = fastpath::cni::lock::lock_path(self.h.state.path(), vf.pci.parse().unwrap());
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&lock) {
            assert!(
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok(),
                "{case}: {} is still locked",
                lock.display()
            );
        }
    }

    /// A fresh ADD and DEL on the recovered VF.
    fn assert_usable(&mut self, case: &str) {
        let c = format!("fresh-{}", self.runs);
        expect_ok(&format!("{case}: fresh ADD"), self.run("ADD", &c, None));
        assert!(
            cni_host::ns_link(&self.pod, "net1").is_some(),
            "{case}: fresh ADD left no net1 in the pod"
        );
        expect_ok(&format!("{case}: fresh DEL"), self.run("DEL", &c, None));
        self.assert_restored(&format!("{case}: after a fresh ADD+DEL"));
    }
}

/// Points that need a real PF, covered in the VM: PF-side VF settings,
/// and the pod MAC (a `mac` config always sets the PF-side admin MAC too).
const NEED_A_PF: &[&str] = &["cni.add.after.set_mac", "cni.restore.after.restore_mac"];

/// The points a veth stand-in reaches: all CNI points but those needing a
/// real PF, and no provisioning (sysfs of a real PF: the VM's).
fn host_points() -> BTreeSet<&'static str> {
    POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("cni.") && !p.contains(".pf_side.") && !NEED_A_PF.contains(p))
        .collect()
}

#[test]
fn every_crash_point_on_the_host_is_recovered() {
    let started = std::time::Instant::now();
    let mut r = Rig::new();
    let mut covered = BTreeSet::new();
    let mut recoveries = 0;
    let mut case_no = 0;
    let add_points: Vec<&str> = host_points()
        .into_iter()
        .filter(|p| p.starts_with("cni.add."))
        .collect();
    let restore_points: Vec<&str> = host_points()
        .into_iter()
        .filter(|p| p.starts_with("cni.restore."))
        .collect();

    // ADD dies after a step; the runtime's DEL (or GC) cleans up.
    for point in &add_points {
        for recovery in ["DEL", "GC"] {
            case_no += 1;
            let c = format!("a{case_no}");
            let case = format!("ADD crash at {point}, then {recovery}");
            expect_killed(&case, r.run("ADD", &c, Some(point)));
            assert!(
                !r.h.records().is_empty(),
                "{case}: no record after the crash"
            );
            expect_ok(&case, r.run(recovery, &c, None));
            r.assert_restored(&case);
            r.assert_usable(&case);
            covered.insert(*point);
            recoveries += 1;
        }
    }

    // DEL (or GC) dies after a restore step; the next one finishes it.
    for point in &restore_points {
        for verb in ["DEL", "GC"] {
            case_no += 1;
            let c = format!("d{case_no}");
            let case = format!("{verb} crash at {point}, then {verb} again");
            expect_ok(&format!("{case}: ADD"), r.run("ADD", &c, None));
            expect_killed(&case, r.run(verb, &c, Some(point)));
            expect_ok(&case, r.run(verb, &c, None));
            r.assert_restored(&case);
            r.assert_usable(&case);
            covered.insert(*point);
            recoveries += 1;
        }
    }

    // GC dies after restoring a VF (before forwarding GC to IPAM).
    let point = "cni.gc.after.vf";
    case_no += 1;
    let c = format!("g{case_no}");
    let case = format!("GC crash at {point}, then DEL");
    expect_ok(&format!("{case}: ADD"), r.run("ADD", &c, None));
    expect_killed(&case, r.run("GC", &c, Some(point)));
    expect_ok(&case, r.run("DEL", &c, None));
    r.assert_restored(&case);
    r.assert_usable(&case);
    covered.insert(point);
    recoveries += 1;

    let missing: Vec<_> = host_points().difference(&covered).copied().collect();
    assert!(missing.is_empty(), "host points not covered: {missing:?}");
    println!(
        "fault matrix (host): {} of {} crash points covered ({} apply on the host), \
         {recoveries} crashes injected, {recoveries} recoveries succeeded, \
         {} binary runs in {:.1} s",
        covered.len(),
        POINTS.len(),
        host_points().len(),
        r.runs,
        started.elapsed().as_secs_f64()
    );
}
