//! Serves the stand-in API server on an address, seeded from a directory
//! of JSON/YAML object files and re-reading files that appear or change
//! (polled), for the VM scenario where the agent runs as a process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_apiserver::dir::load;
use fake_apiserver::{FakeApiServer, Registry};

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
