//! `/metrics` in the Prometheus text exposition format (version 0.0.4),
//! rendered from a [`State`] snapshot. Names and labels are listed in
//! docs/OPERATIONS.md.

use std::fmt::Write;

use super::telemetry::{BUCKETS, Histogram, State};

/// Escapes a label value (`\`, `"`, newline).
fn esc(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cum = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cum += h.counts[i];
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
    }
    cum += h.counts[BUCKETS.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(out, "{name}_sum{} {}", braces(labels), h.sum);
    let _ = writeln!(out, "{name}_count{} {}", braces(labels), h.count);
}

/// The whole exposition.
pub fn render(s: &State) -> String {
    let mut out = String::new();
    head(
        &mut out,
        "fastpath_pool_capacity",
        "gauge",
        "Devices in the pool.",
    );
    for p in &s.pools {
        let _ = writeln!(
            out,
            "fastpath_pool_capacity{{resource=\"{}\"}} {}",
            esc(&p.resource),
            p.devices.len()
        );
    }
    head(
        &mut out,
        "fastpath_pool_allocatable",
        "gauge",
        "Healthy devices kubelet may hand out.",
    );
    for p in &s.pools {
        let n = p.devices.iter().filter(|d| d.healthy).count();
        let _ = writeln!(
            out,
            "fastpath_pool_allocatable{{resource=\"{}\"}} {n}",
            esc(&p.resource)
        );
    }
    head(
        &mut out,
        "fastpath_pool_unhealthy",
        "gauge",
        "Devices advertised as Unhealthy.",
    );
    for p in &s.pools {
        let n = p.devices.iter().filter(|d| !d.healthy).count();
        let _ = writeln!(
            out,
            "fastpath_pool_unhealthy{{resource=\"{}\"}} {n}",
            esc(&p.resource)
        );
    }
    head(
        &mut out,
        "fastpath_pool_registered",
        "gauge",
        "1 when kubelet accepted the pool's registration.",
    );
    for p in &s.pools {
        let _ = writeln!(
            out,
            "fastpath_pool_registered{{resource=\"{}\"}} {}",
            esc(&p.resource),
            u8::from(p.registered)
        );
    }
    head(
        &mut out,
        "fastpath_kubelet_registrations_total",
        "counter",
        "Register calls to kubelet by result.",
    );
    for ((r, res), n) in &s.registrations {
        let _ = writeln!(
            out,
            "fastpath_kubelet_registrations_total{{resource=\"{}\",result=\"{res}\"}} {n}",
            esc(r)
        );
    }
    head(
        &mut out,
        "fastpath_config_reloads_total",
        "counter",
        "Pool config reloads by result.",
    );
    for (res, n) in &s.config_reloads {
        let _ = writeln!(out, "fastpath_config_reloads_total{{result=\"{res}\"}} {n}");
    }
    head(
        &mut out,
        "fastpath_policy_reloads_total",
        "counter",
        "Node policy reloads by result.",
    );
    for (res, n) in &s.policy_reloads {
        let _ = writeln!(out, "fastpath_policy_reloads_total{{result=\"{res}\"}} {n}");
    }
    head(
        &mut out,
        "fastpath_rescan_duration_seconds",
        "histogram",
        "sysfs rescans and how long each took.",
    );
    histogram(&mut out, "fastpath_rescan_duration_seconds", "", &s.rescans);
    head(
        &mut out,
        "fastpath_provision_reconciles_total",
        "counter",
        "Policy reconciles by result.",
    );
    for (res, n) in &s.reconciles {
        let _ = writeln!(
            out,
            "fastpath_provision_reconciles_total{{result=\"{res}\"}} {n}"
        );
    }
    head(
        &mut out,
        "fastpath_provision_reconcile_duration_seconds",
        "histogram",
        "Wall time of policy reconciles.",
    );
    histogram(
        &mut out,
        "fastpath_provision_reconcile_duration_seconds",
        "",
        &s.reconcile_duration,
    );
    head(
        &mut out,
        "fastpath_provision_action_duration_seconds",
        "histogram",
        "Provisioning actions executed, by kind, and their durations.",
    );
    for (kind, h) in &s.provision_actions {
        histogram(
            &mut out,
            "fastpath_provision_action_duration_seconds",
            &format!("action=\"{}\"", esc(kind)),
            h,
        );
    }
    head(
        &mut out,
        "fastpath_provision_held_vfs",
        "gauge",
        "VFs whose policy change waits for a pod to release them.",
    );
    let held = s.last_reconcile.as_ref().map_or(0, |r| r.held.len());
    let _ = writeln!(out, "fastpath_provision_held_vfs {held}");
    head(
        &mut out,
        "fastpath_cni_duration_seconds",
        "histogram",
        "CNI invocations by command and result, and their latency.",
    );
    for ((cmd, res), h) in &s.cni {
        histogram(
            &mut out,
            "fastpath_cni_duration_seconds",
            &format!("command=\"{}\",result=\"{}\"", esc(cmd), esc(res)),
            h,
        );
    }
    head(
        &mut out,
        "fastpath_cni_metrics_malformed_total",
        "counter",
        "CNI metrics files that could not be parsed.",
    );
    let _ = writeln!(
        out,
        "fastpath_cni_metrics_malformed_total {}",
        s.cni_malformed
    );
    head(
        &mut out,
        "fastpath_grpc_authority_refused_total",
        "counter",
        "gRPC calls refused because their :authority is not a host name (kubelet older than 1.26).",
    );
    let _ = writeln!(
        out,
        "fastpath_grpc_authority_refused_total {}",
        s.refused_authorities.count
    );
    startup(&mut out, s);
    dra(&mut out, s);
    out
}

/// The start-up reconcile: counters (one run per process, so they read 0
/// until it ran) and the run's duration.
/// The DRA plugin's gauges and per-claim call latencies; nothing when no
/// DRA driver runs.
fn dra(out: &mut String, s: &State) {
    let Some(d) = &s.dra else {
        return;
    };
    let driver = format!("driver=\"{}\"", esc(&d.driver));
    for (name, help, v) in [
        (
            "fastpath_dra_registered",
            "1 when kubelet accepted the DRA plugin's registration.",
            usize::from(d.registered),
        ),
        (
            "fastpath_dra_devices",
            "DRA devices this node publishes.",
            d.devices,
        ),
        (
            "fastpath_dra_prepared_claims",
            "Claims prepared on this node (records in the state dir).",
            d.prepared.len(),
        ),
        (
            "fastpath_dra_slice_generation",
            "The ResourceSlice pool generation last published (0: none yet).",
            usize::try_from(d.slice_generation.unwrap_or(0)).unwrap_or(0),
        ),
        (
            "fastpath_dra_slice_publish_failing",
            "1 while publishing ResourceSlices fails.",
            usize::from(d.slice_error.is_some()),
        ),
    ] {
        head(out, name, "gauge", help);
        let _ = writeln!(out, "{name}{{{driver}}} {v}");
    }
    head(
        out,
        "fastpath_dra_slice_writes_total",
        "counter",
        "ResourceSlice writes (none while the devices do not change).",
    );
    let _ = writeln!(
        out,
        "fastpath_dra_slice_writes_total{{{driver}}} {}",
        d.slice_writes
    );
    let name = "fastpath_dra_claim_duration_seconds";
    head(
        out,
        name,
        "histogram",
        "NodePrepareResources / NodeUnprepareResources per claim, by operation and result.",
    );
    for ((op, result), h) in &s.dra_calls {
        let labels = format!("{driver},operation=\"{}\",result=\"{result}\"", esc(op));
        histogram(out, name, &labels, h);
    }
}

fn startup(out: &mut String, s: &State) {
    let r = s.startup.clone().unwrap_or_default();
    let ran = u8::from(s.startup.is_some());
    let counters = [
        (
            "fastpath_reconcile_runs_total",
            "Start-up reconciles run.",
            u64::from(ran),
        ),
        (
            "fastpath_reconcile_restored_total",
            "Attachments whose netns was gone, restored at start-up (renamed ones included).",
            r.restored,
        ),
        (
            "fastpath_reconcile_renamed_total",
            "VFs found in the host under another name and renamed back at start-up.",
            r.renamed,
        ),
        (
            "fastpath_reconcile_dropped_total",
            "Records dropped at start-up whose VF was already home.",
            r.dropped,
        ),
        (
            "fastpath_reconcile_failed_total",
            "Start-up reconcile failures (records kept for the next DEL, GC or start).",
            r.failures.len() as u64,
        ),
        (
            "fastpath_reconcile_busy_total",
            "Records skipped at start-up because a CNI call held the VF.",
            r.busy,
        ),
        (
            "fastpath_reconcile_provision_recovered_total",
            "Interrupted provisioning applies finished or rolled back at start-up.",
            u64::from(r.provisioning.is_some()),
        ),
    ];
    for (name, help, v) in counters {
        head(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(
        out,
        "fastpath_reconcile_live",
        "gauge",
        "Live attachments the start-up reconcile left alone.",
    );
    let _ = writeln!(out, "fastpath_reconcile_live {}", r.live);
    head(
        out,
        "fastpath_reconcile_last_duration_seconds",
        "gauge",
        "Wall time of the start-up reconcile.",
    );
    let _ = writeln!(
        out,
        "fastpath_reconcile_last_duration_seconds {}",
        r.duration_us as f64 / 1e6
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agent::telemetry::{PoolDeviceView, PoolView, ReconcileView};
    use crate::provision::Held;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut s = State {
            pools: vec![PoolView {
                resource: r#"a"b\c"#.into(),
                registered: true,
                devices: vec![PoolDeviceView {
                    pci: "0000:3b:02.0".parse().unwrap(),
                    healthy: false,
                }],
            }],
            ..State::default()
        };
        s.rescans.observe(Duration::from_micros(1500));
        s.rescans.observe(Duration::from_secs(60));
        s.last_reconcile = Some(ReconcileView {
            finished_at: 0,
            error: None,
            steps: vec![],
            held: vec![Held {
                vf: "0000:3b:02.0".parse().unwrap(),
                pending: "x".into(),
            }],
        });
        let text = render(&s);
        for line in [
            r#"fastpath_pool_capacity{resource="a\"b\\c"} 1"#,
            r#"fastpath_pool_allocatable{resource="a\"b\\c"} 0"#,
            r#"fastpath_pool_unhealthy{resource="a\"b\\c"} 1"#,
            r#"fastpath_rescan_duration_seconds_bucket{le="0.001"} 0"#,
            r#"fastpath_rescan_duration_seconds_bucket{le="0.0025"} 1"#,
            r#"fastpath_rescan_duration_seconds_bucket{le="30"} 1"#,
            r#"fastpath_rescan_duration_seconds_bucket{le="+Inf"} 2"#,
            "fastpath_rescan_duration_seconds_sum 60.0015",
            "fastpath_rescan_duration_seconds_count 2",
            "fastpath_provision_held_vfs 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn the_start_up_reconcile_reads_zero_until_it_ran_then_its_counts() {
        let mut s = State::default();
        let before = render(&s);
        for line in [
            "fastpath_reconcile_runs_total 0",
            "fastpath_reconcile_restored_total 0",
            "fastpath_reconcile_last_duration_seconds 0",
        ] {
            assert!(before.lines().any(|l| l == line), "{line} in\n{before}");
        }
        s.startup = Some(crate::agent::reconcile::StartupReport {
            duration_us: 1_500,
            restored: 3,
            renamed: 2,
            dropped: 1,
            live: 4,
            busy: 5,
            failures: vec!["0000:3b:02.0: x".into()],
            provisioning: Some("finished interrupted step".into()),
            ..Default::default()
        });
        let after = render(&s);
        for line in [
            "fastpath_reconcile_runs_total 1",
            "fastpath_reconcile_restored_total 3",
            "fastpath_reconcile_renamed_total 2",
            "fastpath_reconcile_dropped_total 1",
            "fastpath_reconcile_failed_total 1",
            "fastpath_reconcile_busy_total 5",
            "fastpath_reconcile_provision_recovered_total 1",
            "fastpath_reconcile_live 4",
            "fastpath_reconcile_last_duration_seconds 0.0015",
        ] {
            assert!(after.lines().any(|l| l == line), "{line} in\n{after}");
        }
    }

    #[test]
    fn refused_authorities_are_a_counter() {
        let mut s = State::default();
        assert!(render(&s).contains("\nfastpath_grpc_authority_refused_total 0\n"));
        s.refused_authorities.count = 7;
        let text = render(&s);
        assert!(
            text.contains("# TYPE fastpath_grpc_authority_refused_total counter\nfastpath_grpc_authority_refused_total 7\n"),
            "{text}"
        );
    }

    #[test]
    fn dra_metrics_appear_only_with_a_dra_driver() {
        let mut s = State::default();
        assert!(!render(&s).contains("fastpath_dra_"));
        s.dra = Some(crate::agent::telemetry::DraView {
            driver: "sriov.fastpath.dev".into(),
            registered: true,
            devices: 8,
            prepared: vec![crate::agent::telemetry::DraClaimView {
                claim: "ns/c".into(),
                uid: "u".into(),
                devices: vec![],
            }],
            ..Default::default()
        });
        let mut h = Histogram::default();
        h.observe(std::time::Duration::from_millis(2));
        s.dra_calls.insert(("prepare".into(), "error"), h);
        let m = render(&s);
        for line in [
            "fastpath_dra_registered{driver=\"sriov.fastpath.dev\"} 1",
            "fastpath_dra_devices{driver=\"sriov.fastpath.dev\"} 8",
            "fastpath_dra_prepared_claims{driver=\"sriov.fastpath.dev\"} 1",
            "fastpath_dra_claim_duration_seconds_count{driver=\"sriov.fastpath.dev\",operation=\"prepare\",result=\"error\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
        }
    }
}
