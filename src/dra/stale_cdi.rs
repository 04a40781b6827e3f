//! A CDI spec left by another claim that names a VF this claim is about
//! to name: CDI registries refuse a fully-qualified device name two
//! specs define (the runtime then resolves neither), so before a
//! claim's spec is written the same names are taken out of this
//! driver's other specs. A gone claim's record is restored before
//! prepare ([`super::plugin`]), which removes its spec; what is left
//! here is a spec without a readable record (a record lost or corrupt),
//! whose VF the scheduler has given to another claim, so nothing of
//! that claim can still be using the name.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::agent::files;

/// What to do with one spec file.
#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    /// It names none of the devices.
    Keep,
    /// It names only those devices: remove the file.
    Remove,
    /// Write it back without them.
    Rewrite(Value),
}

/// The fix for `spec` (a spec of any kind) given the device `names` of
/// kind `kind` another spec is about to define.
pub fn fix(spec: &Value, kind: &str, names: &[String]) -> Fix {
    if spec["kind"].as_str() != Some(kind) {
        return Fix::Keep;
    }
    let Some(devices) = spec["devices"].as_array() else {
        return Fix::Keep;
    };
    let taken = |d: &Value| {
        d["name"]
            .as_str()
            .is_some_and(|n| names.iter().any(|x| x == n))
    };
    if !devices.iter().any(taken) {
        return Fix::Keep;
    }
    let rest: Vec<Value> = devices.iter().filter(|d| !taken(d)).cloned().collect();
    if rest.is_empty() {
        return Fix::Remove;
    }
    let mut spec = spec.clone();
    spec["devices"] = Value::Array(rest);
    Fix::Rewrite(spec)
}

/// Applies [`fix`] to every spec of this driver in `dir` (`<driver>-*.json`)
/// except `own`; returns the files changed. A file that cannot be read
/// or parsed is left (it is not this driver's, or the registry already
/// refuses it).
pub fn clear(
    dir: &Path,
    driver: &str,
    kind: &str,
    own: &Path,
    names: &[String],
) -> Result<Vec<PathBuf>, (PathBuf, String)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{driver}-");
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.as_path() != own)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    let mut changed = Vec::new();
    for p in paths {
        let Some(spec) = fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let err = |e: std::io::Error| (p.clone(), e.to_string());
        match fix(&spec, kind, names) {
            Fix::Keep => continue,
            Fix::Remove => match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
                _ => {}
            },
            Fix::Rewrite(v) => {
                let bytes =
                    serde_json::to_vec_pretty(&v).map_err(|e| (p.clone(), e.to_string()))?;
                files::write_atomic(&p, &bytes, 0o644).map_err(|e| (p.clone(), e.to_string()))?;
            }
        }
        tracing::warn!(spec = %p.display(), devices = ?names, "removed VFs another claim now holds from a leftover CDI spec");
        changed.push(p);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KIND: &str = "sriov.fastpath.dev/vf";

    fn spec(kind: &str, names: &[&str]) -> Value {
        let devices: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "containerEdits": {"env": ["A=1"]}}))
            .collect();
        json!({"cdiVersion": "0.6.0", "kind": kind, "devices": devices})
    }

    #[test]
    fn only_this_kinds_specs_lose_exactly_the_taken_names() {
        let taken = vec!["0000:3b:02.1".to_string()];
        let cases = [
            (spec(KIND, &["0000:3b:02.2"]), Fix::Keep),
            (spec("intel.com/sriov", &["0000:3b:02.1"]), Fix::Keep),
            // The previous naming (<uid>-<request>) never collides.
            (spec(KIND, &["u1-vf", "u1-pci-0000-3b-02-1"]), Fix::Keep),
            (spec(KIND, &["0000:3b:02.1"]), Fix::Remove),
            (
                spec(KIND, &["0000:3b:02.2", "0000:3b:02.1"]),
                Fix::Rewrite(spec(KIND, &["0000:3b:02.2"])),
            ),
            (json!({"kind": KIND}), Fix::Keep),
        ];
        for (s, want) in cases {
            assert_eq!(fix(&s, KIND, &taken), want, "{s}");
        }
    }

    #[test]
    fn clear_rewrites_or_removes_other_specs_of_the_driver_only() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, v: &Value| fs::write(d.path().join(n), v.to_string()).unwrap();
        let own = d.path().join("sriov.fastpath.dev-new.json");
        w(
            "sriov.fastpath.dev-new.json",
            &spec(KIND, &["0000:3b:02.1"]),
        );
        w(
            "sriov.fastpath.dev-old.json",
            &spec(KIND, &["0000:3b:02.1"]),
        );
        w(
            "sriov.fastpath.dev-two.json",
            &spec(KIND, &["0000:3b:02.2", "0000:3b:02.1"]),
        );
        // Another vendor's file with the same kind string is not ours to edit.
        w("other-vendor.json", &spec(KIND, &["0000:3b:02.1"]));
        fs::write(d.path().join("sriov.fastpath.dev-bad.json"), "{").unwrap();
        let names = vec!["0000:3b:02.1".to_string()];
        let changed = clear(d.path(), "sriov.fastpath.dev", KIND, &own, &names).unwrap();
        assert_eq!(
            changed,
            [
                d.path().join("sriov.fastpath.dev-old.json"),
                d.path().join("sriov.fastpath.dev-two.json")
            ]
        );
        assert!(own.exists() && d.path().join("other-vendor.json").exists());
        assert!(!d.path().join("sriov.fastpath.dev-old.json").exists());
        let two: Value = serde_json::from_slice(
            &fs::read(d.path().join("sriov.fastpath.dev-two.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(two, spec(KIND, &["0000:3b:02.2"]));
        assert!(d.path().join("sriov.fastpath.dev-bad.json").exists());
        // Nothing left to take: a second pass changes nothing.
        assert!(
            clear(d.path(), "sriov.fastpath.dev", KIND, &own, &names)
                .unwrap()
                .is_empty()
        );
    }
}
