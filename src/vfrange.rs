//! The `pfNames` selector syntax shared by the reference device-plugin
//! config and the node policy: `"<pf>"` or `"<pf>#<i>,<a>-<b>,..."` with
//! 0-based, inclusive VF indexes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Highest VF index accepted (PCIe allows at most 65535 VFs per PF).
pub const MAX_VF_INDEX: u32 = 65534;

/// Why a `pfNames` entry is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pfNames entry {value:?}: {reason}")]
pub struct VfRangeError {
    /// The entry as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A sorted set of VF indexes, kept as merged inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VfIndexSet {
    ranges: Vec<(u32, u32)>,
}

impl VfIndexSet {
    /// Builds a set from inclusive ranges, merging overlaps.
    pub fn from_ranges(mut ranges: Vec<(u32, u32)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Self { ranges: merged }
    }

    /// True if `index` is in the set.
    pub fn contains(&self, index: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= index && index <= b)
    }

    /// True if the two sets share an index.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.ranges
            .iter()
            .any(|&(a, b)| other.ranges.iter().any(|&(c, d)| a <= d && c <= b))
    }

    /// The merged inclusive ranges.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// The highest index, if any.
    pub fn max(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.1)
    }
}

impl fmt::Display for VfIndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// One `pfNames` entry: a PF netdev name and optionally which VFs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfVfSelector {
    /// PF interface name as written.
    pub pf: String,
    /// The VF indexes; `None` means every VF of the PF.
    pub vfs: Option<VfIndexSet>,
}

impl PfVfSelector {
    /// True if this entry names `pf_name` (compared case-insensitively, as
    /// the reference does).
    pub fn names_pf(&self, pf_name: &str) -> bool {
        self.pf.eq_ignore_ascii_case(pf_name)
    }

    /// True if it selects VF `index` of `pf_name`.
    pub fn selects(&self, pf_name: &str, index: u32) -> bool {
        self.names_pf(pf_name) && self.vfs.as_ref().is_none_or(|s| s.contains(index))
    }
}

fn parse_index(s: &str, value: &str) -> Result<u32, VfRangeError> {
    let err = |reason: String| VfRangeError {
        value: value.to_string(),
        reason,
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("VF index {s:?} is not a non-negative integer")));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_VF_INDEX => Ok(n),
        _ => Err(err(format!("VF index {s} exceeds {MAX_VF_INDEX}"))),
    }
}

impl FromStr for PfVfSelector {
    type Err = VfRangeError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| VfRangeError {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let (pf, spec) = match value.split_once('#') {
            Some((pf, spec)) => (pf, Some(spec)),
            None => (value, None),
        };
        if !crate::sysfs::valid_ifname(pf) {
            return Err(err(
                "PF name must be a valid interface name (1-15 characters, no '/', ':' or spaces)",
            ));
        }
        let Some(spec) = spec else {
            return Ok(Self {
                pf: pf.to_string(),
                vfs: None,
            });
        };
        if spec.is_empty() {
            return Err(err("no VF indexes after '#'"));
        }
        let mut ranges = Vec::new();
        for part in spec.split(',') {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (parse_index(a, value)?, parse_index(b, value)?),
                None => {
                    let i = parse_index(part, value)?;
                    (i, i)
                }
            };
            if a > b {
                return Err(VfRangeError {
                    value: value.to_string(),
                    reason: format!("range {a}-{b} is reversed"),
                });
            }
            ranges.push((a, b));
        }
        Ok(Self {
            pf: pf.to_string(),
            vfs: Some(VfIndexSet::from_ranges(ranges)),
        })
    }
}

impl fmt::Display for PfVfSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vfs {
            Some(set) => write!(f, "{}#{set}", self.pf),
            None => f.write_str(&self.pf),
        }
    }
}

impl Serialize for PfVfSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PfVfSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_reference_forms() {
        let s: PfVfSelector = "ens1f0#0-3,8".parse().unwrap();
        assert_eq!(s.pf, "ens1f0");
        assert_eq!(s.vfs.as_ref().unwrap().ranges(), &[(0, 3), (8, 8)]);
        assert!(s.selects("ENS1F0", 3));
        assert!(s.selects("ens1f0", 8));
        assert!(!s.selects("ens1f0", 4));
        assert!(!s.selects("ens1f1", 0));
        let all: PfVfSelector = "ens1f1".parse().unwrap();
        assert!(all.selects("ens1f1", 127));
        assert_eq!(s.to_string(), "ens1f0#0-3,8");
    }

    #[test]
    fn merges_and_detects_overlap() {
        let a = VfIndexSet::from_ranges(vec![(4, 7), (0, 3), (9, 9)]);
        assert_eq!(a.ranges(), &[(0, 7), (9, 9)]);
        assert!(a.overlaps(&VfIndexSet::from_ranges(vec![(7, 8)])));
        assert!(!a.overlaps(&VfIndexSet::from_ranges(vec![(8, 8), (10, 12)])));
        assert_eq!(a.max(), Some(9));
    }

    #[test]
    fn rejects_malformed_entries_with_the_reason() {
        for (bad, why) in [
            ("", "PF name"),
            ("#0-3", "PF name"),
            ("ens1f0#", "no VF indexes"),
            ("ens1f0#3-1", "reversed"),
            ("ens1f0#a", "not a non-negative integer"),
            ("ens1f0#-1", "not a non-negative integer"),
            ("ens1f0#1,,2", "not a non-negative integer"),
            ("ens1f0#0-3#4", "not a non-negative integer"),
            ("ens1f0#99999", "exceeds"),
            ("../etc#0", "PF name"),
        ] {
            let e = bad.parse::<PfVfSelector>().unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert_eq!(e.value, bad);
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<PfVfSelector>();
        }

        #[test]
        fn display_round_trips(ranges in proptest::collection::vec((0u32..200, 0u32..20), 1..6)) {
            let spec: Vec<String> = ranges.iter().map(|(a, l)| format!("{a}-{}", a + l)).collect();
            let s: PfVfSelector = format!("p0#{}", spec.join(",")).parse().unwrap();
            let again: PfVfSelector = s.to_string().parse().unwrap();
            prop_assert_eq!(again, s);
        }
    }
}
