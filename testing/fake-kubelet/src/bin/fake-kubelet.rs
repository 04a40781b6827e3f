//! `fake-kubelet`: plays kubelet for one scenario and prints JSON results,
//! for use inside the VM scenario and by hand.
//!
//! `fake-kubelet --device-plugin-dir D --resource intel.com/a --resource
//! intel.com/b --allocate 2` waits until every resource registered (on
//! `D/kubelet.sock`, or by discovery in `--plugins-registry-dir`), then for
//! each: options, the first ListAndWatch, GetPreferredAllocation of N out of
//! the healthy devices, and Allocate of that choice.
//!
//! `--dra-driver NAME --dra-prepare NS/NAME/UID --dra-unprepare NS/NAME/UID`
//! plays kubelet for a DRA driver instead (see `fake_kubelet::dra_cli`):
//! discovery in `--plugins-registry-dir`, then one NodePrepareResources
//! and one NodeUnprepareResources call for the claims named.
//!
//! `--wait-devices N` keeps watching ListAndWatch after the first list
//! until an update lists exactly N healthy devices (a live pool change),
//! and reports when that update arrived as `observedUptimeMs` (the
//! kernel's /proc/uptime, the clock a guest shell script can read too).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use fake_kubelet::{FakeKubelet, PluginClient, discover_plugins, healthy_ids, uptime_ms};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "fake-kubelet",
    about = "Play kubelet for a device-plugin scenario; print JSON"
)]
struct Args {
    /// kubelet's device-plugin directory (serves kubelet.sock there).
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    device_plugin_dir: PathBuf,
    /// Use plugin-watcher discovery in this directory instead.
    #[arg(long)]
    plugins_registry_dir: Option<PathBuf>,
    /// A resource to wait for (repeatable), e.g. intel.com/sriov_dpdk.
    #[arg(long = "resource", required_unless_present = "dra_driver")]
    resources: Vec<String>,
    /// Devices to request per resource (0: only list).
    #[arg(long, default_value_t = 1)]
    allocate: i32,
    /// Device IDs the request must include (repeatable).
    #[arg(long)]
    must_include: Vec<String>,
    /// After the first ListAndWatch, wait for an update listing exactly
    /// this many healthy devices (per resource).
    #[arg(long)]
    wait_devices: Option<usize>,
    /// Play kubelet for this DRA driver instead of device plugins (needs
    /// --plugins-registry-dir).
    #[arg(long, requires = "plugins_registry_dir", conflicts_with = "resources")]
    dra_driver: Option<String>,
    /// The DRA API version spoken: v1 or v1beta1.
    #[arg(long, default_value = "v1")]
    dra_version: String,
    /// A claim to prepare, NAMESPACE/NAME/UID (repeatable; one call).
    #[arg(long)]
    dra_prepare: Vec<String>,
    /// A claim to unprepare, NAMESPACE/NAME/UID (repeatable; one call,
    /// after the prepare).
    #[arg(long)]
    dra_unprepare: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-kubelet: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake-kubelet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Finds each resource's socket, by Register or by discovery.
/// The kubelet it serves (Register mode) must live until the scenario ends.
type Endpoints = (Vec<(String, PathBuf)>, Option<FakeKubelet>);

async fn endpoints(args: &Args, timeout: Duration) -> anyhow::Result<Endpoints> {
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(registry) = &args.plugins_registry_dir {
        loop {
            let found = discover_plugins(registry).await.unwrap_or_default();
            let hits: Vec<(String, PathBuf)> = args
                .resources
                .iter()
                .filter_map(|r| {
                    found
                        .iter()
                        .find(|p| &p.info.name == r)
                        .map(|p| (r.clone(), PathBuf::from(&p.info.endpoint)))
                })
                .collect();
            if hits.len() == args.resources.len() {
                return Ok((hits, None));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "only {} of {} resources discovered",
                    hits.len(),
                    args.resources.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    std::fs::create_dir_all(&args.device_plugin_dir)?;
    let mut kubelet = FakeKubelet::start(&args.device_plugin_dir)
        .await
        .context("serving kubelet.sock")?;
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    while out.len() < args.resources.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(r) = kubelet.next_registration(left).await else {
            bail!(
                "only {} of {} resources registered",
                out.len(),
                args.resources.len()
            );
        };
        if args.resources.contains(&r.resource_name)
            && !out.iter().any(|(n, _)| n == &r.resource_name)
        {
            out.push((r.resource_name.clone(), kubelet.endpoint_path(&r)));
        }
    }
    Ok((out, Some(kubelet)))
}

async fn scenario(args: &Args, resource: &str, socket: &Path) -> anyhow::Result<Value> {
    let t = Duration::from_secs(args.timeout);
    let mut c = PluginClient::connect(socket).await?;
    let opts = c.options().await?;
    let mut watch = c.list_and_watch().await?;
    let mut list = watch.next(t).await.context("no ListAndWatch response")?;
    let mut waited = None;
    if let Some(want) = args.wait_devices {
        let first = healthy_ids(&list).len();
        // stderr, flushed per line: the scenario waits for this before it
        // changes the pool.
        eprintln!(
            "fake-kubelet: {resource}: ListAndWatch lists {first} healthy devices; waiting for {want}"
        );
        let mut updates = 0u32;
        while healthy_ids(&list).len() != want {
            list = watch.next(t).await.with_context(|| {
                format!("no ListAndWatch update with {want} healthy devices within {}s ({updates} updates seen)", args.timeout)
            })?;
            updates += 1;
        }
        let observed = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| uptime_ms(&s));
        waited = Some(json!({ "updates": updates, "observedUptimeMs": observed }));
    }
    let devices: Vec<Value> = list
        .devices
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "health": d.health,
                "numa": d.topology.as_ref().map(|t| t.nodes.iter().map(|n| n.id).collect::<Vec<_>>()),
            })
        })
        .collect();
    let mut out = json!({
        "resource": resource,
        "endpoint": socket.display().to_string(),
        "preferredAllocationAvailable": opts.get_preferred_allocation_available,
        "devices": devices,
    });
    if let Some(w) = waited {
        out["waited"] = w;
    }
    if args.allocate > 0 {
        let healthy = healthy_ids(&list);
        let pick = c
            .preferred(&healthy, &args.must_include, args.allocate)
            .await?;
        out["preferred"] = json!(pick);
        match c.allocate(&pick).await {
            Ok(a) => {
                out["allocate"] = json!({
                    "envs": a.envs,
                    "devices": a.devices.iter().map(|d| json!({"hostPath": d.host_path, "containerPath": d.container_path, "permissions": d.permissions})).collect::<Vec<_>>(),
                    "cdiDevices": a.cdi_devices.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
                    "annotations": a.annotations,
                });
            }
            Err(e) => out["allocateError"] = json!(e.message()),
        }
    }
    Ok(out)
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let t = Duration::from_secs(args.timeout);
    if let (Some(driver), Some(registry)) = (&args.dra_driver, &args.plugins_registry_dir) {
        return fake_kubelet::dra_cli::run(fake_kubelet::dra_cli::DraArgs {
            registry,
            driver,
            version: &args.dra_version,
            prepare: &args.dra_prepare,
            unprepare: &args.dra_unprepare,
            timeout: t,
        })
        .await;
    }
    let mut results = Vec::new();
    let (found, _kubelet) = endpoints(args, t).await?;
    for (resource, socket) in found {
        results.push(
            scenario(args, &resource, &socket)
                .await
                .with_context(|| format!("resource {resource}"))?,
        );
    }
    Ok(json!({ "results": results }))
}
