//! The bench's test bed: a pod netns, a far one for the veth peers, the
//! bench's own netns attached as `home`, 17 veth stand-ins for VFs behind
//! a fake sysfs tree, a state dir, and baseline (d)'s binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use serde_json::{Value, json};
use sysfs_fixture::{FakeSysfs, NetSpec, presets};

/// VFs in the concurrency phase (the bed has one more, for the cycles).
pub const CONCURRENT: usize = 16;

/// Runs a setup or baseline command; it must succeed.
pub fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{program} {}", args.join(" "));
}

fn ip(args: &[&str]) {
    run("ip", args);
}

pub struct Bed {
    pub pod: String,
    far: String,
    /// The bench's own netns under /run/netns, so that baseline (d), run
    /// in the pod, can open it as the destination of the move back.
    home: String,
    pub veths: Vec<String>,
    sysfs: tempfile::TempDir,
    pub state: tempfile::TempDir,
    /// Holds baseline (d)'s binary.
    tools: tempfile::TempDir,
    pub mover: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for v in &self.veths {
            let _ = Command::new("ip").args(["link", "del", v]).output();
        }
        for n in [&self.pod, &self.far, &self.home] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Bed {
    pub fn new() -> Self {
        let tag = format!("fb{}", std::process::id());
        let pod = format!("{tag}-pod");
        let far = format!("{tag}-far");
        let home = format!("{tag}-home");
        let mut bed = Bed {
            pod: pod.clone(),
            far: far.clone(),
            home: home.clone(),
            veths: Vec::new(),
            sysfs: tempfile::tempdir().unwrap(),
            // FASTPATH_BENCH_STATE_BASE puts the state dir elsewhere (e.g.
            // /run, a tmpfs) to show what the record's fsync costs.
            state: match std::env::var("FASTPATH_BENCH_STATE_BASE") {
                Ok(base) => tempfile::tempdir_in(base).unwrap(),
                Err(_) => tempfile::tempdir_in("/var/tmp").unwrap(),
            },
            // Under target/, not /tmp, which may be mounted noexec.
            tools: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
            mover: PathBuf::new(),
        };
        bed.mover = bed.tools.path().join("mover");
        run(
            "cc",
            &[
                "-O2",
                "-static",
                "-o",
                bed.mover.to_str().unwrap(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/benches/cni/mover.c"),
            ],
        );
        ip(&["netns", "add", &pod]);
        ip(&["netns", "add", &far]);
        ip(&["netns", "attach", &home, &std::process::id().to_string()]);
        let mut pf = presets::e810("0000:3b:00.0", "benchpf", "0000:3b:01.0", CONCURRENT + 1);
        for (i, vf) in pf.vfs.iter_mut().enumerate() {
            let name = format!("{tag}v{i}");
            let peer = format!("{tag}p{i}");
            ip(&[
                "link", "add", &name, "type", "veth", "peer", "name", &peer, "netns", &far,
            ]);
            vf.netdev = Some(NetSpec::ether(&name, "02:00:00:00:00:01"));
            bed.veths.push(name);
        }
        FakeSysfs::new(bed.sysfs.path())
            .unwrap()
            .add_pf(&pf)
            .unwrap();
        bed
    }

    /// Moves net1..net16 from the pod back to the host under their names.
    pub fn move_all_home(&self, host: &NetNs, pod: &NetNs) {
        pod.run(|| {
            let mut nl = Netlink::open().unwrap();
            for i in 1..=CONCURRENT {
                let l = nl.require_link(&format!("net{i}")).unwrap();
                nl.move_to_netns(&l, host.raw_fd(), &self.veths[i]).unwrap();
            }
        })
        .unwrap();
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.pod)
    }

    /// The bench's own netns, as the pod side names it.
    pub fn home_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.home)
    }

    pub fn exec(&self, bin: &str, cmd: &str, container: &str, ifname: &str, conf: &Value) {
        let mut child = Command::new(bin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", ifname)
            .env("CNI_NETNS", self.netns_path())
            .env("CNI_PATH", "/usr/lib/cni")
            .env("FASTPATH_STATE_DIR", self.state.path())
            .env("FASTPATH_SYSFS_ROOT", self.sysfs.path())
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
            "{bin} {cmd}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn fastpath_conf(&self, vf: usize) -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "fastpath",
               "deviceID": presets::nth_addr("0000:3b:01.0", vf), "logLevel": "error"})
    }
}
