//! Serves the stand-in API server on an address, seeded from a directory
//! of JSON/YAML object files and re-reading files that appear or change
//! (polled), for the VM scenario where the agent runs as a process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Parser;
use fake_apiserver::{FakeApiServer, Registry};
use serde_json::Value;

/// A stand-in Kubernetes API server for tests and the VM scenario.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Directory of object files (`*.json`, `*.yaml`, `*.yml`; a file may
    /// hold several YAML documents or a `...List`).
    #[arg(long)]
    dir: PathBuf,
    /// How often to look for new or changed files, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

/// The objects one file holds.
fn objects_in(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    let docs: Vec<Value> = if path.extension().is_some_and(|e| e == "json") {
        vec![serde_json::from_str(&text)?]
    } else {
        serde_norway::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?
    };
    let mut out = Vec::new();
    for d in docs {
        match d.get("items").and_then(Value::as_array) {
            Some(items) => out.extend(items.iter().cloned()),
            None if d.is_null() => {}
            None => out.push(d),
        }
    }
    Ok(out)
}

/// Seeds every file that is new or changed since `seen`.
fn load(server: &FakeApiServer, dir: &Path, seen: &mut BTreeMap<PathBuf, SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("fake-apiserver: cannot read {}", dir.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
        })
        .collect();
    paths.sort();
    for p in paths {
        let Ok(mtime) = std::fs::metadata(&p).and_then(|m| m.modified()) else {
            continue;
        };
        if seen.get(&p) == Some(&mtime) {
            continue;
        }
        seen.insert(p.clone(), mtime);
        match objects_in(&p) {
            Ok(objs) => {
                for o in objs {
                    if let Err(e) = server.seed(o) {
                        eprintln!("fake-apiserver: {}: {e}", p.display());
                    }
                }
            }
            Err(e) => eprintln!("fake-apiserver: {}: {e}", p.display()),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::bind(args.listen, Registry::default())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "fake-apiserver: serving {} from {}",
        server.url(),
        args.dir.display()
    );
    let mut seen = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(args.poll_ms.max(10)));
    loop {
        tokio::select! {
            _ = tick.tick() => load(&server, &args.dir, &mut seen),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.shutdown().await;
    Ok(())
}
