//! JSON type checks for the config's typed fields, so that `"vlan": "100"`
//! is refused with code 7 naming `vlan` (serde alone reports "invalid type"
//! without the field).

use serde_json::Value;

use super::error::{CniError, CniResult, code};

const INT_FIELDS: [&str; 5] = ["vlan", "vlanQoS", "min_tx_rate", "max_tx_rate", "mtu"];
const STRING_FIELDS: [&str; 14] = [
    "cniVersion",
    "name",
    "type",
    "deviceID",
    "pciBusID",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "logLevel",
    "logFile",
    "CNIDeviceInfoFile",
    "runtimeConfig",
];

/// Refuses fields of the wrong JSON type with code 7 naming them (serde
/// alone would say "invalid type" without the field).
pub fn check_types(v: &Value) -> CniResult<()> {
    let Some(o) = v.as_object() else {
        return Err(CniError::new(
            code::DECODE,
            "decoding network config",
            "not a JSON object",
        ));
    };
    for f in INT_FIELDS {
        if let Some(x) = o.get(f).filter(|x| !x.is_null())
            && x.as_i64().is_none()
        {
            return Err(CniError::invalid_field(f, x, "must be an integer"));
        }
    }
    for f in STRING_FIELDS {
        let Some(x) = o.get(f).filter(|x| !x.is_null()) else {
            continue;
        };
        if f == "runtimeConfig" {
            let Some(rc) = x.as_object() else {
                return Err(CniError::invalid_field(f, x, "must be an object"));
            };
            for k in ["mac", "deviceID", "CNIDeviceInfoFile"] {
                if let Some(y) = rc.get(k).filter(|y| !y.is_null() && !y.is_string()) {
                    return Err(CniError::invalid_field(
                        &format!("runtimeConfig.{k}"),
                        y,
                        "must be a string",
                    ));
                }
            }
        } else if !x.is_string() {
            return Err(CniError::invalid_field(f, x, "must be a string"));
        }
    }
    Ok(())
}
