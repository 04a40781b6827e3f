//! The VFIO ioctls a DPDK application issues before it maps a device:
//! container and group file descriptors, the type1 IOMMU, the device fd.
//! Request numbers and structs follow `include/uapi/linux/vfio.h`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use fastpath::pci::PciAddress;

/// The API version every kernel since 3.6 reports (`VFIO_API_VERSION`).
pub const API_VERSION: i32 = 0;
/// `VFIO_TYPE1_IOMMU`: the x86 IOMMU backend DPDK uses.
pub const TYPE1_IOMMU: libc::c_ulong = 1;

const GROUP_FLAGS_VIABLE: u32 = 1 << 0;
const GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;
const DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// `_IO(VFIO_TYPE, VFIO_BASE + n)`: VFIO requests carry no size or direction
/// bits; the argument is passed as a plain pointer or integer.
const fn request(n: libc::c_ulong) -> libc::c_ulong {
    const VFIO_TYPE: libc::c_ulong = b';' as libc::c_ulong;
    const VFIO_BASE: libc::c_ulong = 100;
    (VFIO_TYPE << 8) | (VFIO_BASE + n)
}

const GET_API_VERSION: libc::c_ulong = request(0);
const CHECK_EXTENSION: libc::c_ulong = request(1);
const SET_IOMMU: libc::c_ulong = request(2);
const GROUP_GET_STATUS: libc::c_ulong = request(3);
const GROUP_SET_CONTAINER: libc::c_ulong = request(4);
const GROUP_GET_DEVICE_FD: libc::c_ulong = request(6);
const DEVICE_GET_INFO: libc::c_ulong = request(7);

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

/// `struct vfio_device_info` (without the capability chain).
#[repr(C)]
#[derive(Debug, Default)]
struct DeviceInfo {
    argsz: u32,
    flags: u32,
    num_regions: u32,
    num_irqs: u32,
    cap_offset: u32,
    pad: u32,
}

/// What failed, with the path of the file descriptor involved.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// A character device could not be opened read-write.
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An ioctl returned an error.
    #[error("{ioctl} on {path}")]
    Ioctl {
        ioctl: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The container speaks another VFIO API.
    #[error("{path}: VFIO_GET_API_VERSION returned {found}, expected {API_VERSION}")]
    ApiVersion { path: PathBuf, found: i32 },
    /// The kernel has no type1 IOMMU backend.
    #[error("{path}: VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU) says unsupported")]
    NoType1 { path: PathBuf },
    /// Some device of the group is bound to a non-VFIO driver.
    #[error(
        "{path}: VFIO_GROUP_GET_STATUS flags {flags:#x}: group not viable (every device in it must be bound to vfio-pci)"
    )]
    GroupNotViable { path: PathBuf, flags: u32 },
    /// The device fd does not describe a PCI device.
    #[error(
        "{path}: VFIO_DEVICE_GET_INFO for {device}: flags {flags:#x} lack VFIO_DEVICE_FLAGS_PCI"
    )]
    NotPci {
        path: PathBuf,
        device: String,
        flags: u32,
    },
}

/// An open file with the path it came from, for error messages.
#[derive(Debug)]
pub struct Fd {
    file: File,
    path: PathBuf,
}

impl Fd {
    /// Opens a VFIO character device read-write, as DPDK does.
    pub fn open(path: &Path) -> Result<Self, VfioError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| VfioError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The path this descriptor was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Issues `req` with an integer or pointer argument; returns the
    /// non-negative result or the errno as a `VfioError::Ioctl`.
    ///
    /// # Safety
    /// `arg` must be what the kernel expects for `req`: an integer, or a
    /// pointer to a live, correctly sized and aligned object.
    unsafe fn ioctl(
        &self,
        name: &'static str,
        req: libc::c_ulong,
        arg: libc::c_ulong,
    ) -> Result<i32, VfioError> {
        // SAFETY: the fd is open for the lifetime of `self`; the caller
        // guarantees `arg` matches `req`.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), req, arg) };
        if rc < 0 {
            return Err(VfioError::Ioctl {
                ioctl: name,
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(rc)
    }
}

/// `/dev/vfio/vfio`: checks the API version and type1 support.
pub fn check_container(container: &Fd) -> Result<(), VfioError> {
    // SAFETY: VFIO_GET_API_VERSION takes no argument.
    let version = unsafe { container.ioctl("VFIO_GET_API_VERSION", GET_API_VERSION, 0)? };
    if version != API_VERSION {
        return Err(VfioError::ApiVersion {
            path: container.path.clone(),
            found: version,
        });
    }
    // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
    let type1 = unsafe { container.ioctl("VFIO_CHECK_EXTENSION", CHECK_EXTENSION, TYPE1_IOMMU)? };
    if type1 <= 0 {
        return Err(VfioError::NoType1 {
            path: container.path.clone(),
        });
    }
    Ok(())
}

/// `VFIO_GROUP_GET_STATUS`: fails unless the group is viable; returns flags.
pub fn group_status(group: &Fd) -> Result<u32, VfioError> {
    let mut status = GroupStatus {
        argsz: size_of::<GroupStatus>() as u32,
        flags: 0,
    };
    // SAFETY: the argument points to a live `vfio_group_status` whose argsz
    // says its size; the kernel writes only within it.
    unsafe {
        group.ioctl(
            "VFIO_GROUP_GET_STATUS",
            GROUP_GET_STATUS,
            &raw mut status as libc::c_ulong,
        )?
    };
    if status.flags & GROUP_FLAGS_VIABLE == 0 {
        return Err(VfioError::GroupNotViable {
            path: group.path.clone(),
            flags: status.flags,
        });
    }
    Ok(status.flags)
}

/// Whether `flags` from `group_status` say a container is set.
pub fn container_set(flags: u32) -> bool {
    flags & GROUP_FLAGS_CONTAINER_SET != 0
}

/// `VFIO_GROUP_SET_CONTAINER` then `VFIO_SET_IOMMU(TYPE1)` on the container
/// (the IOMMU type can only be set once a group is attached).
pub fn attach(group: &Fd, container: &Fd) -> Result<(), VfioError> {
    let container_fd: libc::c_int = container.file.as_raw_fd();
    // SAFETY: the argument points to a live c_int holding an open fd.
    unsafe {
        group.ioctl(
            "VFIO_GROUP_SET_CONTAINER",
            GROUP_SET_CONTAINER,
            &raw const container_fd as libc::c_ulong,
        )?
    };
    // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
    unsafe { container.ioctl("VFIO_SET_IOMMU", SET_IOMMU, TYPE1_IOMMU)? };
    Ok(())
}

/// The device fd and what `VFIO_DEVICE_GET_INFO` says about it.
#[derive(Debug)]
pub struct Device {
    /// The device file descriptor (closed on drop).
    pub fd: OwnedFd,
    /// Number of regions (BARs, ROM, config space) the device exposes.
    pub num_regions: u32,
    /// Number of interrupt types (INTx, MSI, MSI-X, ...).
    pub num_irqs: u32,
}

/// `VFIO_GROUP_GET_DEVICE_FD` for `device` (a PCI address) and
/// `VFIO_DEVICE_GET_INFO` on the result, which must be a PCI device.
pub fn open_device(group: &Fd, device: PciAddress) -> Result<Device, VfioError> {
    let device = device.to_string();
    let name = CString::new(device.as_str()).map_err(|e| VfioError::Ioctl {
        ioctl: "VFIO_GROUP_GET_DEVICE_FD",
        path: group.path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: the argument points to a NUL-terminated string that outlives
    // the call.
    let raw = unsafe {
        group.ioctl(
            "VFIO_GROUP_GET_DEVICE_FD",
            GROUP_GET_DEVICE_FD,
            name.as_ptr() as libc::c_ulong,
        )?
    };
    // SAFETY: a successful VFIO_GROUP_GET_DEVICE_FD returns a new fd that
    // nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let dev = Fd {
        file: File::from(fd),
        path: group.path.join(&device),
    };
    let mut info = DeviceInfo {
        argsz: size_of::<DeviceInfo>() as u32,
        ..DeviceInfo::default()
    };
    // SAFETY: the argument points to a live `vfio_device_info` whose argsz
    // says its size; the kernel writes only within it.
    unsafe {
        dev.ioctl(
            "VFIO_DEVICE_GET_INFO",
            DEVICE_GET_INFO,
            &raw mut info as libc::c_ulong,
        )?
    };
    if info.flags & DEVICE_FLAGS_PCI == 0 {
        return Err(VfioError::NotPci {
            path: group.path.clone(),
            device,
            flags: info.flags,
        });
    }
    Ok(Device {
        fd: dev.file.into(),
        num_regions: info.num_regions,
        num_irqs: info.num_irqs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_linux_uapi() {
        // Values of the macros in include/uapi/linux/vfio.h on x86_64.
        let table = [
            (GET_API_VERSION, 0x3b64),
            (CHECK_EXTENSION, 0x3b65),
            (SET_IOMMU, 0x3b66),
            (GROUP_GET_STATUS, 0x3b67),
            (GROUP_SET_CONTAINER, 0x3b68),
            (GROUP_GET_DEVICE_FD, 0x3b6a),
            (DEVICE_GET_INFO, 0x3b6b),
        ];
        for (got, want) in table {
            assert_eq!(got, want, "{got:#x} != {want:#x}");
        }
    }

    #[test]
    fn structs_have_the_kernel_sizes() {
        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(size_of::<DeviceInfo>(), 24);
    }

    #[test]
    fn open_names_the_missing_path() {
        let err = Fd::open(Path::new("/nonexistent/vfio/42")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vfio/42"), "{err}");
    }
}
