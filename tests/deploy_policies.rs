//! Every node policy shipped in a deploy/ ConfigMap parses: the agent
//! stops on an invalid policy at start, so a broken example would keep the
//! DaemonSet from starting.

use std::path::{Path, PathBuf};

use fastpath::provision::Policy;

fn configmaps(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            configmaps(&p, out);
        } else if p.file_name().is_some_and(|n| n == "configmap.yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_configmap_policy_parses() {
    let mut files = Vec::new();
    configmaps(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &mut files,
    );
    let mut seen = 0;
    for f in &files {
        let doc: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let Some(text) = doc["data"]["policy.yaml"].as_str() else {
            continue;
        };
        if let Err(e) = Policy::parse(text, f) {
            panic!("{}: {e}", f.display());
        }
        seen += 1;
    }
    assert!(seen >= 3, "policies found in {files:?}");
}
