//! pci.ids names, bundled by build.rs as relocation-free bytes: one text of
//! names and two tables of fixed-size records sorted by id, searched by
//! bisection. Nothing here is touched until a name is looked up, so a
//! process that never asks (every CNI call) pays nothing for it.

const NAMES: &str = include_str!(concat!(env!("OUT_DIR"), "/pci_names.txt"));
/// `vendor u16, offset u32, len u16`, little-endian.
const VENDORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pci_vendors.bin"));
/// `vendor u16, device u16, offset u32, len u16, pad u16`, little-endian.
const DEVICES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pci_devices.bin"));
const VENDOR_RECORD: usize = 8;
const DEVICE_RECORD: usize = 12;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The name at `offset`/`len` of [`NAMES`]; `None` if the table is corrupt
/// (out of range or not on a character boundary), which build.rs never
/// writes.
fn name(offset: u32, len: u16) -> Option<&'static str> {
    let start = usize::try_from(offset).ok()?;
    NAMES.get(start..start.checked_add(usize::from(len))?)
}

/// Bisects `table` of `size`-byte records for the one whose leading
/// bytes, read by `key`, equal `want`.
fn find<K: Ord>(
    table: &'static [u8],
    size: usize,
    want: K,
    key: impl Fn(&[u8]) -> K,
) -> Option<&'static [u8]> {
    let (mut lo, mut hi) = (0, table.len() / size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let rec = &table[mid * size..(mid + 1) * size];
        match key(rec).cmp(&want) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(rec),
        }
    }
    None
}

/// The vendor's name.
pub fn vendor(vendor: u16) -> Option<&'static str> {
    let rec = find(VENDORS, VENDOR_RECORD, vendor, |r| u16_at(r, 0))?;
    name(u32_at(rec, 2), u16_at(rec, 6))
}

/// The device's name.
pub fn device(vendor: u16, device: u16) -> Option<&'static str> {
    let rec = find(DEVICES, DEVICE_RECORD, (vendor, device), |r| {
        (u16_at(r, 0), u16_at(r, 2))
    })?;
    name(u32_at(rec, 4), u16_at(rec, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_have_their_pci_ids_names() {
        assert_eq!(vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(vendor(0x15b3), Some("Mellanox Technologies"));
        let e810 = device(0x8086, 0x1592).unwrap();
        assert!(e810.contains("E810"), "{e810}");
        let igbvf = device(0x8086, 0x10ca).unwrap();
        assert!(igbvf.contains("82576"), "{igbvf}");
    }

    #[test]
    fn unknown_ids_have_no_name() {
        assert_eq!(vendor(0x0002), None);
        assert_eq!(device(0x8086, 0xfffe), None);
        assert_eq!(device(0x0002, 0x1592), None);
    }

    #[test]
    fn the_tables_are_whole_sorted_records() {
        assert_eq!(VENDORS.len() % VENDOR_RECORD, 0);
        assert_eq!(DEVICES.len() % DEVICE_RECORD, 0);
        assert!(DEVICES.len() / DEVICE_RECORD > 1000);
        let ids: Vec<(u16, u16)> = DEVICES
            .chunks(DEVICE_RECORD)
            .map(|r| (u16_at(r, 0), u16_at(r, 2)))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // Every record names a slice of the text.
        for r in DEVICES.chunks(DEVICE_RECORD) {
            assert!(name(u32_at(r, 4), u16_at(r, 8)).is_some());
        }
    }
}
