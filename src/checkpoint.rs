//! Checkpoints: one safetensors file per checkpoint, written and read with the `safetensors`
//! crate, so Python's `safetensors` library reads it too.
//!
//! Everything a checkpoint is, is in that one file: the f32 tensors, and in the safetensors
//! `__metadata__` (string → string):
//! - `pasa`: a JSON object, the caller's metadata (configuration, epoch, optimiser and RNG
//!   state, …) plus `save_id`, unique per save;
//! - `pasa_crc32`: a CRC-32 (hex, the polynomial of Python's `zlib.crc32`) of the `pasa`
//!   string's bytes followed by, for each tensor in file order (by name), its name, a zero
//!   byte, its shape as little-endian u64s and its data; verified on load, so flipped bytes in
//!   the weights, the names, the shapes or the metadata are reported as damage instead of
//!   being trained on;
//! - `format`: `pt`, the convention of the safetensors writers.
//!
//! Crash safety: a save writes a temporary file in the same directory, syncs it and renames it
//! over its target: the rename is the commit, and the file is whole or absent. Stray temporary
//! files of a killed save ([`is_temp`]) are removed by whoever resumes the run.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The `__metadata__` key of the caller's JSON metadata.
const META_KEY: &str = "pasa";
/// The `__metadata__` key of the checksum.
const CRC_KEY: &str = "pasa_crc32";
/// The key of the save id inside the JSON metadata.
pub const SAVE_ID: &str = "save_id";
/// File name looked up when [`load`] is given a directory.
pub const BEST: &str = "best.safetensors";
/// The marker of a temporary file written by [`write_atomic`]: `.<name>.tmp-<pid>-<n>`.
const TEMP_MARK: &str = ".tmp-";

/// One tensor read back from a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes `tensors` (name, shape, row-major data) and `meta` (a JSON object) to `path` as one
/// safetensors file, atomically. Returns the save id stamped into the metadata.
pub fn save(path: &Path, tensors: &[(&str, &[usize], &[f32])], meta: &Value) -> Result<String> {
    let Value::Object(meta) = meta else {
        return Err(Error::in_file(
            path,
            "checkpoint metadata must be a JSON object",
        ));
    };
    let mut bytes_of = Vec::with_capacity(tensors.len());
    for &(name, shape, data) in tensors {
        if name.is_empty() || name == "__metadata__" {
            return Err(Error::in_file(
                path,
                format!("invalid tensor name {name:?}"),
            ));
        }
        let elems: usize = shape.iter().product();
        if elems != data.len() {
            return Err(Error::in_file(
                path,
                format!(
                    "tensor {name:?}: shape {shape:?} has {elems} elements but data has {}",
                    data.len()
                ),
            ));
        }
        bytes_of.push(le_bytes(data));
    }
    let mut views = HashMap::with_capacity(tensors.len());
    for (&(name, shape, _), bytes) in tensors.iter().zip(&bytes_of) {
        let view = TensorView::new(Dtype::F32, shape.to_vec(), bytes)
            .map_err(|e| Error::in_file(path, format!("tensor {name:?}: {e}")))?;
        if views.insert(name, view).is_some() {
            return Err(Error::in_file(
                path,
                format!("duplicate tensor name {name:?}"),
            ));
        }
    }

    let save_id = new_save_id();
    let mut meta = meta.clone();
    meta.insert(SAVE_ID.into(), Value::String(save_id.clone()));
    let meta_text = Value::Object(meta).to_string();
    // The writer orders tensors by name; the checksum covers the data in that file order.
    let mut sorted: Vec<(&str, &TensorView)> = views.iter().map(|(n, v)| (*n, v)).collect();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    let crc = checksum(&meta_text, &sorted);
    let header = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (META_KEY.to_string(), meta_text),
        (CRC_KEY.to_string(), crc),
    ]);
    let bytes = safetensors::serialize(views, Some(header))
        .map_err(|e| Error::in_file(path, format!("cannot encode the checkpoint: {e}")))?;
    write_atomic(path, &bytes)?;
    Ok(save_id)
}

/// The checksum of a checkpoint (module docs): metadata text, then each tensor's name, shape
/// and data, in the order given (the file's).
fn checksum(meta_text: &str, tensors: &[(&str, &TensorView)]) -> String {
    let mut crc = crc32fast::Hasher::new();
    crc.update(meta_text.as_bytes());
    for (name, view) in tensors {
        crc.update(name.as_bytes());
        crc.update(&[0]);
        for &d in view.shape() {
            crc.update(&(d as u64).to_le_bytes());
        }
        crc.update(view.data());
    }
    format!("{:08x}", crc.finalize())
}

/// The little-endian bytes of `data` (the safetensors byte order).
fn le_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads a checkpoint written by [`save`]: `path` is the `.safetensors` file or a directory
/// holding `best.safetensors`. Tensors come back in file order (by name); the metadata is the
/// JSON object [`save`] was given, plus its save id. Damage (a checksum that does not match, a
/// header that does not parse) is an error naming the file.
pub fn load(path: &Path) -> Result<(Vec<NamedTensor>, Value)> {
    let path = if path.is_dir() {
        path.join(BEST)
    } else {
        path.to_path_buf()
    };
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    parse(&bytes).map_err(|m| Error::in_file(&path, m))
}

/// Parses a whole checkpoint; errors are messages without the path.
fn parse(bytes: &[u8]) -> std::result::Result<(Vec<NamedTensor>, Value), String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a readable safetensors file ({e}); the file is damaged"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let extra = header.metadata().as_ref();
    let meta_text = extra.and_then(|m| m.get(META_KEY)).ok_or(
        "has no pasa metadata: not a pasa checkpoint (or one from before checkpoints were \
         one file)",
    )?;
    let want_crc = extra
        .and_then(|m| m.get(CRC_KEY))
        .ok_or("has no checksum (pasa_crc32) in its metadata: not a pasa checkpoint")?;

    let mut tensors: Vec<(&str, TensorView)> = st.iter().collect();
    tensors.sort_by_key(|(name, _)| *name);
    let refs: Vec<(&str, &TensorView)> = tensors.iter().map(|(n, v)| (*n, v)).collect();
    let got_crc = checksum(meta_text, &refs);
    if &got_crc != want_crc {
        return Err(format!(
            "checksum mismatch (stored {want_crc}, computed {got_crc}): the file is damaged; \
             restore it from a copy, or resume from another checkpoint"
        ));
    }

    let meta: Value = serde_json::from_str(meta_text)
        .map_err(|e| format!("its pasa metadata is not valid JSON: {e}"))?;
    if !meta.is_object() {
        return Err("its pasa metadata is not a JSON object".into());
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor {name:?}: dtype {:?} is not supported (only F32)",
                    view.dtype()
                ));
            }
            Ok(NamedTensor {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                data: view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4-byte chunks")))
                    .collect(),
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((tensors, meta))
}

/// A save id unique per save: time, process and a per-process counter, mixed.
fn new_save_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = crate::rng::derive(nanos ^ ((std::process::id() as u64) << 32), c);
    format!("{:016x}", crate::rng::derive(seed, 0x5A7E))
}

/// Whether `name` is a temporary file of [`write_atomic`] (left behind by a killed save).
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`:
/// the file is whole or absent, never half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::in_file(path, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}{TEMP_MARK}{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.flush().map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&dir);
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Persists renames and removals in `dir`; not every platform lets a directory be synced, so
/// best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads the JSON metadata of a checkpoint as a typed value, naming the file and the key.
pub fn meta_field<T: serde::de::DeserializeOwned>(
    path: &Path,
    meta: &Value,
    key: &str,
) -> Result<T> {
    let v = meta.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| {
        Error::in_file(
            path,
            format!("its metadata has no valid '{key}' ({e}): not a checkpoint of this pasa"),
        )
    })
}

/// The JSON metadata as a map (for building it up key by key).
pub fn meta_object(meta: &Value) -> Map<String, Value> {
    meta.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fresh, empty directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "pasa-ckpt-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    fn sample() -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let big: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        vec![
            ("a.bias".into(), vec![2], vec![f32::INFINITY, f32::MIN]),
            ("empty".into(), vec![0, 5], vec![]),
            ("item_emb.weight".into(), vec![4, 6], big),
            (
                "odd".into(),
                vec![3],
                vec![f32::NAN, -0.0, f32::from_bits(1)], // NaN, negative zero, subnormal
            ),
            ("scalar".into(), vec![], vec![2.5]),
        ]
    }

    fn save_sample(path: &Path, meta: &Value) -> String {
        let t = sample();
        let refs: Vec<(&str, &[usize], &[f32])> = t
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
            .collect();
        save(path, &refs, meta).unwrap()
    }

    fn meta() -> Value {
        json!({"epoch": 7, "config": {"model": "pasa", "dim": 64, "dropout": 0.2}})
    }

    /// Asserts that loading fails with one line naming `path`; returns the message.
    fn assert_err_names(path: &Path) -> String {
        let e = load(path).expect_err("load should fail").0;
        assert!(
            e.contains(&path.display().to_string()),
            "error does not name {}: {e}",
            path.display()
        );
        assert!(!e.contains('\n'), "multi-line error: {e}");
        e
    }

    /// Names, shapes and bit patterns of tensors (NaN-safe equality).
    fn bits(t: &[NamedTensor]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        t.iter()
            .map(|t| {
                let b = t.data.iter().map(|x| x.to_bits()).collect();
                (t.name.clone(), t.shape.clone(), b)
            })
            .collect()
    }

    /// The byte range of the tensor data section of a checkpoint file.
    fn data_section(bytes: &[u8]) -> std::ops::Range<usize> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        8 + n..bytes.len()
    }

    #[test]
    fn round_trip_is_bit_exact_and_one_file() {
        let dir = scratch("rt");
        let path = dir.join("best.safetensors");
        let id = save_sample(&path, &meta());
        let (tensors, m) = load(&path).unwrap();
        let mut want_meta = meta();
        want_meta[SAVE_ID] = json!(id);
        assert_eq!(m, want_meta);
        let want = sample();
        assert_eq!(tensors.len(), want.len());
        for (got, (name, shape, data)) in tensors.iter().zip(&want) {
            assert_eq!(&got.name, name);
            assert_eq!(&got.shape, shape);
            let a: Vec<u32> = got.data.iter().map(|x| x.to_bits()).collect();
            let b: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
            assert_eq!(a, b, "{name}");
        }
        // A directory resolves to best.safetensors; nothing but the one file was written.
        assert_eq!(load(&dir).unwrap().0.len(), want.len());
        let names: Vec<_> = fs::read_dir(&*dir).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(names.len(), 1);
        // Every save gets its own id.
        assert_ne!(save_sample(&path, &meta()), id);
    }

    #[test]
    fn layout_follows_safetensors() {
        let dir = scratch("layout");
        let path = dir.join("w.safetensors");
        save(&path, &[("x", &[2], &[1.0, -2.0])], &json!({"epoch": 1})).unwrap();
        let b = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "header padded to a multiple of 8");
        let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        assert_eq!(
            h["x"],
            json!({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})
        );
        let extra = &h["__metadata__"];
        assert_eq!(extra["format"], "pt");
        // The metadata is a JSON string; the checksum is zlib's CRC-32 of it, then the name,
        // a zero byte, the shape as u64s and the data of each tensor.
        let text = extra["pasa"].as_str().unwrap();
        let inner: Value = serde_json::from_str(text).unwrap();
        assert_eq!(inner["epoch"], 1);
        let mut crc = crc32fast::Hasher::new();
        crc.update(text.as_bytes());
        crc.update(b"x\0");
        crc.update(&2u64.to_le_bytes());
        crc.update(&b[8 + n..]);
        assert_eq!(extra["pasa_crc32"], format!("{:08x}", crc.finalize()));
        assert_eq!(&b[8 + n..], &[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn save_rejects_bad_input_and_writes_nothing() {
        let dir = scratch("badsave");
        let p = dir.join("w.safetensors");
        let m = json!({});
        assert!(save(&p, &[("x", &[3], &[1.0, 2.0])], &m).is_err());
        assert!(save(&p, &[("x", &[1], &[1.0]), ("x", &[1], &[2.0])], &m).is_err());
        assert!(save(&p, &[("__metadata__", &[1], &[1.0])], &m).is_err());
        assert!(save(&p, &[("", &[1], &[1.0])], &m).is_err());
        assert!(save(&p, &[("x", &[1], &[1.0])], &json!([1, 2])).is_err());
        assert_eq!(fs::read_dir(&*dir).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn truncated_files_are_rejected() {
        let dir = scratch("trunc");
        let good = dir.join("good.safetensors");
        save_sample(&good, &meta());
        let bytes = fs::read(&good).unwrap();
        let data = data_section(&bytes);
        let cuts = [
            0,
            1,
            7,
            8,
            9,
            data.start / 2,
            data.start - 1,
            data.start,
            data.start + 5,
            bytes.len() - 1,
        ];
        for (i, &cut) in cuts.iter().enumerate() {
            let p = dir.join(format!("cut{i}.safetensors"));
            fs::write(&p, &bytes[..cut]).unwrap();
            assert_err_names(&p);
        }
    }

    #[test]
    fn flipped_bytes_anywhere_are_rejected() {
        let dir = scratch("flip");
        let good = dir.join("good.safetensors");
        save_sample(&good, &meta());
        let bytes = fs::read(&good).unwrap();
        let data = data_section(&bytes);
        // Every byte of the tensor data, one bit at a time: the checksum catches each.
        for at in data.clone() {
            let mut b = bytes.clone();
            b[at] ^= 1 << (at % 8);
            let p = dir.join("data.safetensors");
            fs::write(&p, &b).unwrap();
            let e = assert_err_names(&p);
            assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
            assert!(e.contains("damaged"), "{e}");
        }
        // Every byte of the header: an error, never a panic or a silent load.
        for at in 0..data.start {
            let mut b = bytes.clone();
            b[at] ^= 0x04;
            let p = dir.join("header.safetensors");
            fs::write(&p, &b).unwrap();
            if let Ok((t, m)) = load(&p) {
                // A flip in the header's padding or JSON whitespace changes nothing.
                let (t0, m0) = load(&good).unwrap();
                assert_eq!(m, m0, "byte {at} changed the metadata");
                assert_eq!(bits(&t), bits(&t0), "byte {at} changed the tensors");
            }
        }
        // Garbage of every small length never panics.
        for len in 0..64u64 {
            let p = dir.join("garbage.safetensors");
            let g: Vec<u8> = (0..len)
                .map(|i| crate::rng::hash_u32(len, i) as u8)
                .collect();
            fs::write(&p, g).unwrap();
            assert_err_names(&p);
        }
    }

    #[test]
    fn foreign_safetensors_files_are_named() {
        let dir = scratch("foreign");
        let p = dir.join("other.safetensors");
        let bytes = safetensors::serialize(
            [(
                "x",
                TensorView::new(Dtype::F32, vec![1], &[0, 0, 0x80, 0x3f]).unwrap(),
            )],
            None,
        )
        .unwrap();
        fs::write(&p, bytes).unwrap();
        let e = assert_err_names(&p);
        assert!(e.contains("not a pasa checkpoint"), "{e}");
    }

    #[test]
    fn temp_files_are_recognised_and_none_stay() {
        let dir = scratch("atomic");
        let p = dir.join("last.safetensors");
        save_sample(&p, &meta());
        save(&p, &[("x", &[1], &[3.0])], &json!({"epoch": 9})).unwrap();
        let names: Vec<String> = fs::read_dir(&*dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["last.safetensors"]);
        let (t, m) = load(&p).unwrap();
        assert_eq!(t[0].data, vec![3.0]);
        assert_eq!(m["epoch"], 9);
        assert!(is_temp(".last.safetensors.tmp-123-4"));
        assert!(!is_temp("last.safetensors"));
        assert!(!is_temp("tmp-notes.txt"));
    }

    #[test]
    fn save_into_missing_directory_fails_cleanly() {
        let dir = scratch("nodir");
        let p = dir.join("nope").join("best.safetensors");
        let e = save(&p, &[("x", &[1], &[1.0])], &json!({})).unwrap_err().0;
        assert!(e.contains("nope"), "{e}");
    }
}
