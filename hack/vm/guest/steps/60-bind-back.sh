# Gives the two vfio-pci VFs back to igbvf (same sequence): the netdevs come
# back and the group devices go away. Nothing is lost either way.
. /fastpath-vm/lib.sh

explain "And back: vfio-pci releases the VF, igbvf takes it, the netdev returns."

for i in 2 3; do
    addr=$(state_get "pf2_vf$i")
    group=$(state_get "pf2_vf${i}_group")
    bind_driver "$addr" igbvf
    has_netdev() { [ -n "$(vf_netdev "$1")" ]; }
    wait_for "netdev of $addr back on igbvf" 10 has_netdev "$addr"
    wait_for "/dev/vfio/$group to go away" 10 test ! -e "/dev/vfio/$group"
    state_set "pf2_vf${i}_if" "$(vf_netdev "$addr")"
done
fp_list
assert_eq "VFs on igbvf" 8 "$(jqr '[.pfs[].vfs[] | select(.driver == "igbvf" and .netdev != null)] | length')"
say "all 8 VFs back on igbvf with netdevs"
