//! Rooted access to `/proc`: the host facts fastpath needs that live there
//! (which interfaces carry a default route, the kernel command line,
//! loaded modules, hugepages). Like sysfs, the root is configurable so
//! tests use files in a temp dir.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Default procfs mount point.
pub const DEFAULT_ROOT: &str = "/proc";

/// A procfs file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ProcfsError {
    /// The file.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// `RTF_REJECT`: an unreachable route (the kernel's `lo` placeholders).
const RTF_REJECT: u32 = 0x0200;

/// A procfs tree rooted at a directory (normally `/proc`).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Procfs {
    /// Uses `root` as the procfs mount point.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root this tree reads under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self, rel: &str) -> Result<String, ProcfsError> {
        let path = self.root.join(rel);
        fs::read_to_string(&path).map_err(|source| ProcfsError { path, source })
    }

    /// Interfaces that carry an IPv4 or IPv6 default route in the reading
    /// process's network namespace. A missing IPv6 table (IPv6 disabled)
    /// counts as no IPv6 default route.
    pub fn default_route_interfaces(&self) -> Result<BTreeSet<String>, ProcfsError> {
        let mut out = parse_ipv4_default_routes(&self.read("net/route")?);
        match self.read("net/ipv6_route") {
            Ok(t) => out.extend(parse_ipv6_default_routes(&t)),
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> Result<String, ProcfsError> {
        Ok(self.read("cmdline")?.trim().to_string())
    }

    /// Names of loaded modules (`/proc/modules`).
    pub fn modules(&self) -> Result<BTreeSet<String>, ProcfsError> {
        Ok(self
            .read("modules")?
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    }

    /// `(HugePages_Total, Hugepagesize in kB)` from `/proc/meminfo`.
    pub fn hugepages(&self) -> Result<(u64, u64), ProcfsError> {
        let text = self.read("meminfo")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("HugePages_Total"), field("Hugepagesize")))
    }
}

/// Interfaces with a 0.0.0.0/0 route in `/proc/net/route` text.
pub fn parse_ipv4_default_routes(text: &str) -> BTreeSet<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let default = *f.get(1)? == "00000000" && *f.get(7)? == "00000000";
            (default && flags & RTF_REJECT == 0).then(|| f[0].to_string())
        })
        .collect()
}

/// Interfaces with a ::/0 route in `/proc/net/ipv6_route` text.
pub fn parse_ipv6_default_routes(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest dest_len src src_len nexthop metric refcnt use flags iface
            let iface = *f.get(9)?;
            let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
            let default = f[0].bytes().all(|b| b == b'0') && f[0].len() == 32 && f[1] == "00";
            (default && flags & RTF_REJECT == 0 && iface != "lo").then(|| iface.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eno1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eno1\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
ens1f0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
";

    const ROUTE6: &str = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eno2
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 ens1f0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn finds_default_routes_in_both_families() {
        assert_eq!(
            parse_ipv4_default_routes(ROUTE),
            BTreeSet::from(["eno1".to_string()])
        );
        assert_eq!(
            parse_ipv6_default_routes(ROUTE6),
            BTreeSet::from(["eno2".to_string()])
        );
    }

    #[test]
    fn reads_from_a_rooted_tree_and_tolerates_missing_ipv6() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("net")).unwrap();
        fs::write(dir.path().join("net/route"), ROUTE).unwrap();
        fs::write(
            dir.path().join("cmdline"),
            "BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("meminfo"),
            "MemTotal: 1 kB\nHugePages_Total:      16\nHugepagesize:       2048 kB\n",
        )
        .unwrap();
        let p = Procfs::new(dir.path());
        assert_eq!(p.default_route_interfaces().unwrap().len(), 1);
        assert!(p.cmdline().unwrap().ends_with("iommu=pt"));
        assert_eq!(p.hugepages().unwrap(), (16, 2048));
        assert!(p.modules().is_err());
    }

    #[test]
    fn garbage_lines_are_ignored() {
        assert!(parse_ipv4_default_routes("x\nfoo bar\n\n").is_empty());
        assert!(parse_ipv6_default_routes("zz 00\n").is_empty());
    }
}
