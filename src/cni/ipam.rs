//! IPAM by delegation: the plugin named in `ipam.type` is found in
//! CNI_PATH and executed per the spec, with the network config on stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::config::Config;
use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::result::IpamResult;

/// Finds `plugin` in CNI_PATH (ADD checks this before changing anything).
pub fn find(env: &CniEnv, plugin: &str) -> CniResult<PathBuf> {
    env.path
        .iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::invalid_field(
                "ipam.type",
                format!("{plugin:?}"),
                &format!(
                    "no such plugin in CNI_PATH {:?}",
                    env.path
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Runs the IPAM plugin with `command`; returns its stdout on success and
/// its error (code kept) on failure.
pub fn exec(command: &str, env: &CniEnv, plugin: &str, netconf: &Value) -> CniResult<Vec<u8>> {
    let bin = find(env, plugin)?;
    let path = std::env::join_paths(&env.path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args = env
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut child = Command::new(&bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env(
            "CNI_NETNS",
            env.netns
                .as_deref()
                .map(|p| p.as_os_str())
                .unwrap_or_default(),
        )
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::io(format!("executing IPAM plugin {}", bin.display()), e))?;
    let input = serde_json::to_vec(netconf).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading is reported by its status.
        let _ = stdin.write_all(&input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("waiting for IPAM plugin {}", bin.display()), e))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if v.get("code").is_some() => CniError::new(
            v["code"].as_u64().map(|c| c as u32).unwrap_or(code::IPAM),
            format!(
                "IPAM plugin {plugin} {command} failed: {}",
                v.get("msg").and_then(Value::as_str).unwrap_or("")
            ),
            v.get("details")
                .and_then(Value::as_str)
                .unwrap_or(&stderr)
                .to_string(),
        ),
        _ => CniError::new(
            code::IPAM,
            format!("IPAM plugin {plugin} {command} failed ({})", out.status),
            format!("{}{stderr}", String::from_utf8_lossy(&out.stdout).trim()),
        ),
    })
}

/// Runs `command` with `netconf`; a plugin that predates cniVersion 1.1.0
/// (Debian 12 ships 1.0.0 plugins) refuses it with code 1, and since ADD,
/// DEL and CHECK mean the same in 1.0.0 the request is retried there.
fn exec_compat(
    command: &str,
    env: &CniEnv,
    plugin: &str,
    mut netconf: Value,
) -> CniResult<Vec<u8>> {
    match exec(command, env, plugin, &netconf) {
        Err(e)
            if e.code == code::INCOMPATIBLE_VERSION
                && netconf.get("cniVersion").and_then(Value::as_str) == Some("1.1.0") =>
        {
            tracing::debug!(
                plugin,
                "IPAM plugin refuses 1.1.0; retrying {command} as 1.0.0"
            );
            netconf["cniVersion"] = Value::from("1.0.0");
            exec(command, env, plugin, &netconf)
        }
        r => r,
    }
}

/// True when the plugin's VERSION lists `version`.
fn supports(env: &CniEnv, plugin: &str, version: &str) -> CniResult<bool> {
    let out = exec(
        "VERSION",
        env,
        plugin,
        &serde_json::json!({"cniVersion": version}),
    )?;
    let v: Value = serde_json::from_slice(&out).unwrap_or_default();
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(version))))
}

/// The config handed to IPAM: the caller's, with fastpath's prevResult
/// where the verb needs one.
fn netconf(conf: &Config, prev: Option<&Value>) -> Value {
    let mut v = conf.raw.clone();
    if let (Some(o), Some(p)) = (v.as_object_mut(), prev) {
        o.insert("prevResult".into(), p.clone());
    }
    v
}

/// IPAM ADD; `None` when the config has no IPAM.
pub fn add(conf: &Config, env: &CniEnv) -> CniResult<Option<IpamResult>> {
    let Some(plugin) = &conf.ipam_type else {
        return Ok(None);
    };
    let mut nc = netconf(conf, None);
    if let Some(o) = nc.as_object_mut() {
        o.remove("prevResult");
    }
    let out = exec_compat("ADD", env, plugin, nc)?;
    IpamResult::parse(&out, plugin).map(Some)
}

/// IPAM DEL (also used to undo a failed ADD).
pub fn del(conf: &Config, env: &CniEnv) -> CniResult<()> {
    let Some(plugin) = &conf.ipam_type else {
        return Ok(());
    };
    exec_compat("DEL", env, plugin, netconf(conf, conf.prev_result.as_ref())).map(|_| ())
}

/// IPAM CHECK with the caller's prevResult.
pub fn check(conf: &Config, env: &CniEnv) -> CniResult<()> {
    let Some(plugin) = &conf.ipam_type else {
        return Ok(());
    };
    exec_compat(
        "CHECK",
        env,
        plugin,
        netconf(conf, conf.prev_result.as_ref()),
    )
    .map(|_| ())
}

/// Forwards STATUS or GC (1.1 verbs) to IPAM, as libcni does only to
/// plugins whose VERSION lists 1.1.0; older ones are skipped.
pub fn forward(verb: &str, conf: &Config, env: &CniEnv) -> CniResult<()> {
    let Some(plugin) = &conf.ipam_type else {
        return Ok(());
    };
    if !supports(env, plugin, "1.1.0")? {
        tracing::debug!(
            plugin,
            "IPAM plugin predates CNI 1.1.0; not forwarding {verb}"
        );
        return Ok(());
    }
    exec(verb, env, plugin, &conf.raw).map(|_| ())
}
