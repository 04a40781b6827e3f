//! `vfio-check <PCI>`: what a DPDK application does with the devices the
//! device plugin hands to its container: open `/dev/vfio/vfio` and
//! `/dev/vfio/<group>`, check the API and type1 IOMMU, attach the group to
//! the container, and get the VF's device fd. Prints one line per check;
//! exits non-zero naming the path and ioctl that failed.

mod vfio;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fastpath::pci::PciAddress;
use fastpath::sysfs::Sysfs;

use crate::vfio::Fd;

/// Checks that a vfio-pci bound VF is usable from user space.
#[derive(Debug, Parser)]
#[command(name = "vfio-check", version, about)]
struct Args {
    /// The VF's PCI address (`0000:00:03.1`).
    device: PciAddress,
    /// The VFIO container device (the device plugin's `mount`).
    #[arg(long, default_value = "/dev/vfio/vfio")]
    container: PathBuf,
    /// The group device (the device plugin's `dev-mount`); by default
    /// `/dev/vfio/<n>` with `n` from the device's `iommu_group` link.
    #[arg(long)]
    group: Option<PathBuf>,
    /// Where sysfs is mounted, to find the IOMMU group.
    #[arg(long, env = "FASTPATH_SYSFS_ROOT", default_value = "/sys")]
    sysfs_root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfio-check: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let group_path = match &args.group {
        Some(path) => path.clone(),
        None => {
            let sysfs = Sysfs::new(&args.sysfs_root);
            let group = sysfs
                .pci_device(args.device)
                .iommu_group()
                .with_context(|| format!("reading the IOMMU group of {}", args.device))?
                .with_context(|| format!("{} has no IOMMU group", args.device))?;
            PathBuf::from(format!("/dev/vfio/{group}"))
        }
    };

    let container = Fd::open(&args.container)?;
    vfio::check_container(&container)?;
    println!(
        "ok {}: VFIO_GET_API_VERSION {}, VFIO_CHECK_EXTENSION(TYPE1) supported",
        container.path().display(),
        vfio::API_VERSION
    );

    let group = Fd::open(&group_path)?;
    let flags = vfio::group_status(&group)?;
    if vfio::container_set(flags) {
        anyhow::bail!(
            "{}: group already attached to a container (another process holds it)",
            group_path.display()
        );
    }
    println!(
        "ok {}: VFIO_GROUP_GET_STATUS viable",
        group.path().display()
    );

    vfio::attach(&group, &container)?;
    let flags = vfio::group_status(&group)?;
    if !vfio::container_set(flags) {
        anyhow::bail!(
            "{}: VFIO_GROUP_GET_STATUS flags {flags:#x} lack CONTAINER_SET after VFIO_GROUP_SET_CONTAINER",
            group_path.display()
        );
    }
    println!("ok VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU(TYPE1)");

    let device = vfio::open_device(&group, args.device)?;
    println!(
        "ok VFIO_GROUP_GET_DEVICE_FD {}: fd {}, PCI device, {} regions, {} irq types",
        args.device,
        device.fd.as_raw_fd(),
        device.num_regions,
        device.num_irqs
    );
    Ok(())
}
