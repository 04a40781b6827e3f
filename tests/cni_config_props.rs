//! Property test: config parsing never panics, whatever the field values,
//! and every refusal is a decode (6), version (1) or config (7) error.

use fastpath::cni::config::Config;
use fastpath::cni::env::CniEnv;
use serde_json::Value;

use proptest::prelude::*;

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-10i64..5000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        "[0-9a-fA-F:]{0,20}".prop_map(Value::from),
        Just(Value::Null),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ]
}

proptest! {
    /// Whatever the field values, parsing never panics and a refusal is
    /// a decode (6), version (1) or config (7) error.
    #[test]
    fn arbitrary_field_values_never_panic(
        picks in proptest::collection::vec((0usize..16, field_value()), 0..8)
    ) {
        const FIELDS: [&str; 16] = [
            "cniVersion", "name", "deviceID", "pciBusID", "vlan", "vlanQoS", "vlanProto",
            "mac", "spoofchk", "trust", "link_state", "min_tx_rate", "max_tx_rate", "mtu",
            "ipam", "runtimeConfig",
        ];
        let mut v = serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "fastpath"});
        for (i, val) in picks {
            v[FIELDS[i]] = val;
        }
        if let Err(e) = Config::parse(v.to_string().as_bytes(), &CniEnv::default()) {
            prop_assert!([1, 6, 7].contains(&e.code), "{e:?}");
            prop_assert!(!e.msg.is_empty());
        }
    }
}
