//! A stand-in for the kernel's SR-IOV side on a fake tree: a thread that
//! watches one PF's `sriov_numvfs` and, once a write has settled, removes
//! and creates VF directories, links, drivers and netdevs as the kernel
//! would. Enough for provisioning to see its writes take effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sysfs_fixture::{FakeSysfs, PfSpec};

pub struct FakeKernel {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKernel {
    /// `spec(n)` is the PF with `n` VFs.
    pub fn start(fs: FakeSysfs, pf: &str, spec: fn(usize) -> PfSpec) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let numvfs = fs
            .root()
            .join("bus/pci/devices")
            .join(pf)
            .join("sriov_numvfs");
        let pf = pf.to_string();
        let thread = std::thread::spawn(move || {
            let read = || {
                std::fs::read_to_string(&numvfs)
                    .ok()
                    .and_then(|t| t.trim().parse::<usize>().ok())
            };
            let mut cur = read().unwrap_or(0);
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                // provisioning writes 0 then N back to back: act on what
                // stays.
                let Some(n) = read() else { continue };
                std::thread::sleep(Duration::from_millis(20));
                if read() != Some(n) || n == cur {
                    continue;
                }
                fs.remove_vfs(&spec(cur)).unwrap();
                // remove_vfs wrote 0: put the count back before VFs appear.
                fs.write_attr(&pf, "sriov_numvfs", &format!("{n}\n"))
                    .unwrap();
                let new = spec(n);
                for (i, vf) in new.vfs.iter().enumerate() {
                    fs.add_vf(&new, i, vf).unwrap();
                }
                cur = n;
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
