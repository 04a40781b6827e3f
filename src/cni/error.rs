//! CNI errors: the spec's codes and the JSON written on stdout. Every
//! failure in the CNI path becomes a [`CniError`] here, in one place.

use serde::Serialize;

/// Error codes of the CNI spec (1.1.0) and fastpath's own (100+).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later (a transient condition).
    pub const TRY_AGAIN: u32 = 11;
    /// The plugin is not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// The kernel or the NIC refused a change.
    pub const KERNEL: u32 = 100;
    /// The VF is held by another live attachment.
    pub const VF_BUSY: u32 = 101;
    /// The IPAM plugin failed (its own code is kept when it gave one).
    pub const IPAM: u32 = 102;
}

/// A CNI error, as the spec shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// Spec code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation, naming the object involved.
    pub details: String,
}

impl CniError {
    /// An error with `code`, a message and details.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Code 7, naming the config field and the value refused.
    pub fn invalid_field(field: &str, value: impl std::fmt::Display, why: &str) -> Self {
        Self::new(
            code::INVALID_CONFIG,
            format!("invalid {field} {value}"),
            why.to_string(),
        )
    }

    /// Code 4, naming the variable.
    pub fn invalid_env(var: &str, why: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, format!("invalid {var}"), why)
    }

    /// Code 100: a kernel operation failed; `details` is the error text.
    pub fn kernel(msg: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::new(code::KERNEL, msg, err.to_string())
    }

    /// Code 5: a file operation failed.
    pub fn io(msg: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::new(code::IO, msg, err.to_string())
    }

    /// The spec's JSON object for this error.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// Result alias for the CNI path.
pub type CniResult<T> = Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialise_as_the_spec_says() {
        let e = CniError::invalid_field("vlan", 4095, "must be 0-4094");
        assert_eq!(
            e.to_json("1.1.0"),
            serde_json::json!({"cniVersion":"1.1.0","code":7,"msg":"invalid vlan 4095","details":"must be 0-4094"})
        );
        assert_eq!(e.to_string(), "invalid vlan 4095: must be 0-4094");
    }
}
