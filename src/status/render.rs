//! Text and JSON output of `fastpath status`.

use std::io::{self, Write};

use super::NodeStatus;

/// `2026-11-28T13:05:09Z` for unix seconds (UTC; no timezone database).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The JSON form (`--json`).
pub fn json(s: &NodeStatus, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, s)?;
    writeln!(out)
}

/// The human form.
pub fn text(s: &NodeStatus, out: &mut dyn Write) -> io::Result<()> {
    if s.pools.is_empty() {
        writeln!(out, "no pools configured")?;
    } else {
        let w = s
            .pools
            .iter()
            .map(|p| p.resource.len())
            .max()
            .unwrap_or(0)
            .max(4);
        writeln!(
            out,
            "{:<w$}  REGISTERED  CAPACITY  HEALTHY  ALLOCATED",
            "POOL"
        )?;
        for p in &s.pools {
            let allocated = p.allocated.map_or("?".to_string(), |n| n.to_string());
            writeln!(
                out,
                "{:<w$}  {:<10}  {:>8}  {:>7}  {:>9}",
                p.resource,
                if p.registered { "yes" } else { "no" },
                p.capacity,
                p.healthy,
                allocated
            )?;
        }
    }
    match &s.last_reconcile {
        None => writeln!(out, "\npolicy: none")?,
        Some(r) => {
            match &r.error {
                None => writeln!(
                    out,
                    "\npolicy: last reconcile {} ok, {} steps applied",
                    utc(r.finished_at),
                    r.steps.len()
                )?,
                Some(e) => writeln!(
                    out,
                    "\npolicy: last reconcile {} FAILED: {e}",
                    utc(r.finished_at)
                )?,
            }
            if !r.held.is_empty() {
                writeln!(out, "held until pods release their VFs:")?;
                for h in &r.held {
                    writeln!(out, "   - {}: {}", h.vf, h.pending)?;
                }
            }
        }
    }
    if let Some(r) = &s.startup_reconcile {
        writeln!(
            out,
            "\nstart-up reconcile {}: {} restored ({} renamed back), {} dropped, {} live, {} busy, {} failed",
            utc(r.finished_at),
            r.restored,
            r.renamed,
            r.dropped,
            r.live,
            r.busy,
            r.failures.len()
        )?;
        for f in &r.failures {
            writeln!(out, "   - {f}")?;
        }
        if let Some(p) = &r.provisioning {
            writeln!(out, "   provisioning: {p}")?;
        }
    }
    let r = &s.refused_authorities;
    if r.count > 0 {
        writeln!(
            out,
            "\ngRPC calls refused for their :authority: {} (last {:?}); kubelet {} or later is needed",
            r.count,
            r.last_authority.as_deref().unwrap_or(""),
            crate::grpc_authority::MIN_KUBELET_VERSION
        )?;
    }
    if let Some(d) = &s.dra {
        dra(d, out)?;
    }
    match &s.attachments {
        None => writeln!(
            out,
            "\nattached VFs: unknown (this build does not read the CNI records)"
        )?,
        Some(a) if a.is_empty() => writeln!(out, "\nattached VFs: none")?,
        Some(a) => {
            writeln!(
                out,
                "\nATTACHED VF   POD                           IFNAME      VLAN  SINCE"
            )?;
            for x in a {
                let pod = format!("{}/{}", x.pod_namespace, x.pod_name);
                let vlan = x.vlan.map_or("-".to_string(), |v| v.to_string());
                writeln!(
                    out,
                    "{}  {:<28}  {:<10}  {:>4}  {}",
                    x.pci,
                    pod,
                    x.ifname,
                    vlan,
                    utc(x.since)
                )?;
            }
        }
    }
    Ok(())
}

/// The DRA plugin's part of the human form.
fn dra(d: &crate::agent::telemetry::DraView, out: &mut dyn Write) -> io::Result<()> {
    let reg = match (&d.registered, &d.registration_error) {
        (true, _) => "registered".to_string(),
        (false, Some(e)) => format!("NOT registered: {e}"),
        (false, None) => "not registered yet".to_string(),
    };
    let slices = match (&d.slice_error, d.slice_generation) {
        (Some(e), _) => format!("slices NOT published: {e}"),
        (None, Some(g)) => format!("slices at generation {g}"),
        (None, None) => "slices not published yet".into(),
    };
    writeln!(
        out,
        "\nDRA driver {}: {reg}, {} devices, {slices}, {} claims prepared",
        d.driver,
        d.devices,
        d.prepared.len()
    )?;
    for c in &d.prepared {
        let devs: Vec<String> = c.devices.iter().map(|p| p.to_string()).collect();
        writeln!(out, "   - {} ({}): {}", c.claim, c.uid, devs.join(", "))?;
    }
    if let Some(e) = &d.last_error {
        writeln!(out, "   last error: {e}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::AgentStatus;
    use crate::agent::telemetry::{PoolDeviceView, PoolView, ReconcileView};
    use crate::provision::Held;
    use crate::status::{Attachment, build};

    fn pci(s: &str) -> crate::pci::PciAddress {
        s.parse().unwrap()
    }

    fn agent() -> AgentStatus {
        let dev = |a: &str, healthy| PoolDeviceView {
            pci: pci(a),
            healthy,
        };
        AgentStatus {
            pools: vec![
                PoolView {
                    resource: "intel.com/sriov_netdevice".into(),
                    registered: true,
                    devices: vec![
                        dev("0000:3b:02.0", true),
                        dev("0000:3b:02.1", true),
                        dev("0000:3b:02.2", false),
                    ],
                },
                PoolView {
                    resource: "intel.com/sriov_dpdk".into(),
                    registered: false,
                    devices: vec![dev("0000:3b:02.3", true)],
                },
            ],
            last_reconcile: Some(ReconcileView {
                finished_at: 1_795_871_109,
                error: None,
                steps: vec!["PF 0000:3b:00.0 numVfs 0 -> 4".into()],
                held: vec![Held {
                    vf: pci("0000:3b:02.1"),
                    pending: "VF 0000:3b:02.1 to vfio-pci".into(),
                }],
            }),
            startup_reconcile: None,
            refused_authorities: Default::default(),
            dra: None,
        }
    }

    fn attached() -> Vec<Attachment> {
        vec![Attachment {
            pci: pci("0000:3b:02.1"),
            resource: Some("intel.com/sriov_netdevice".into()),
            pod_namespace: "cnf".into(),
            pod_name: "upf-0".into(),
            ifname: "net1".into(),
            vlan: Some(100),
            since: 1_795_870_800,
        }]
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_871_109), "2026-11-28T13:05:09Z");
    }

    #[test]
    fn text_with_attachments_and_held_vfs() {
        let mut out = Vec::new();
        text(&build(&agent(), Some(attached())), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POOL                       REGISTERED  CAPACITY  HEALTHY  ALLOCATED
intel.com/sriov_netdevice  yes                3        2          1
intel.com/sriov_dpdk       no                 1        1          0

policy: last reconcile 2026-11-28T13:05:09Z ok, 1 steps applied
held until pods release their VFs:
   - 0000:3b:02.1: VF 0000:3b:02.1 to vfio-pci

ATTACHED VF   POD                           IFNAME      VLAN  SINCE
0000:3b:02.1  cnf/upf-0                     net1         100  2026-11-28T13:00:00Z
"
        );
    }

    #[test]
    fn unknown_attachments_are_not_shown_as_none() {
        let mut out = Vec::new();
        text(&build(&agent(), None), &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains("intel.com/sriov_dpdk       no                 1        1          ?\n"),
            "{t}"
        );
        assert!(
            t.ends_with("attached VFs: unknown (this build does not read the CNI records)\n"),
            "{t}"
        );
    }

    #[test]
    fn json_has_counts_held_and_attachments() {
        let mut out = Vec::new();
        json(&build(&agent(), Some(attached())), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pools"][0]["capacity"], 3);
        assert_eq!(v["pools"][0]["healthy"], 2);
        assert_eq!(v["pools"][0]["allocated"], 1);
        assert_eq!(v["lastReconcile"]["held"][0]["vf"], "0000:3b:02.1");
        assert_eq!(v["attachments"][0]["podName"], "upf-0");
        assert_eq!(v["attachments"][0]["vlan"], 100);
    }
}

#[cfg(test)]
mod startup_tests {
    use super::*;
    use crate::agent::reconcile::StartupReport;
    use crate::agent::status::AgentStatus;
    use crate::status::build;

    #[test]
    fn the_start_up_reconcile_is_shown_in_text_and_json() {
        let agent = AgentStatus {
            pools: vec![],
            last_reconcile: None,
            startup_reconcile: Some(StartupReport {
                finished_at: 0,
                restored: 2,
                renamed: 1,
                live: 3,
                failures: vec!["0000:3b:02.1: restoring: busy".into()],
                ..StartupReport::default()
            }),
            refused_authorities: Default::default(),
            dra: None,
        };
        let mut out = Vec::new();
        text(&build(&agent, Some(vec![])), &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains(
                "start-up reconcile 1970-01-01T00:00:00Z: 2 restored (1 renamed back), 0 dropped, 3 live, 0 busy, 1 failed\n   - 0000:3b:02.1: restoring: busy\n"
            ),
            "{t}"
        );
        let mut out = Vec::new();
        json(&build(&agent, None), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["startupReconcile"]["renamed"], 1);
        assert_eq!(v["startupReconcile"]["live"], 3);
    }

    #[test]
    fn the_dra_plugin_is_shown_in_text_and_json() {
        use crate::agent::telemetry::{DraClaimView, DraView};
        let mut agent = AgentStatus {
            pools: vec![],
            last_reconcile: None,
            startup_reconcile: None,
            refused_authorities: Default::default(),
            dra: Some(DraView {
                driver: "sriov.fastpath.dev".into(),
                registered: true,
                registration_error: None,
                devices: 4,
                prepared: vec![DraClaimView {
                    claim: "cnf/upf-net".into(),
                    uid: "u-1".into(),
                    devices: vec!["0000:3b:02.1".parse().unwrap()],
                }],
                last_error: Some("cnf/x: vlan: 5000 is not a VLAN id 0-4094".into()),
                slice_generation: Some(3),
                slice_writes: 2,
                slice_error: None,
            }),
        };
        let mut out = Vec::new();
        text(&build(&agent, Some(vec![])), &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains(
                "DRA driver sriov.fastpath.dev: registered, 4 devices, slices at generation 3, 1 claims prepared\n   - cnf/upf-net (u-1): 0000:3b:02.1\n   last error: cnf/x: vlan: 5000 is not a VLAN id 0-4094\n"
            ),
            "{t}"
        );
        let mut out = Vec::new();
        json(&build(&agent, None), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["dra"]["prepared"][0]["devices"][0], "0000:3b:02.1");
        agent.dra = None;
        let mut out = Vec::new();
        json(&build(&agent, None), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("dra").is_none());
    }
}

#[cfg(test)]
mod authority_tests {
    use super::*;
    use crate::agent::status::AgentStatus;
    use crate::grpc_authority::RefusedAuthorityView;
    use crate::status::build;

    fn shown(count: u64) -> (String, serde_json::Value) {
        let agent = AgentStatus {
            pools: vec![],
            last_reconcile: None,
            startup_reconcile: None,
            refused_authorities: RefusedAuthorityView {
                count,
                last_authority: (count > 0)
                    .then(|| "/var/lib/kubelet/device-plugins/a.sock".into()),
            },
            dra: None,
        };
        let mut out = Vec::new();
        text(&build(&agent, Some(vec![])), &mut out).unwrap();
        let mut js = Vec::new();
        json(&build(&agent, None), &mut js).unwrap();
        (
            String::from_utf8(out).unwrap(),
            serde_json::from_slice(&js).unwrap(),
        )
    }

    #[test]
    fn refused_authorities_are_shown_only_when_there_were_some() {
        let (t, v) = shown(4);
        assert!(
            t.contains(
                "\ngRPC calls refused for their :authority: 4 (last \"/var/lib/kubelet/device-plugins/a.sock\"); kubelet 1.26 or later is needed\n"
            ),
            "{t}"
        );
        assert_eq!(v["refusedAuthorities"]["count"], 4);
        let (t, v) = shown(0);
        assert!(!t.contains(":authority"), "{t}");
        assert_eq!(v["refusedAuthorities"]["count"], 0);
        assert!(v["refusedAuthorities"]["lastAuthority"].is_null());
    }

    #[test]
    fn an_older_agents_status_without_the_field_still_parses() {
        let old = r#"{"pools":[],"lastReconcile":null}"#;
        let a: AgentStatus = serde_json::from_str(old).unwrap();
        assert_eq!(a.refused_authorities, RefusedAuthorityView::default());
    }
}
