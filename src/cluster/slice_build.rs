//! ResourceSlices from [`NodeDevices`] and back: names, attribute
//! mapping, chunking and what existing slices say was published. Plain
//! functions; [`super::slices`] does the requests.
//!
//! A slice is written as a [`SliceBody`] that borrows the devices and is
//! serialized straight into the request: building `k8s-openapi`
//! `ResourceSlice` objects for 1,024 devices, and dropping them, was most
//! of a publish's CPU time (docs/PERFORMANCE.md, "DRA"). The tests decode
//! each body as a `ResourceSlice` and encode it again to show it is the
//! same object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::resource::v1::{DeviceAttribute, ResourceSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::dra::{AttrValue, DraDevice, NodeDevices};

/// Devices per slice: the API's limit (`spec.devices` maxItems).
pub const MAX_DEVICES_PER_SLICE: usize = 128;

/// Attributes per device: the API's limit on attributes and capacities
/// together.
pub const MAX_ATTRIBUTES_PER_DEVICE: usize = 32;

/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Devices that cannot be published as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevicesError {
    /// Two devices with one name.
    #[error("device {device:?} is listed twice for driver {driver}")]
    DuplicateDevice {
        /// The driver.
        driver: String,
        /// The device name.
        device: String,
    },
    /// More attributes than the API takes.
    #[error(
        "device {device:?} has {count} attributes; ResourceSlices allow at most {MAX_ATTRIBUTES_PER_DEVICE}"
    )]
    TooManyAttributes {
        /// The device name.
        device: String,
        /// How many it has.
        count: usize,
    },
    /// An empty device name.
    #[error("a device of driver {driver} has an empty name")]
    EmptyName {
        /// The driver.
        driver: String,
    },
}

/// Checks what the API server would refuse, before any request.
pub fn check(devices: &NodeDevices) -> Result<(), DevicesError> {
    let mut seen = BTreeSet::new();
    for d in &devices.devices {
        if d.name.is_empty() {
            return Err(DevicesError::EmptyName {
                driver: devices.driver.clone(),
            });
        }
        if !seen.insert(d.name.as_str()) {
            return Err(DevicesError::DuplicateDevice {
                driver: devices.driver.clone(),
                device: d.name.clone(),
            });
        }
        if d.attributes.len() > MAX_ATTRIBUTES_PER_DEVICE {
            return Err(DevicesError::TooManyAttributes {
                device: d.name.clone(),
                count: d.attributes.len(),
            });
        }
    }
    Ok(())
}

/// FNV-1a: a stable short hash, the same on every build and host.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The name of slice `index` of `driver`'s pool on `node`:
/// `<node>-<driver>-<index>`; when that is too long for an object name,
/// the prefix is cut and a hash of the whole keeps names distinct.
pub fn slice_name(node: &str, driver: &str, index: usize) -> String {
    let full = format!("{node}-{driver}-{index}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let tail = format!("-{:016x}-{index}", fnv(&format!("{node}/{driver}")));
    let mut cut = MAX_NAME - tail.len();
    let base = format!("{node}-{driver}");
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = base[..cut].trim_end_matches(['-', '.']);
    format!("{head}{tail}")
}

/// The value an API attribute holds; `None` when it holds not exactly one.
pub fn from_attribute(a: &DeviceAttribute) -> Option<AttrValue> {
    match (a.int, a.bool, &a.string, &a.version) {
        (Some(i), None, None, None) => Some(AttrValue::Int(i)),
        (None, Some(b), None, None) => Some(AttrValue::Bool(b)),
        (None, None, Some(s), None) => Some(AttrValue::String(s.clone())),
        (None, None, None, Some(s)) => Some(AttrValue::Version(s.clone())),
        _ => None,
    }
}

/// The owner reference that ties slices to their Node, so that deleting
/// the Node collects them.
pub fn node_owner(node: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The names of the slices [`build`] makes for `devices`, without building
/// them: a publish with nothing to write needs only these.
pub fn slice_names(devices: &NodeDevices) -> BTreeSet<String> {
    let count = devices.devices.len().div_ceil(MAX_DEVICES_PER_SLICE).max(1);
    (0..count)
        .map(|i| slice_name(&devices.node, &devices.driver, i))
        .collect()
}

/// One slice's server-side apply body (`resource.k8s.io/v1`
/// `ResourceSlice`), borrowing its devices.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: BodyMeta<'a>,
    spec: BodySpec<'a>,
}

impl SliceBody<'_> {
    /// The slice's object name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BodyMeta<'a> {
    name: String,
    owner_references: [&'a OwnerReference; 1],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BodySpec<'a> {
    driver: &'a str,
    node_name: &'a str,
    pool: BodyPool<'a>,
    devices: BodyDevices<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BodyPool<'a> {
    name: &'a str,
    generation: i64,
    resource_slice_count: i64,
}

/// Devices in the API's form: `{"name", "attributes": {k: {"int": 1}}}`.
#[derive(Debug)]
struct BodyDevices<'a>(&'a [DraDevice]);

struct BodyAttributes<'a>(&'a BTreeMap<String, AttrValue>);

struct BodyValue<'a>(&'a AttrValue);

impl Serialize for BodyDevices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for d in self.0 {
            seq.serialize_element(&BodyDevice(d))?;
        }
        seq.end()
    }
}

struct BodyDevice<'a>(&'a DraDevice);

impl Serialize for BodyDevice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("name", &self.0.name)?;
        m.serialize_entry("attributes", &BodyAttributes(&self.0.attributes))?;
        m.end()
    }
}

impl Serialize for BodyAttributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &BodyValue(v))?;
        }
        m.end()
    }
}

impl Serialize for BodyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            AttrValue::Int(i) => m.serialize_entry("int", i)?,
            AttrValue::Bool(b) => m.serialize_entry("bool", b)?,
            AttrValue::String(v) => m.serialize_entry("string", v)?,
            AttrValue::Version(v) => m.serialize_entry("version", v)?,
        }
        m.end()
    }
}

/// Every slice of `devices` at pool `generation`: at most
/// [`MAX_DEVICES_PER_SLICE`] devices each, in the given order. No devices
/// is one empty slice, so the pool still says it has nothing.
pub fn bodies<'a>(
    devices: &'a NodeDevices,
    generation: i64,
    owner: &'a OwnerReference,
) -> Vec<SliceBody<'a>> {
    let chunks: Vec<&[DraDevice]> = if devices.devices.is_empty() {
        vec![&[]]
    } else {
        devices.devices.chunks(MAX_DEVICES_PER_SLICE).collect()
    };
    let count = chunks.len() as i64;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| SliceBody {
            api_version: "resource.k8s.io/v1",
            kind: "ResourceSlice",
            metadata: BodyMeta {
                name: slice_name(&devices.node, &devices.driver, i),
                owner_references: [owner],
            },
            spec: BodySpec {
                driver: &devices.driver,
                node_name: &devices.node,
                pool: BodyPool {
                    name: &devices.node,
                    generation,
                    resource_slice_count: count,
                },
                devices: BodyDevices(chunk),
            },
        })
        .collect()
}

/// What existing slices of this node and driver say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The highest pool generation among them (0 when none).
    pub generation: i64,
    /// Their names.
    pub names: BTreeSet<String>,
    /// The devices they publish, when they form one complete pool as
    /// [`build`] would write it for `owner`; then an unchanged device list
    /// needs no write.
    pub devices: Option<Vec<DraDevice>>,
}

/// Reads the state a previous run left from its slices.
pub fn adopt(existing: &[ResourceSlice], owner: &OwnerReference) -> Adopted {
    let generation = existing
        .iter()
        .map(|s| s.spec.pool.generation)
        .max()
        .unwrap_or(0);
    let names: BTreeSet<String> = existing
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    Adopted {
        generation,
        devices: complete_pool(existing, generation, owner),
        names,
    }
}

fn complete_pool(
    existing: &[ResourceSlice],
    generation: i64,
    owner: &OwnerReference,
) -> Option<Vec<DraDevice>> {
    let first = existing.first()?;
    let (node, driver) = (&first.spec.pool.name, &first.spec.driver);
    let by_name: BTreeMap<&str, &ResourceSlice> = existing
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, s)))
        .collect();
    let count = usize::try_from(first.spec.pool.resource_slice_count).ok()?;
    if count != existing.len() || by_name.len() != count {
        return None;
    }
    let mut devices = Vec::new();
    for i in 0..count {
        let s = by_name.get(slice_name(node, driver, i).as_str())?;
        let owned = s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(owner));
        if !owned
            || s.spec.pool.generation != generation
            || s.spec.pool.resource_slice_count != count as i64
        {
            return None;
        }
        for d in s.spec.devices.iter().flatten() {
            let attributes = d
                .attributes
                .iter()
                .flatten()
                .map(|(k, a)| Some((k.clone(), from_attribute(a)?)))
                .collect::<Option<BTreeMap<_, _>>>()?;
            devices.push(DraDevice {
                name: d.name.clone(),
                attributes,
            });
        }
    }
    Some(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slices as the server returns them: each body decoded as a
    /// `ResourceSlice`, after checking that encoding that again gives the
    /// body back (no field misnamed or lost).
    fn build(devices: &NodeDevices, generation: i64, owner: &OwnerReference) -> Vec<ResourceSlice> {
        bodies(devices, generation, owner)
            .iter()
            .map(|b| {
                let body = serde_json::to_value(b).unwrap();
                let slice: ResourceSlice = serde_json::from_value(body.clone()).unwrap();
                assert_eq!(serde_json::to_value(&slice).unwrap(), body);
                slice
            })
            .collect()
    }

    fn devices(n: usize) -> NodeDevices {
        NodeDevices {
            driver: "sriov.fastpath.dev".into(),
            node: "node-a".into(),
            devices: (0..n)
                .map(|i| DraDevice {
                    name: format!("pci-0000-3b-{:02x}-{}", i / 8, i % 8),
                    attributes: BTreeMap::from([
                        ("vfIndex".into(), AttrValue::Int(i as i64)),
                        ("rdma".into(), AttrValue::Bool(i % 2 == 0)),
                        ("pfName".into(), AttrValue::String("ens1f0".into())),
                        ("driverVersion".into(), AttrValue::Version("1.2.3".into())),
                    ]),
                })
                .collect(),
        }
    }

    #[test]
    fn attributes_map_to_exactly_one_api_field_and_back() {
        for v in [
            AttrValue::Int(-3),
            AttrValue::Bool(true),
            AttrValue::String("x".into()),
            AttrValue::Version("1.0.0".into()),
        ] {
            let a: DeviceAttribute =
                serde_json::from_value(serde_json::to_value(BodyValue(&v)).unwrap()).unwrap();
            let set = [
                a.int.is_some(),
                a.bool.is_some(),
                a.string.is_some(),
                a.version.is_some(),
            ];
            assert_eq!(set.iter().filter(|s| **s).count(), 1, "{v:?}");
            assert_eq!(from_attribute(&a), Some(v));
        }
        let two = DeviceAttribute {
            int: Some(1),
            bool: Some(true),
            ..Default::default()
        };
        assert_eq!(from_attribute(&two), None);
        assert_eq!(from_attribute(&DeviceAttribute::default()), None);
    }

    #[test]
    fn names_are_deterministic_and_fit_an_object_name() {
        assert_eq!(
            slice_name("node-a", "sriov.fastpath.dev", 2),
            "node-a-sriov.fastpath.dev-2"
        );
        let long = "n".repeat(250);
        let a = slice_name(&long, "sriov.fastpath.dev", 0);
        let b = slice_name(&long, "sriov.fastpath.dev", 1);
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, slice_name(&long, "sriov.fastpath.dev", 0));
        assert_ne!(a, slice_name(&format!("{long}x"), "sriov.fastpath.dev", 0));
    }

    #[test]
    fn chunks_of_128_with_the_pool_count_and_owner() {
        let owner = node_owner("node-a", "uid-1");
        for (n, want) in [
            (0, vec![0]),
            (1, vec![1]),
            (128, vec![128]),
            (129, vec![128, 1]),
            (300, vec![128, 128, 44]),
        ] {
            let slices = build(&devices(n), 4, &owner);
            let built: BTreeSet<String> = slices
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            assert_eq!(slice_names(&devices(n)), built, "{n}");
            let sizes: Vec<usize> = slices
                .iter()
                .map(|s| s.spec.devices.as_ref().unwrap().len())
                .collect();
            assert_eq!(sizes, want, "{n}");
            for s in &slices {
                assert_eq!(s.spec.pool.resource_slice_count, want.len() as i64);
                assert_eq!(s.spec.pool.generation, 4);
                assert_eq!(s.spec.node_name.as_deref(), Some("node-a"));
                assert_eq!(
                    s.metadata.owner_references.as_ref().unwrap()[0].uid,
                    "uid-1"
                );
            }
        }
    }

    #[test]
    fn adopting_what_build_wrote_gives_back_the_devices() {
        let owner = node_owner("node-a", "uid-1");
        let d = devices(300);
        let slices = build(&d, 7, &owner);
        let a = adopt(&slices, &owner);
        assert_eq!((a.generation, a.names.len()), (7, 3));
        assert_eq!(a.devices.as_deref(), Some(&d.devices[..]));
        // Another Node object (recreated: new uid), a missing slice, or
        // mixed generations: not a complete pool, rewrite it.
        assert_eq!(adopt(&slices, &node_owner("node-a", "uid-2")).devices, None);
        assert_eq!(adopt(&slices[..2], &owner).devices, None);
        let mut mixed = slices.clone();
        mixed[1].spec.pool.generation = 6;
        let a = adopt(&mixed, &owner);
        assert_eq!((a.generation, a.devices), (7, None));
        assert_eq!(
            adopt(&[], &owner),
            Adopted {
                generation: 0,
                names: BTreeSet::new(),
                devices: None
            }
        );
    }

    #[test]
    fn bad_device_lists_are_refused_by_name() {
        let mut d = devices(3);
        d.devices[2].name = d.devices[0].name.clone();
        assert!(
            matches!(check(&d), Err(DevicesError::DuplicateDevice { device, .. }) if device == "pci-0000-3b-00-0")
        );
        let mut d = devices(1);
        for i in 0..40 {
            d.devices[0]
                .attributes
                .insert(format!("a{i}"), AttrValue::Int(i));
        }
        assert!(matches!(
            check(&d),
            Err(DevicesError::TooManyAttributes { count: 44, .. })
        ));
        let mut d = devices(1);
        d.devices[0].name.clear();
        assert!(matches!(check(&d), Err(DevicesError::EmptyName { .. })));
        assert_eq!(check(&devices(300)), Ok(()));
    }
}
