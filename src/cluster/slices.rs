//! Publishing this node's DRA devices as `resource.k8s.io/v1`
//! ResourceSlices: one pool per node, named after it, owned by the Node
//! object. Writes happen only when the devices change: the publisher keeps
//! what it last wrote, and at start adopts the slices a previous run left.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::ResourceSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use super::describe;
pub use super::slice_build::{DevicesError, MAX_DEVICES_PER_SLICE, slice_name};
use super::slice_build::{adopt, bodies, check, node_owner, slice_names};
use crate::dra::{DraDevice, NodeDevices};

/// The field manager of every slice write.
pub const FIELD_MANAGER: &str = "fastpath-dra";

/// Publishing slices failed.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The Node object could not be read (its UID owns the slices).
    #[error("reading Node {node}: {reason}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// Listing this node's slices at start failed.
    #[error("listing ResourceSlices of node {node}, driver {driver}: {reason}")]
    List {
        /// The node.
        node: String,
        /// The driver.
        driver: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing a slice failed.
    #[error("writing ResourceSlice {name}: {reason}")]
    Write {
        /// The slice.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Deleting a slice failed.
    #[error("deleting ResourceSlice {name}: {reason}")]
    Delete {
        /// The slice.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The devices are for another driver or node than this publisher's.
    #[error(
        "devices of driver {got_driver:?} on node {got_node:?} given to the publisher of driver {driver:?} on node {node:?}"
    )]
    WrongPool {
        /// This publisher's driver.
        driver: String,
        /// This publisher's node.
        node: String,
        /// The devices' driver.
        got_driver: String,
        /// The devices' node.
        got_node: String,
    },
    /// The devices cannot be published as given.
    #[error(transparent)]
    Devices(#[from] DevicesError),
}

/// What one [`SlicePublisher::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The pool generation now published.
    pub generation: i64,
    /// Slices written (0 when nothing changed).
    pub written: usize,
    /// Surplus slices deleted.
    pub deleted: usize,
}

/// Keeps one driver's pool on one node published.
pub struct SlicePublisher {
    api: Api<ResourceSlice>,
    /// For the writes: a raw request whose answer is not decoded (the
    /// publisher needs only its status).
    client: kube::Client,
    request: kube::core::Request,
    driver: String,
    node: String,
    owner: OwnerReference,
    generation: i64,
    /// The devices the server has, as this publisher wrote or adopted
    /// them; `None` when unknown (a write failed, or adoption found an
    /// incomplete pool), so the next publish writes.
    current: Option<Vec<DraDevice>>,
    /// Names of this pool's slices on the server.
    names: BTreeSet<String>,
}

impl SlicePublisher {
    /// Reads the Node's UID and adopts the slices of this node and driver
    /// that exist (their generation continues; surplus ones go at the
    /// next publish).
    pub async fn start(client: kube::Client, driver: &str, node: &str) -> Result<Self, SliceError> {
        let nodes: Api<Node> = Api::all(client.clone());
        let n = nodes.get(node).await.map_err(|e| SliceError::Node {
            node: node.into(),
            reason: describe(&e, &format!("get nodes/{node}")),
        })?;
        let uid = n.metadata.uid.unwrap_or_default();
        let owner = node_owner(node, &uid);
        let api: Api<ResourceSlice> = Api::all(client.clone());
        let lp =
            ListParams::default().fields(&format!("spec.nodeName={node},spec.driver={driver}"));
        let existing = api.list(&lp).await.map_err(|e| SliceError::List {
            node: node.into(),
            driver: driver.into(),
            reason: describe(&e, "list resourceslices"),
        })?;
        // The field selector is the server's; keep only exact matches in
        // case a server ignores it.
        let mine: Vec<ResourceSlice> = existing
            .items
            .into_iter()
            .filter(|s| s.spec.node_name.as_deref() == Some(node) && s.spec.driver == driver)
            .collect();
        let adopted = adopt(&mine, &owner);
        Ok(Self {
            api,
            client,
            request: kube::core::Request::new(ResourceSlice::url_path(&(), None)),
            driver: driver.into(),
            node: node.into(),
            owner,
            generation: adopted.generation,
            current: adopted.devices,
            names: adopted.names,
        })
    }

    /// The pool generation last published or adopted.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Publishes `devices`: nothing when they equal what the server has;
    /// otherwise the next pool generation, one write per slice, and the
    /// deletion of slices no longer needed.
    pub async fn publish(&mut self, devices: &NodeDevices) -> Result<Published, SliceError> {
        if devices.driver != self.driver || devices.node != self.node {
            return Err(SliceError::WrongPool {
                driver: self.driver.clone(),
                node: self.node.clone(),
                got_driver: devices.driver.clone(),
                got_node: devices.node.clone(),
            });
        }
        check(devices)?;
        let surplus_only = self.current.as_deref() == Some(&devices.devices[..]);
        let wanted = slice_names(devices);
        if surplus_only && self.names == wanted {
            return Ok(Published {
                generation: self.generation,
                written: 0,
                deleted: 0,
            });
        }
        let mut written = 0;
        if !surplus_only {
            self.current = None;
            self.generation += 1;
            let pp = PatchParams::apply(FIELD_MANAGER).force();
            for body in bodies(devices, self.generation, &self.owner) {
                let name = body.name();
                let write = |e: kube::Error| SliceError::Write {
                    name: name.into(),
                    reason: describe(&e, &format!("apply resourceslices/{name}")),
                };
                let req = self
                    .request
                    .patch(name, &pp, &Patch::Apply(&body))
                    .map_err(|e| write(kube::Error::BuildRequest(e)))?;
                self.client.request_text(req).await.map_err(write)?;
                self.names.insert(name.to_string());
                written += 1;
            }
            // The pool is complete on the server now; a failed deletion
            // below only leaves surplus slices for the next publish.
            self.current = Some(devices.devices.clone());
        }
        let surplus: Vec<String> = self.names.difference(&wanted).cloned().collect();
        for name in &surplus {
            self.delete(name).await?;
        }
        Ok(Published {
            generation: self.generation,
            written,
            deleted: surplus.len(),
        })
    }

    async fn delete(&mut self, name: &str) -> Result<(), SliceError> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            // Already gone (the Node's garbage collector, an operator).
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(SliceError::Delete {
                    name: name.into(),
                    reason: describe(&e, &format!("delete resourceslices/{name}")),
                });
            }
        }
        self.names.remove(name);
        Ok(())
    }

    /// Deletes every slice of this pool (on shutdown, when asked to);
    /// returns how many it deleted.
    pub async fn delete_all(&mut self) -> Result<usize, SliceError> {
        let names: Vec<String> = self.names.iter().cloned().collect();
        for name in &names {
            self.delete(name).await?;
        }
        self.current = None;
        Ok(names.len())
    }
}
