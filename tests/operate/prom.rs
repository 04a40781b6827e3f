//! A strict-enough parser of the Prometheus text exposition format for
//! asserting on `/metrics`: every sample must belong to a family declared
//! by `# TYPE`, label values are unescaped, values parse as floats.

use std::collections::{BTreeMap, BTreeSet};

/// Samples by `name{k="v",...}` with labels sorted.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: BTreeMap<String, f64>,
    pub types: BTreeMap<String, String>,
}

fn family(name: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).map(String::as_str) == Some("histogram")
        {
            return Some(base.to_string());
        }
    }
    None
}

fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return Err(format!("label {key} without a quoted value in {s:?}"));
        }
        let mut val = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(c) => val.push(c),
                    None => return Err(format!("dangling escape in {s:?}")),
                },
                Some('"') => break,
                Some(c) => val.push(c),
                None => return Err(format!("unterminated value in {s:?}")),
            }
        }
        out.push((key.trim().to_string(), val));
        match chars.next() {
            Some(',') => {}
            None => break,
            Some(c) => return Err(format!("unexpected {c:?} in {s:?}")),
        }
    }
    out.sort();
    Ok(out)
}

pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (Some(n), Some(t), None) = (p.next(), p.next(), p.next()) else {
                return Err(format!("bad TYPE line {line:?}"));
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                return Err(format!("unknown type in {line:?}"));
            }
            if e.types.insert(n.to_string(), t.to_string()).is_some() {
                return Err(format!("{n} declared twice"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels in {line:?}"))?;
                (n, parse_labels(inner)?)
            }
            None => (series, Vec::new()),
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name in {line:?}"));
        }
        let fam = family(name, &e.types).ok_or_else(|| format!("{name} has no TYPE"))?;
        if !helped.contains(&fam) {
            return Err(format!("{fam} has no HELP"));
        }
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if e.samples.insert(key(name, &l), value).is_some() {
            return Err(format!("duplicate sample {line:?}"));
        }
    }
    Ok(e)
}

impl Exposition {
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&key(name, labels)).copied()
    }
}
