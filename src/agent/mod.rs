//! The node agent: serves every pool as a kubelet device plugin and keeps
//! them current as sysfs and the config change.

pub mod allocate;
pub mod preferred;
#[cfg(test)]
mod test_pool;
