//! The CNI_* environment a runtime passes, read from a map (only `main`
//! reads the real process environment).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{CniError, CniResult};
use crate::sysfs::valid_ifname;

/// Environment variables, by name.
pub type Env = BTreeMap<String, String>;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fastpath";

/// The parsed runtime environment of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniEnv {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS (may be empty on DEL).
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS as key/value pairs, in order.
    pub args: Vec<(String, String)>,
    /// CNI_PATH, split.
    pub path: Vec<PathBuf>,
    /// FASTPATH_STATE_DIR or the default.
    pub state_dir: PathBuf,
    /// FASTPATH_SYSFS_ROOT or `/sys`.
    pub sysfs_root: PathBuf,
    /// FASTPATH_OWNERSHIP_CONFIG or the node's ownership settings file
    /// ([`crate::ownership::DEFAULT_NODE_CONFIG`]).
    pub ownership_config: PathBuf,
}

/// FASTPATH_STATE_DIR, or [`DEFAULT_STATE_DIR`] when unset or empty.
pub fn state_dir(env: &Env) -> PathBuf {
    env.get("FASTPATH_STATE_DIR")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_STATE_DIR)
        .into()
}

impl CniEnv {
    /// CNI_ARGS in their wire form (`K=V;K=V`).
    pub fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// One CNI_ARGS value (`K8S_POD_NAME`, `MAC`, ...).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Reads the variables; `need_netns` makes CNI_NETNS mandatory (ADD,
    /// CHECK). Container id and ifname are mandatory for ADD/DEL/CHECK.
    pub fn parse(env: &Env, need_attachment: bool, need_netns: bool) -> CniResult<Self> {
        let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
        let container_id = get("CNI_CONTAINERID").to_string();
        let ifname = get("CNI_IFNAME").to_string();
        if need_attachment {
            if container_id.is_empty() {
                return Err(CniError::invalid_env("CNI_CONTAINERID", "is empty"));
            }
            if !container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(CniError::invalid_env(
                    "CNI_CONTAINERID",
                    format!("{container_id:?} has characters other than [A-Za-z0-9_.-]"),
                ));
            }
            if !valid_ifname(&ifname) {
                return Err(CniError::invalid_env(
                    "CNI_IFNAME",
                    format!("{ifname:?} is not a valid interface name"),
                ));
            }
        }
        let netns = Some(get("CNI_NETNS"))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if need_netns && netns.is_none() {
            return Err(CniError::invalid_env("CNI_NETNS", "is empty"));
        }
        let mut args = Vec::new();
        for kv in get("CNI_ARGS").split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(CniError::invalid_env(
                    "CNI_ARGS",
                    format!("{kv:?} is not KEY=VALUE"),
                ));
            };
            args.push((k.to_string(), v.to_string()));
        }
        let path = get("CNI_PATH")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        let state_dir = state_dir(env);
        let sysfs_root = Some(get("FASTPATH_SYSFS_ROOT"))
            .filter(|s| !s.is_empty())
            .unwrap_or(crate::sysfs::DEFAULT_ROOT)
            .into();
        let ownership_config = Some(get("FASTPATH_OWNERSHIP_CONFIG"))
            .filter(|s| !s.is_empty())
            .unwrap_or(crate::ownership::DEFAULT_NODE_CONFIG)
            .into();
        Ok(Self {
            container_id,
            netns,
            ifname,
            args,
            path,
            state_dir,
            sysfs_root,
            ownership_config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cni_args_and_paths_are_split() {
        let e = CniEnv::parse(
            &env(&[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "net1"),
                ("CNI_NETNS", "/run/netns/x"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=true;K8S_POD_NAME=p;MAC=02:00:00:00:00:01",
                ),
                ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            ]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(e.arg("K8S_POD_NAME"), Some("p"));
        assert_eq!(e.arg("MAC"), Some("02:00:00:00:00:01"));
        assert_eq!(e.path.len(), 2);
        assert_eq!(e.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }

    #[test]
    fn bad_variables_get_code_4_naming_them() {
        let cases = [
            (
                vec![("CNI_IFNAME", "net1"), ("CNI_NETNS", "/x")],
                "CNI_CONTAINERID",
            ),
            (
                vec![("CNI_CONTAINERID", "a/b"), ("CNI_IFNAME", "net1")],
                "CNI_CONTAINERID",
            ),
            (
                vec![("CNI_CONTAINERID", "a"), ("CNI_IFNAME", "bad/name")],
                "CNI_IFNAME",
            ),
            (
                vec![("CNI_CONTAINERID", "a"), ("CNI_IFNAME", "net1")],
                "CNI_NETNS",
            ),
            (
                vec![
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "n"),
                    ("CNI_NETNS", "/x"),
                    ("CNI_ARGS", "oops"),
                ],
                "CNI_ARGS",
            ),
        ];
        for (vars, name) in cases {
            let e = CniEnv::parse(&env(&vars), true, true).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.msg.contains(name), "{e}");
        }
    }
}
