//! Objects from a directory of JSON/YAML files, for the binary: loaded at
//! start and again when a file appears or changes. Files removed later
//! leave their objects in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::FakeApiServer;

/// The objects one file holds.
pub fn objects_in(path: &Path) -> anyhow::Result<Vec<Value>> {
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

/// Seeds every file that is new or changed since `seen` (path to
/// modification time); problems go to stderr and the rest still loads.
pub fn load(server: &FakeApiServer, dir: &Path, seen: &mut BTreeMap<PathBuf, SystemTime>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_load_at_start_and_again_when_they_change() {
        let dir = std::env::temp_dir().join(format!("fake-apiserver-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = FakeApiServer::start().await.unwrap();
        std::fs::write(
            dir.join("nodes.yaml"),
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: b\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("list.json"),
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"sriov"}}]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("bad.json"), "{not json").unwrap();
        std::fs::write(dir.join("ignored.txt"), "x").unwrap();
        let mut seen = BTreeMap::new();
        load(&server, &dir, &mut seen);
        assert_eq!(server.list("v1", "Node").len(), 2);
        assert_eq!(server.list("v1", "Namespace").len(), 1);
        assert_eq!(seen.len(), 3);

        // Unchanged files are not re-read; a new one is.
        let rv = server.resource_version();
        load(&server, &dir, &mut seen);
        assert_eq!(server.resource_version(), rv);
        std::fs::write(
            dir.join("node-c.json"),
            r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"c","labels":{"x":"y"}}}"#,
        )
        .unwrap();
        load(&server, &dir, &mut seen);
        let c = server.get("v1", "Node", None, "c").unwrap();
        assert_eq!(c["metadata"]["labels"]["x"], "y");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
