# Loads the kernel modules the scenario needs (igb, igbvf, vfio-pci,
# vfio_iommu_type1, veth and their dependencies, in dependency order) and
# checks the IOMMU is on: without it there are no IOMMU groups and no VFIO.
# demo: yes
. /fastpath-vm/lib.sh

explain "QEMU emulates two Intel 82576 (igb) NICs with SR-IOV behind an emulated Intel IOMMU."
while read -r ko; do
    name=$(basename "$ko" .ko | tr - _)
    [ -d "/sys/module/$name" ] && continue
    run insmod "$ko"
done </etc/fastpath-vm-modules
for m in igb igbvf vfio vfio_pci vfio_iommu_type1 veth; do
    assert_exists "/sys/module/$m"
done
assert_exists /dev/vfio/vfio
groups=$(ls /sys/kernel/iommu_groups | wc -l)
[ "$groups" -gt 0 ] || fail "no IOMMU groups: is intel_iommu=on on the kernel command line?"
say "modules loaded; IOMMU on with $groups groups"
