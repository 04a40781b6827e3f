//! Every command line the manifests give the fastpath image parses with the
//! binary's real CLI: a renamed or removed flag would otherwise surface only
//! as a crash-looping DaemonSet on a node.
//!
//! The manifests are searched structurally: any list under `args` (in a
//! container, or in a JSON-patch `value` that replaces one) found in any
//! YAML document under deploy/, including the YAML text of kustomize
//! `patch:` strings.

use std::path::{Path, PathBuf};

use clap::Parser;
use fastpath::cli::Cli;
use serde::Deserialize;
use serde_norway::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// Collects command lines: `args` lists, and JSON-patch values aimed at an
/// `/args` path. Recurses into `patch:` strings, which are YAML themselves.
fn command_lines(v: &Value, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Mapping(m) => {
            let patches_args = m
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with("/args"));
            for (k, val) in m {
                let key = k.as_str().unwrap_or_default();
                if key == "args" || (patches_args && key == "value") {
                    let line = val
                        .as_sequence()
                        .expect("args is a list")
                        .iter()
                        .map(|a| a.as_str().expect("args are strings").to_string())
                        .collect();
                    out.push(line);
                } else if key == "patch"
                    && let Some(text) = val.as_str()
                {
                    command_lines(&serde_norway::from_str(text).unwrap(), out);
                } else {
                    command_lines(val, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| command_lines(x, out)),
        _ => {}
    }
}

#[test]
fn every_manifest_command_line_parses_with_the_real_cli() {
    let mut files = Vec::new();
    yaml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"),
        &mut files,
    );
    let mut lines = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap();
            command_lines(&v, &mut lines);
        }
    }
    let mut subcommands: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.first().map(String::as_str))
        .collect();
    subcommands.sort_unstable();
    subcommands.dedup();
    // The base's agent and CNI installer, and the migration overlay's agent.
    assert_eq!(subcommands, ["agent", "install-cni"], "{lines:?}");
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let argv = std::iter::once("fastpath").chain(line.iter().map(String::as_str));
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("manifest args {line:?} do not parse: {e}");
        }
    }
}

#[test]
fn a_wrong_flag_is_caught() {
    let mut lines = Vec::new();
    let v: Value = serde_norway::from_str("args: [agent, --no-such-flag=1]").unwrap();
    command_lines(&v, &mut lines);
    assert!(
        Cli::try_parse_from(std::iter::once("fastpath".to_string()).chain(lines.remove(0)))
            .is_err()
    );
}
