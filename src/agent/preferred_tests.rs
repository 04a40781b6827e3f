use super::*;
use crate::agent::test_pool::{dev, pool};
use crate::pools::AllocationPolicy::{Pack, Spread};

const PF_A: &str = "0000:3b:00.0";
const PF_B: &str = "0000:3b:00.1";
const PF_C: &str = "0000:af:00.0";

/// Two PFs on NUMA 0 (4 VFs each) and one on NUMA 1 (4 VFs).
fn devices() -> Vec<crate::pools::PoolDevice> {
    let mut v = Vec::new();
    for i in 0..4 {
        v.push(dev(&format!("0000:3b:01.{i}"), PF_A, Some(0), "iavf", None));
        v.push(dev(&format!("0000:3b:11.{i}"), PF_B, Some(0), "iavf", None));
        v.push(dev(&format!("0000:af:01.{i}"), PF_C, Some(1), "iavf", None));
    }
    v
}

fn all(p: &crate::pools::Pool) -> Vec<String> {
    p.devices.iter().map(|d| d.view.pci.to_string()).collect()
}

fn pfs_of(p: &crate::pools::Pool, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| p.device(id).unwrap().view.pf.unwrap().to_string())
        .collect()
}

#[test]
fn spread_alternates_pfs_on_one_numa_node() {
    let p = pool("a", Spread, devices());
    let got = preferred(&p, &all(&p), &[], 4);
    assert_eq!(
        got,
        [
            "0000:3b:01.0",
            "0000:3b:11.0",
            "0000:3b:01.1",
            "0000:3b:11.1"
        ]
    );
}

#[test]
fn pack_fills_one_pf_first() {
    let p = pool("a", Pack, devices());
    let got = preferred(&p, &all(&p), &[], 3);
    assert_eq!(pfs_of(&p, &got), [PF_A, PF_A, PF_A]);
}

#[test]
fn must_include_comes_first_and_pulls_the_numa_node() {
    let p = pool("a", Spread, devices());
    let must = vec!["0000:af:01.2".to_string()];
    let got = preferred(&p, &all(&p), &must, 3);
    assert_eq!(got[0], "0000:af:01.2");
    assert!(got.iter().all(|id| id.starts_with("0000:af")), "{got:?}");
}

#[test]
fn request_larger_than_a_node_spills_over() {
    let p = pool("a", Spread, devices());
    let got = preferred(&p, &all(&p), &[], 10);
    assert_eq!(got.len(), 10);
    // The 8 NUMA-0 devices come before any NUMA-1 device.
    assert!(
        got[..8].iter().all(|id| id.starts_with("0000:3b")),
        "{got:?}"
    );
}

#[test]
fn a_node_that_fits_wins_over_a_bigger_one() {
    let mut v = devices();
    // Only PF_C's node has 4 left once NUMA 0 is mostly taken.
    v.retain(|d| d.view.pf.unwrap().to_string() != PF_B);
    v.retain(|d| {
        !d.view.pci.to_string().starts_with("0000:3b:01.")
            || d.view.pci.to_string() == "0000:3b:01.0"
    });
    let p = pool("a", Spread, v);
    let got = preferred(&p, &all(&p), &[], 3);
    assert!(got.iter().all(|id| id.starts_with("0000:af")), "{got:?}");
}

#[test]
fn only_available_and_healthy_devices_are_chosen() {
    let mut v = devices();
    v[0].unhealthy = Some("down".into());
    let p = pool("a", Spread, v);
    let avail: Vec<String> = vec![
        "0000:3b:01.0".into(),
        "0000:3b:01.1".into(),
        "0000:3b:09.7".into(),
    ];
    let got = preferred(&p, &avail, &[], 2);
    assert_eq!(got, ["0000:3b:01.1"]);
}
