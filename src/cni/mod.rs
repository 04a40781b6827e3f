//! The CNI plugin: `run(command, env, stdin, stdout) -> exit code`.
//!
//! `main` calls [`run`] when CNI_COMMAND is set; nothing here reads the
//! process environment or exits. Errors become the spec's JSON on stdout
//! in exactly one place ([`run_with_hook`]); logs go to `logFile` or
//! stderr, never stdout.

pub mod add;
pub mod check;
pub mod config;
pub mod del;
pub mod device;
pub mod env;
pub mod error;
mod field_types;
pub mod gc;
pub mod ipam;
pub mod lock;
pub mod metrics;
mod owner;
pub mod plan;
pub mod records;
pub mod result;
mod slots;
pub mod undo;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use serde_json::json;

use config::{Config, SUPPORTED_VERSIONS, peek_version};
use env::CniEnv;
pub use env::Env;
use error::{CniError, CniResult};
pub use plan::{NoHook, Step, StepHook};

/// Runs one CNI command and returns the process exit code.
pub fn run(command: &str, env: &Env, stdin: &mut dyn Read, stdout: &mut dyn Write) -> i32 {
    run_with_hook(command, env, stdin, stdout, &NoHook)
}

/// [`run`] with a step hook (tests inject failures after ADD steps).
pub fn run_with_hook(
    command: &str,
    env: &Env,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    hook: &dyn StepHook,
) -> i32 {
    let started = std::time::Instant::now();
    let code = run_inner(command, env, stdin, stdout, hook);
    metrics::record(
        &env::state_dir(env),
        &metrics::CniEvent {
            command: command.to_string(),
            ok: code == 0,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error_code: None,
        },
    );
    code
}

fn run_inner(
    command: &str,
    env: &Env,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    hook: &dyn StepHook,
) -> i32 {
    let mut input = Vec::new();
    if let Err(e) = stdin.read_to_end(&mut input) {
        return emit_error(stdout, "1.1.0", &CniError::io("reading stdin", e));
    }
    let version = peek_version(&input)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let subscriber = log_subscriber(&input);
    let outcome = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "cni",
            command,
            container = env.get("CNI_CONTAINERID").map(String::as_str).unwrap_or(""),
            ifname = env.get("CNI_IFNAME").map(String::as_str).unwrap_or("")
        );
        let _enter = span.enter();
        let r = dispatch(command, env, &input, hook);
        if let Err(e) = &r {
            tracing::error!(code = e.code, "{e}");
        }
        r
    });
    match outcome {
        Ok(Some(v)) => {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            bytes.push(b'\n');
            match stdout.write_all(&bytes).and_then(|_| stdout.flush()) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Ok(None) => 0,
        Err(e) => emit_error(stdout, &version, &e),
    }
}

fn emit_error(stdout: &mut dyn Write, version: &str, e: &CniError) -> i32 {
    let mut bytes = serde_json::to_vec(&e.to_json(version)).unwrap_or_default();
    bytes.push(b'\n');
    let _ = stdout.write_all(&bytes);
    let _ = stdout.flush();
    1
}

fn dispatch(
    command: &str,
    env: &Env,
    input: &[u8],
    hook: &dyn StepHook,
) -> CniResult<Option<serde_json::Value>> {
    match command {
        "VERSION" => Ok(Some(json!({
            "cniVersion": peek_version(input)
                .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| "1.1.0".into()),
            "supportedVersions": SUPPORTED_VERSIONS,
        }))),
        "ADD" => {
            let cenv = CniEnv::parse(env, true, true)?;
            let conf = Config::parse(input, &cenv)?;
            add::add(&cenv, &conf, hook).map(Some)
        }
        "DEL" => {
            let cenv = CniEnv::parse(env, true, false)?;
            let conf = Config::parse(input, &cenv)?;
            del::del(&cenv, &conf).map(|_| None)
        }
        "CHECK" => {
            let cenv = CniEnv::parse(env, true, true)?;
            let conf = Config::parse(input, &cenv)?;
            check::check(&cenv, &conf).map(|_| None)
        }
        "STATUS" => {
            let cenv = CniEnv::parse(env, false, false)?;
            let conf = Config::parse(input, &cenv)?;
            gc::status(&cenv, &conf).map(|_| None)
        }
        "GC" => {
            let cenv = CniEnv::parse(env, false, false)?;
            let conf = Config::parse(input, &cenv)?;
            gc::gc(&cenv, &conf).map(|_| None)
        }
        other => Err(CniError::invalid_env(
            "CNI_COMMAND",
            format!("{other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
        )),
    }
}

/// Logs go to `logFile` (appended, 0600) when the config names one, else
/// stderr, at `logLevel` (default info).
fn log_subscriber(input: &[u8]) -> impl tracing::Subscriber + Send + Sync {
    let v: serde_json::Value = serde_json::from_slice(input).unwrap_or_default();
    let level = match v
        .get("logLevel")
        .and_then(|l| l.as_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("panic") | Some("error") => tracing::Level::ERROR,
        Some("warning") | Some("warn") => tracing::Level::WARN,
        Some("debug") => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    };
    let file = v
        .get("logFile")
        .and_then(|f| f.as_str())
        .filter(|f| !f.is_empty())
        .and_then(|f| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(f)
                .ok()
        });
    let writer = tracing_subscriber::fmt::writer::BoxMakeWriter::new(match file {
        Some(f) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(Mutex::new(f)),
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    });
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_ansi(false)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use error::code;

    fn run_str(cmd: &str, env: &[(&str, &str)], stdin: &str) -> (i32, serde_json::Value) {
        let env: Env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        let code = run(cmd, &env, &mut stdin.as_bytes(), &mut out);
        (
            code,
            serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null),
        )
    }

    #[test]
    fn version_lists_every_supported_version() {
        let (code, out) = run_str("VERSION", &[], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(code, 0);
        assert_eq!(out["cniVersion"], "0.4.0");
        assert_eq!(
            out["supportedVersions"],
            json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }

    #[test]
    fn errors_are_json_on_stdout_in_the_callers_version() {
        let (code, out) = run_str("BOGUS", &[], r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(code, 1);
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(out["code"], 4);
        let (code, out) = run_str(
            "ADD",
            &[
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "net1"),
                ("CNI_NETNS", "/x"),
            ],
            "{not json",
        );
        assert_eq!(code, 1);
        assert_eq!(out["code"], code::DECODE);
    }
}
