//! The compact binary file, little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `PASASEQ\0` |
//! | 4 | version (u32) = [`VERSION`] |
//! | 4 | reserved (u32) = 0, keeps the counts 8-byte aligned |
//! | 3 × 8 | num_users, num_items, num_interactions (u64) |
//! | 4 × (num_users + 1) | offsets (u32) |
//! | 4 × num_interactions | items (u32, 1..=num_items) |
//! | 0 or 4 | zero padding to a multiple of 8 |
//! | 8 × num_users | original user ids (u64) |
//! | 8 × num_items | original item ids (u64) |
//!
//! Written to a temporary file in the same folder and renamed, so a reader never sees half a
//! file. Read through memmap2 and validated in full before anything is returned: the reserved
//! field and the padding are zero, offsets strictly increase (no user without items), original
//! user ids and item ids are distinct. The writer refuses sequences that break these too.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::escape::hex_head;
use super::Sequences;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"PASASEQ\0";
pub const VERSION: u32 = 1;
const HEADER: usize = 40;

/// Byte length of a file with these counts, or `None` if it overflows.
fn file_len(users: u64, items: u64, inter: u64) -> Option<u64> {
    let ints = users.checked_add(1)?.checked_add(inter)?.checked_mul(4)?;
    let padded = ints.checked_add(7)? & !7;
    let ids = users.checked_add(items)?.checked_mul(8)?;
    (HEADER as u64).checked_add(padded)?.checked_add(ids)
}

/// Writes `seqs` to `path` atomically (temp file in the same folder, then rename).
pub fn write_binary(seqs: &Sequences, path: &Path) -> Result<()> {
    seqs.validate()
        .map_err(|m| Error::in_file(path, format!("refusing to write invalid sequences: {m}")))?;
    if seqs.num_interactions() > u32::MAX as usize || seqs.num_items > u32::MAX as usize {
        return Err(Error::in_file(
            path,
            "too many interactions or items for u32 offsets and ids",
        ));
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::in_file(path, "not a file name"))?;
    // Unique per process and call, so concurrent writers never share a temp file.
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_to(seqs, &tmp).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

fn write_to(seqs: &Sequences, tmp: &Path) -> std::io::Result<()> {
    let file = File::create(tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, &file);
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&0u32.to_le_bytes())?;
    for n in [seqs.num_users(), seqs.num_items, seqs.num_interactions()] {
        w.write_all(&(n as u64).to_le_bytes())?;
    }
    for &o in &seqs.offsets {
        w.write_all(&(o as u32).to_le_bytes())?;
    }
    for &i in &seqs.items {
        w.write_all(&i.to_le_bytes())?;
    }
    if (seqs.offsets.len() + seqs.items.len()) % 2 == 1 {
        w.write_all(&[0; 4])?;
    }
    for &id in seqs.user_ids.iter().chain(&seqs.item_ids) {
        w.write_all(&id.to_le_bytes())?;
    }
    w.flush()?;
    drop(w);
    file.sync_all()
}

fn u32s(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
}

fn u64s(b: &[u8]) -> impl Iterator<Item = u64> + '_ {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
}

/// Reads and validates a binary file written by [`write_binary`]: besides the layout, the
/// reserved field and the padding must be zero and the sequences must pass
/// [`Sequences::validate`] (no user without items, no original id twice).
pub fn read_binary(path: &Path) -> Result<Sequences> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::in_file(path, "is a directory, expected a data file"));
    }
    let corrupt = |m: String| Error::in_file(path, format!("corrupt binary file: {m}"));
    let truncated_header = || {
        corrupt(format!(
            "truncated: {} bytes, shorter than the {HEADER}-byte header",
            meta.len()
        ))
    };
    if meta.len() < MAGIC.len() as u64 {
        return Err(truncated_header());
    }
    // SAFETY: the map is read-only and copied out before return; the file is not expected to
    // change while it is read (a concurrent writer would rename a new file over it instead).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let b: &[u8] = &map;
    if &b[..8] != MAGIC {
        return Err(Error::in_file(
            path,
            format!(
                "not a pasa binary file (its first 8 bytes are {}, expected the magic \
                 PASASEQ\\0)",
                hex_head(b)
            ),
        ));
    }
    if b.len() < HEADER {
        return Err(truncated_header());
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(Error::in_file(
            path,
            format!("unsupported binary version {version} (this build reads {VERSION})"),
        ));
    }
    let reserved = u32::from_le_bytes(b[12..16].try_into().unwrap());
    if reserved != 0 {
        return Err(corrupt(format!(
            "the reserved header field (bytes 12..16) is {reserved}, expected 0"
        )));
    }
    let mut counts = u64s(&b[16..40]);
    let (users, items, inter) = (
        counts.next().unwrap(),
        counts.next().unwrap(),
        counts.next().unwrap(),
    );
    if items > u32::MAX as u64 || inter > u32::MAX as u64 {
        return Err(corrupt(format!(
            "{items} items / {inter} interactions exceed u32"
        )));
    }
    let expected = file_len(users, items, inter)
        .ok_or_else(|| corrupt(format!("impossible counts {users}/{items}/{inter}")))?;
    if (b.len() as u64) < expected {
        return Err(corrupt(format!(
            "truncated: {} bytes, the header announces {expected}",
            b.len()
        )));
    }
    if b.len() as u64 > expected {
        return Err(corrupt(format!(
            "{} trailing bytes after the announced {expected}",
            b.len() as u64 - expected
        )));
    }
    let (users, items, inter) = (users as usize, items as usize, inter as usize);
    let off_end = HEADER + 4 * (users + 1);
    let items_end = off_end + 4 * inter;
    let ids_start = HEADER + (4 * (users + 1 + inter)).next_multiple_of(8);
    if b[items_end..ids_start].iter().any(|&x| x != 0) {
        return Err(corrupt(format!(
            "the padding at bytes {items_end}..{ids_start} is not zero"
        )));
    }
    let seqs = Sequences {
        offsets: u32s(&b[HEADER..off_end]).map(|o| o as usize).collect(),
        items: u32s(&b[off_end..items_end]).collect(),
        num_items: items,
        user_ids: u64s(&b[ids_start..ids_start + 8 * users]).collect(),
        item_ids: u64s(&b[ids_start + 8 * users..]).collect(),
    };
    seqs.validate().map_err(corrupt)?;
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{temp_file, temp_path};

    fn sample() -> Sequences {
        let mut s = Sequences::from_lists(&[vec![1, 2, 3], vec![3], vec![2, 2]], 4);
        s.user_ids = vec![10, 20, 30];
        s.item_ids = vec![7, 8, 9, 1 << 40];
        s
    }

    #[test]
    fn round_trip() {
        for s in [sample(), Sequences::from_lists(&[vec![1, 2]], 2)] {
            let p = temp_path("rt.bin");
            write_binary(&s, &p).unwrap();
            assert_eq!(read_binary(&p).unwrap(), s);
            assert_eq!(std::fs::metadata(&p).unwrap().len() % 8, 0);
            std::fs::remove_file(&p).unwrap();
        }
    }

    fn bytes_of(s: &Sequences) -> Vec<u8> {
        let p = temp_path("src.bin");
        write_binary(s, &p).unwrap();
        let b = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        b
    }

    fn read_err(b: &[u8]) -> String {
        let p = temp_file("bad.bin", b);
        let e = read_binary(&p).unwrap_err().0;
        assert!(e.starts_with(&format!("{}: ", p.display())), "{e}");
        e
    }

    #[test]
    fn truncated_or_corrupt_files_are_clear_errors() {
        let good = bytes_of(&sample());
        assert!(read_err(&good[..20]).contains("truncated"));
        assert!(read_err(&good[..good.len() - 8]).contains("truncated"));
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(read_err(&long).contains("trailing"));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(read_err(&magic).ends_with(
            ": not a pasa binary file (its first 8 bytes are 58 41 53 41 53 45 51 00, expected \
             the magic PASASEQ\\0)"
        ));
        assert!(read_err(&good[..5]).contains("truncated: 5 bytes"));
        let mut version = good.clone();
        version[8] = 9;
        assert!(read_err(&version).contains("version 9"));
        let mut item = good.clone();
        item[HEADER + 4 * 4] = 5; // first item → 5 > num_items
        assert!(read_err(&item).contains("outside 1..=4"));
        let mut off = good.clone();
        off[HEADER + 4] = 5; // offsets 0, 5, 4, 6 decrease
        assert!(read_err(&off).contains("decrease"));
        let mut huge = good.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_err(&huge).contains("impossible"));
    }

    /// Byte offsets in the file of `sample()`: 3 users, 4 items, 6 interactions, no padding.
    const OFFSETS: usize = HEADER;
    const USER_IDS: usize = HEADER + 4 * (4 + 6);
    const ITEM_IDS: usize = USER_IDS + 8 * 3;

    fn patched(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes_of(&sample());
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn what_the_layout_allows_but_the_format_forbids_is_rejected() {
        let e = read_err(&patched(12, &7u32.to_le_bytes()));
        assert!(e.ends_with(
            ": corrupt binary file: the reserved header field (bytes 12..16) is 7, expected 0"
        ));
        // offsets 0, 3, 4, 6 → 0, 3, 3, 6: the user at index 1 has no items.
        let e = read_err(&patched(OFFSETS + 8, &3u32.to_le_bytes()));
        assert!(e.ends_with(
            ": corrupt binary file: user at index 1 (id 20) has no items (offsets 3, 3)"
        ));
        let e = read_err(&patched(USER_IDS + 8, &10u64.to_le_bytes()));
        assert!(e.ends_with(
            ": corrupt binary file: user id 10 appears twice, for the users at index 0 and 1"
        ));
        let e = read_err(&patched(ITEM_IDS + 24, &7u64.to_le_bytes()));
        assert!(
            e.ends_with(": corrupt binary file: item id 7 appears twice, for dense items 1 and 4")
        );
        // One user of 3 items: 2 offsets + 3 items, then 4 bytes of padding.
        let mut odd = bytes_of(&Sequences::from_lists(&[vec![1, 2, 3]], 3));
        let pad = HEADER + 4 * 5;
        odd[pad] = 1;
        let e = read_err(&odd);
        assert!(e.ends_with(&format!(
            "the padding at bytes {pad}..{} is not zero",
            pad + 4
        )));
    }

    #[test]
    fn invalid_sequences_are_not_written() {
        let refused = |f: &dyn Fn(&mut Sequences)| {
            let mut s = sample();
            f(&mut s);
            let p = temp_path("no.bin");
            let e = write_binary(&s, &p).unwrap_err().0;
            assert!(!p.exists());
            let start = format!("{}: refusing to write invalid sequences: ", p.display());
            assert!(e.starts_with(&start), "{e}");
            e[start.len()..].to_string()
        };
        assert!(refused(&|s| s.items[0] = 9).contains("outside"));
        assert_eq!(
            refused(&|s| s.offsets[1] = 0),
            "user at index 0 (id 10) has no items (offsets 0, 0)"
        );
        assert!(refused(&|s| s.user_ids[2] = 20).starts_with("user id 20 appears twice"));
        assert!(refused(&|s| s.item_ids[0] = 9).starts_with("item id 9 appears twice"));
    }
}
