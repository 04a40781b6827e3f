//! Label and field selectors, as list and watch take them in the query.
//! Set-based label terms (`in`, `notin`) are refused with a 400 rather
//! than misread.

use serde_json::Value;

/// One selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed label or field selector: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
    field: bool,
}

/// A selector string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param} {value:?}: {reason}")]
pub struct SelectorError {
    /// `labelSelector` or `fieldSelector`.
    pub param: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Selector {
    /// Parses a `labelSelector` (equality, inequality, existence terms).
    pub fn labels(s: &str) -> Result<Self, SelectorError> {
        Self::parse(s, false)
    }

    /// Parses a `fieldSelector`; any dotted path of the object is
    /// accepted (a real server allows only a few per resource).
    pub fn fields(s: &str) -> Result<Self, SelectorError> {
        Self::parse(s, true)
    }

    fn parse(s: &str, field: bool) -> Result<Self, SelectorError> {
        let param = if field {
            "fieldSelector"
        } else {
            "labelSelector"
        };
        let err = |reason: &str| SelectorError {
            param,
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::Ne(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                Term::Eq(k.trim().to_string(), v.trim().to_string())
            } else if field {
                return Err(err("field terms need = or !="));
            } else if raw.contains(' ') || raw.contains('(') {
                return Err(err("set-based terms (in, notin) are not supported"));
            } else if let Some(k) = raw.strip_prefix('!') {
                Term::Absent(k.to_string())
            } else {
                Term::Exists(raw.to_string())
            };
            let key = match &term {
                Term::Eq(k, _) | Term::Ne(k, _) | Term::Exists(k) | Term::Absent(k) => k,
            };
            if key.is_empty() {
                return Err(err("a term has an empty key"));
            }
            terms.push(term);
        }
        Ok(Self { terms, field })
    }

    /// Whether `obj` satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let get = |k: &str| -> Option<String> {
                if self.field {
                    field_value(obj, k)
                } else {
                    obj.pointer("/metadata/labels")
                        .and_then(|l| l.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }
            };
            match t {
                Term::Eq(k, v) => get(k).as_deref() == Some(v),
                // Field `!=` on a missing field holds, as on the server.
                Term::Ne(k, v) => get(k).as_deref() != Some(v),
                Term::Exists(k) => get(k).is_some(),
                Term::Absent(k) => get(k).is_none(),
            }
        })
    }
}

/// The string form of a dotted field of `obj` (`spec.nodeName`).
fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut v = obj;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_terms() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x", "tier": "db"}},
                         "spec": {"nodeName": "n1", "replicas": 3}});
        let cases: &[(&str, bool, bool)] = &[
            ("app=x", false, true),
            ("app==x,tier=db", false, true),
            ("app=y", false, false),
            ("app!=y", false, true),
            ("tier", false, true),
            ("!tier", false, false),
            ("missing", false, false),
            ("", false, true),
            ("metadata.name=a", true, true),
            ("metadata.namespace=ns,metadata.name=a", true, true),
            ("metadata.name=b", true, false),
            ("spec.nodeName=n1", true, true),
            ("spec.nodeName!=n1", true, false),
            ("spec.replicas=3", true, true),
            ("spec.missing!=x", true, true),
        ];
        for (s, field, want) in cases {
            let sel = if *field {
                Selector::fields(s)
            } else {
                Selector::labels(s)
            }
            .unwrap();
            assert_eq!(sel.matches(&obj), *want, "{s}");
        }
    }

    #[test]
    fn bad_selectors_name_the_parameter() {
        let e = Selector::labels("env in (a,b)").unwrap_err();
        assert_eq!(e.param, "labelSelector");
        assert!(e.to_string().contains("set-based"), "{e}");
        assert_eq!(Selector::fields("spec").unwrap_err().param, "fieldSelector");
        assert!(Selector::labels("=x").is_err());
    }
}
