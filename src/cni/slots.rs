//! A record file of two fixed slots, overwritten in place: the storage
//! under [`super::records`]. Each write goes to the slot that does not
//! hold the newest valid record, with a sequence number one higher and a
//! checksum over it, so a write torn by a power loss leaves the newest
//! earlier record readable. Once the file exists, a durable write is a
//! `pwrite` and an `fdatasync` of blocks already allocated: no metadata
//! changes, so on ext4 no journal commit, no rename and no directory
//! fsync (docs/PERFORMANCE.md, "CNI ADD/DEL").
//!
//! Layout: the file is two slots of `len / 2` bytes. A slot starts with a
//! 24-byte header: magic `FPREC\0\0\x01`, sequence (u64 LE), payload
//! length (u32 LE), CRC-32 (IEEE, u32 LE) of the sequence, the length
//! and the payload; the payload follows. Length 0 is a tombstone (no
//! record). A slot whose magic or checksum does not match is ignored.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"FPREC\0\0\x01";
/// Header bytes before a slot's payload.
pub const HEADER: usize = 24;
/// The smallest slot; a file is made larger only for a bigger record.
pub const MIN_SLOT: usize = 16 * 1024;

/// The newest valid slot of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// Which slot (0 or 1).
    pub index: usize,
    /// Its sequence number.
    pub seq: u64,
    /// Its payload; empty for a tombstone.
    pub payload: Vec<u8>,
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC: [u32; 256] = crc_table();

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        for &b in *p {
            c = CRC[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

/// A slot's bytes: header and payload, not padded.
pub fn encode(seq: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let (s, l) = (seq.to_le_bytes(), len.to_le_bytes());
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&s);
    out.extend_from_slice(&l);
    out.extend_from_slice(&crc32(&[&s, &l, payload]).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A slot header's sequence number, payload length and checksum, if its
/// magic holds and the payload fits a slot of `slot` bytes.
fn header(h: &[u8; HEADER], slot: usize) -> Option<(u64, usize, u32)> {
    if &h[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(h[20..24].try_into().ok()?);
    (HEADER.checked_add(len)? <= slot).then_some((seq, len, crc))
}

/// The newest valid slot of a file of `len` bytes read through `read_at`
/// (offset, buffer to fill): both headers, then the payload of the
/// highest sequence number whose checksum holds, so an empty slot file
/// costs two small reads. `None` when neither slot is valid.
fn newest_in(
    len: usize,
    read_at: impl Fn(usize, &mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<Option<Newest>> {
    let half = len / 2;
    if half < HEADER {
        return Ok(None);
    }
    let mut found = Vec::with_capacity(2);
    for index in 0..2 {
        let mut h = [0u8; HEADER];
        read_at(index * half, &mut h)?;
        if let Some((seq, len, crc)) = header(&h, half) {
            found.push((seq, index, len, crc, h));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (seq, index, len, crc, h) in found {
        let mut payload = vec![0u8; len];
        read_at(index * half + HEADER, &mut payload)?;
        if crc32(&[&h[8..16], &h[16..20], &payload]) == crc {
            return Ok(Some(Newest {
                index,
                seq,
                payload,
            }));
        }
    }
    Ok(None)
}

/// The newest valid slot of an open slot file.
pub fn newest_of(file: &File) -> std::io::Result<Option<Newest>> {
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    newest_in(len, |off, buf| file.read_exact_at(buf, off as u64))
}

/// The slot size a payload needs: [`MIN_SLOT`], or the next power of two.
pub fn slot_size_for(payload: usize) -> usize {
    (HEADER + payload).next_power_of_two().max(MIN_SLOT)
}

/// An open slot file and what its slots hold.
pub struct SlotFile {
    file: File,
    slot: usize,
    newest: Option<Newest>,
}

impl SlotFile {
    /// Opens and reads `path`; `None` if it does not exist.
    pub fn open(path: &Path) -> std::io::Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let slot = usize::try_from(file.metadata()?.len()).unwrap_or(0) / 2;
        let newest = newest_of(&file)?;
        Ok(Some(Self { file, slot, newest }))
    }

    /// The newest valid slot.
    pub fn newest(&self) -> Option<&Newest> {
        self.newest.as_ref()
    }

    /// Whether a payload this long fits a slot of this file.
    pub fn fits(&self, payload: usize) -> bool {
        HEADER + payload <= self.slot
    }

    /// Writes `payload` (empty: a tombstone) into the slot that does not
    /// hold the newest valid record, one sequence number higher; with
    /// `sync`, `fdatasync` before returning. The caller holds the VF's
    /// lock and has checked [`Self::fits`].
    pub fn write(&mut self, payload: &[u8], sync: bool) -> std::io::Result<()> {
        let (index, seq) = match &self.newest {
            Some(n) => (1 - n.index, n.seq + 1),
            None => (0, 1),
        };
        let bytes = encode(seq, payload);
        self.file.write_all_at(&bytes, (index * self.slot) as u64)?;
        if sync {
            crate::fault::crash_point("cni.add.before.record_sync");
            self.file.sync_data()?;
        }
        self.newest = Some(Newest {
            index,
            seq,
            payload: payload.to_vec(),
        });
        Ok(())
    }
}

/// The bytes of a new slot file holding `payload` in slot 0 with
/// sequence `seq`, slot 1 empty (zeros).
pub fn new_file_image(seq: u64, payload: &[u8]) -> Vec<u8> {
    let slot = slot_size_for(payload.len());
    let mut img = encode(seq, payload);
    img.resize(2 * slot, 0);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest valid slot of a file image, read as [`newest_of`] reads
    /// a file.
    fn newest(bytes: &[u8]) -> Option<Newest> {
        newest_in(bytes.len(), |off, buf| {
            let src = bytes
                .get(off..off + buf.len())
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        })
        .ok()
        .flatten()
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    /// A file image with `a` in slot 0 and `b` in slot 1 (encoded slots).
    fn image(slot: usize, a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 2 * slot];
        img[..a.len()].copy_from_slice(a);
        img[slot..slot + b.len()].copy_from_slice(b);
        img
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_tombstone_is_empty() {
        let slot = 256;
        let img = image(slot, &encode(7, b"old"), &encode(8, b"new"));
        assert_eq!(newest(&img).unwrap().payload, b"new");
        let img = image(slot, &encode(9, b""), &encode(8, b"new"));
        let n = newest(&img).unwrap();
        assert_eq!((n.index, n.seq, n.payload.len()), (0, 9, 0));
        assert_eq!(newest(&vec![0u8; 2 * slot]), None);
        assert_eq!(newest(&[]), None);
    }

    /// The power-loss matrix of one slot write: the new slot's bytes
    /// reach the disk only in part, as a prefix (cut at every byte), as a
    /// suffix (the sectors written out of order) or with one byte flipped.
    /// Every outcome reads as the old record or the new one, never as
    /// nothing and never as a mix.
    #[test]
    fn a_torn_write_leaves_the_old_record_or_the_new_one() {
        let slot = 512;
        let old = encode(41, b"{\"phase\":\"attached\",\"pci\":\"old\"}");
        let new = encode(42, b"{\"phase\":\"adding\",\"pci\":\"new\"}");
        let stale = encode(40, b"{\"stale\":true}");
        // The new record goes to slot 1, where an older one (or zeros) was.
        for before in [vec![], stale.clone()] {
            for cut in 0..=new.len() {
                for torn in [[&new[..cut], before.get(cut..).unwrap_or(&[])].concat(), {
                    let mut v = before.clone();
                    v.resize(new.len(), 0);
                    v[cut..].copy_from_slice(&new[cut..]);
                    v
                }] {
                    let img = image(slot, &old, &torn);
                    let got = newest(&img).unwrap();
                    let whole = torn.get(..new.len()) == Some(&new[..]);
                    let want: &[u8] = if whole {
                        &new[HEADER..]
                    } else {
                        &old[HEADER..]
                    };
                    assert_eq!(got.payload, want, "cut at {cut}");
                }
            }
            for i in 0..new.len() {
                let mut bad = new.clone();
                bad[i] ^= 0x20;
                let img = image(slot, &old, &bad);
                assert_eq!(newest(&img).unwrap().payload, &old[HEADER..], "byte {i}");
            }
        }
    }

    #[test]
    fn writes_alternate_slots_and_never_touch_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rec");
        std::fs::write(&path, new_file_image(1, b"first")).unwrap();
        let mut f = SlotFile::open(&path).unwrap().unwrap();
        assert_eq!(f.newest().unwrap().payload, b"first");
        for (i, p) in [&b"second"[..], b"", b"fourth"].iter().enumerate() {
            let before = std::fs::read(&path).unwrap();
            let kept = f.newest().unwrap().index;
            f.write(p, i == 0).unwrap();
            let after = std::fs::read(&path).unwrap();
            let half = after.len() / 2;
            assert_eq!(
                before[kept * half..(kept + 1) * half],
                after[kept * half..(kept + 1) * half],
                "the newest slot is left alone"
            );
            let again = SlotFile::open(&path).unwrap().unwrap();
            assert_eq!(again.newest().unwrap().payload, *p);
            assert_eq!(again.newest().unwrap().seq, i as u64 + 2);
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * MIN_SLOT as u64);
        assert!(f.fits(MIN_SLOT - HEADER) && !f.fits(MIN_SLOT - HEADER + 1));
        assert_eq!(slot_size_for(MIN_SLOT), 2 * MIN_SLOT);
    }
}
