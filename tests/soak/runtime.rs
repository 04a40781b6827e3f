//! What a container runtime does around the CNI, as the soak needs it:
//! execute the plugin binary, and (a stand-in's limitation) put back a
//! veth that died with its netns.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fastpath::cni::Env;
use serde_json::Value;

use crate::cni_host::Host;

/// Runs the `fastpath` binary as a CNI runtime does: `CNI_*` in a clean
/// environment, the config on stdin, the result or error on stdout.
pub fn exec_cni(
    ownership_config: &Path,
    cmd: &str,
    env: &Env,
    conf: &Value,
) -> Result<Value, String> {
    let mut child = Command::new(crate::fastpath_bin())
        .env_clear()
        .envs(env)
        .env("CNI_COMMAND", cmd)
        .env("FASTPATH_OWNERSHIP_CONFIG", ownership_config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning fastpath: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .map_err(|e| format!("writing stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        return Err(format!(
            "{cmd} container={:?} ifname={:?} netns={:?} failed ({}): {v} {}",
            env.get("CNI_CONTAINERID"),
            env.get("CNI_IFNAME"),
            env.get("CNI_NETNS"),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(v)
}

/// Re-creates VF `i`'s veth pair with its original name, MAC and MTU. The
/// old pair is torn down asynchronously after its netns goes, so the peer
/// name may be taken for a moment.
pub fn recreate_veth(host: &Host, i: usize) -> Result<(), String> {
    let vf = &host.vfs[i];
    let peer = format!("{}p{i}", host.tag);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args([
                "link", "add", &vf.ifname, "address", &vf.mac, "type", "veth",
            ])
            .args(["peer", "name", &peer, "netns", &host.far])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "re-creating {}: {}",
                vf.ifname,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
