//! Checkpoints: a safetensors file of f32 tensors plus a JSON sidecar (configuration, epoch).
//!
//! `run/best.safetensors` holds the weights in the safetensors layout, so Python's
//! `safetensors` library reads it; `run/best.json` holds the caller's metadata.
//!
//! Crash safety: each file is written to a temporary file in the same directory, flushed,
//! fsync'd and renamed over its target, so neither file is ever half-written. The two renames
//! are not one atomic step, so the weights go first and the sidecar second: the sidecar's
//! rename is the commit point. Each save stamps a fresh save id into both files (the
//! safetensors `__metadata__` key `pasa_save_id` and the sidecar key `safetensors_save_id`).
//! A crash between the two renames leaves new weights beside a missing or older sidecar, and
//! [`load`] reports that (missing sidecar, or save ids that differ) instead of pairing the
//! weights with the wrong epoch and configuration. Files written by others carry no save id
//! and are accepted as they are.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// The key of the save id in the safetensors `__metadata__`.
const ST_SAVE_ID: &str = "pasa_save_id";
/// The key of the save id in the JSON sidecar (removed from the metadata [`load`] returns).
const SIDECAR_SAVE_ID: &str = "safetensors_save_id";
/// File name looked up when [`load`] is given a directory.
pub const BEST: &str = "best.safetensors";

/// One tensor read back from a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The sidecar path for a safetensors path: same name, `.json` extension.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Writes `tensors` (name, shape, row-major data; stored in this order) to `path` in the
/// safetensors layout, then `meta` (a JSON object) to the sidecar, each atomically.
pub fn save(path: &Path, tensors: &[(&str, &[usize], &[f32])], meta: &Value) -> Result<()> {
    let Value::Object(meta_obj) = meta else {
        return Err(Error::in_file(
            path,
            "checkpoint metadata must be a JSON object",
        ));
    };
    let save_id = new_save_id();

    let mut header = Map::new();
    header.insert(
        "__metadata__".into(),
        json!({"format": "pt", ST_SAVE_ID: save_id}),
    );
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    for &(name, shape, data) in tensors {
        if name.is_empty() || name == "__metadata__" {
            return Err(Error::in_file(
                path,
                format!("invalid tensor name {name:?}"),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::in_file(
                path,
                format!("duplicate tensor name {name:?}"),
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
        let end = offset + 4 * data.len();
        header.insert(
            name.into(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::in_file(path, format!("cannot encode header: {e}")))?;
    // Pad with spaces so the data starts 8-byte aligned (the safetensors convention).
    header.resize(header.len().div_ceil(8) * 8, b' ');

    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for &(_, _, data) in tensors {
        if cfg!(target_endian = "little") {
            bytes.extend_from_slice(bytemuck::cast_slice(data));
        } else {
            for x in data {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    write_atomic(path, &bytes)?;

    let mut sidecar = meta_obj.clone();
    sidecar.insert(SIDECAR_SAVE_ID.into(), Value::String(save_id));
    let side_path = sidecar_path(path);
    let mut text = serde_json::to_vec_pretty(&Value::Object(sidecar))
        .map_err(|e| Error::in_file(&side_path, format!("cannot encode metadata: {e}")))?;
    text.push(b'\n');
    write_atomic(&side_path, &text)
}

/// Reads a checkpoint written by [`save`] (or any F32 safetensors file with a JSON sidecar).
/// `path` is the `.safetensors` file or a directory holding `best.safetensors`. Tensors come
/// back in file order; the metadata is the sidecar minus the save id.
pub fn load(path: &Path) -> Result<(Vec<NamedTensor>, Value)> {
    let path = if path.is_dir() {
        path.join(BEST)
    } else {
        path.to_path_buf()
    };
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (tensors, st_meta) = parse(&bytes).map_err(|m| Error::in_file(&path, m))?;

    let side_path = sidecar_path(&path);
    let text = fs::read(&side_path).map_err(|e| {
        Error::in_file(
            &side_path,
            format!("cannot read the checkpoint's JSON sidecar: {e}"),
        )
    })?;
    let mut meta: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::in_file(&side_path, format!("sidecar is not valid JSON: {e}")))?;
    let Value::Object(obj) = &mut meta else {
        return Err(Error::in_file(&side_path, "sidecar is not a JSON object"));
    };
    let side_id = obj.remove(SIDECAR_SAVE_ID);
    let st_id = st_meta.get(ST_SAVE_ID);
    if let (Some(a), Some(b)) = (&side_id, st_id) {
        if a != b {
            return Err(Error::in_file(
                &side_path,
                format!(
                    "sidecar belongs to a different save than {} (a save was interrupted \
                     between the two files); save again or restore both files",
                    path.display()
                ),
            ));
        }
    }
    Ok((tensors, meta))
}

/// Parses a whole safetensors file; errors are messages without the path.
fn parse(bytes: &[u8]) -> std::result::Result<(Vec<NamedTensor>, Map<String, Value>), String> {
    if bytes.len() < 8 {
        return Err(format!(
            "file too short for a safetensors header ({} bytes)",
            bytes.len()
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!(
            "header length {n} runs past the end of the file ({rest} bytes after the length)"
        ));
    }
    let n = n as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| format!("header is not valid JSON: {e}"))?;
    let Value::Object(header) = header else {
        return Err("header is not a JSON object".into());
    };
    let data = &bytes[8 + n..];

    let mut metadata = Map::new();
    // (begin, end, name, shape)
    let mut entries: Vec<(usize, usize, String, Vec<usize>)> = Vec::new();
    for (name, v) in &header {
        if name == "__metadata__" {
            let Value::Object(m) = v else {
                return Err("__metadata__ is not a JSON object".into());
            };
            if let Some((k, _)) = m.iter().find(|(_, x)| !x.is_string()) {
                return Err(format!("__metadata__ value for {k:?} is not a string"));
            }
            metadata = m.clone();
            continue;
        }
        let bad = |what: &str| format!("tensor {name:?}: {what}");
        let dtype = v.get("dtype").and_then(Value::as_str);
        if dtype != Some("F32") {
            return Err(bad(&format!(
                "dtype {} is not supported (only F32)",
                v.get("dtype").map_or("missing".into(), |d| d.to_string())
            )));
        }
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing or non-array shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape entries must be non-negative integers"))?;
        let offs: Vec<usize> = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| {
                a.iter()
                    .map(|o| o.as_u64().and_then(|o| usize::try_from(o).ok()))
                    .collect::<Option<_>>()
            })
            .ok_or_else(|| bad("data_offsets must be two non-negative integers"))?;
        let (begin, end) = (offs[0], offs[1]);
        if begin > end || end > data.len() {
            return Err(bad(&format!(
                "data_offsets [{begin}, {end}] out of bounds (data section is {} bytes)",
                data.len()
            )));
        }
        let want = shape
            .iter()
            .try_fold(4usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
        if end - begin != want {
            return Err(bad(&format!(
                "shape {shape:?} needs {want} bytes but data_offsets [{begin}, {end}] span {}",
                end - begin
            )));
        }
        entries.push((begin, end, name.clone(), shape));
    }

    // Like the reference implementation, the tensors must tile the data section exactly.
    entries.sort_by_key(|e| (e.0, e.1));
    let mut pos = 0usize;
    for (begin, end, name, _) in &entries {
        if *begin < pos {
            return Err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] overlap the previous tensor"
            ));
        }
        if *begin > pos {
            return Err(format!(
                "tensor {name:?}: data_offsets [{begin}, {end}] leave a gap after byte {pos}"
            ));
        }
        pos = *end;
    }
    if pos != data.len() {
        return Err(format!(
            "tensors cover {pos} bytes but the data section has {}",
            data.len()
        ));
    }

    let tensors = entries
        .into_iter()
        .map(|(begin, end, name, shape)| NamedTensor {
            name,
            shape,
            data: data[begin..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        })
        .collect();
    Ok((tensors, metadata))
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

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`:
/// the file is whole or absent, never half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::in_file(path, "checkpoint path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
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
    // Persist the rename itself; not every platform lets a directory be synced, so best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for Scratch {
        fn as_ref(&self) -> &Path {
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
            ("item_emb.weight".into(), vec![4, 6], big),
            (
                "odd".into(),
                vec![3],
                vec![f32::NAN, -0.0, f32::from_bits(1)], // NaN, negative zero, subnormal
            ),
            ("scalar".into(), vec![], vec![2.5]),
            ("empty".into(), vec![0, 5], vec![]),
            ("a.bias".into(), vec![2], vec![f32::INFINITY, f32::MIN]),
        ]
    }

    fn save_sample(path: &Path, meta: &Value) {
        let t = sample();
        let refs: Vec<(&str, &[usize], &[f32])> = t
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
            .collect();
        save(path, &refs, meta).unwrap();
    }

    fn meta() -> Value {
        json!({"epoch": 7, "config": {"model": "pasa", "dim": 64, "dropout": 0.2}})
    }

    /// Asserts that loading fails with one line naming `file`.
    fn assert_err_names(path: &Path, file: &Path) -> String {
        let e = load(path).expect_err("load should fail").0;
        assert!(
            e.contains(&file.display().to_string()),
            "error does not name {}: {e}",
            file.display()
        );
        assert!(!e.contains('\n'), "multi-line error: {e}");
        e
    }

    /// Writes a raw safetensors file from a header string and data bytes, plus a sidecar.
    fn write_raw(path: &Path, header: &str, data: &[u8]) {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        fs::write(path, b).unwrap();
        fs::write(sidecar_path(path), "{\"epoch\": 1}").unwrap();
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = scratch("rt");
        let path = dir.join("best.safetensors");
        save_sample(&path, &meta());
        let (tensors, m) = load(&path).unwrap();
        assert_eq!(m, meta());
        let want = sample();
        assert_eq!(tensors.len(), want.len());
        for (got, (name, shape, data)) in tensors.iter().zip(&want) {
            assert_eq!(&got.name, name);
            assert_eq!(&got.shape, shape);
            let a: Vec<u32> = got.data.iter().map(|x| x.to_bits()).collect();
            let b: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
            assert_eq!(a, b, "{name}");
        }
        // A directory resolves to best.safetensors.
        let (t2, m2) = load(&dir).unwrap();
        assert_eq!(t2.len(), want.len());
        assert_eq!(m2, meta());
        // The sidecar is pretty JSON next to the weights.
        let side = fs::read_to_string(dir.join("best.json")).unwrap();
        assert!(side.contains("\n  \"epoch\": 7"), "{side}");
    }

    #[test]
    fn layout_follows_safetensors() {
        let dir = scratch("layout");
        let path = dir.join("w.safetensors");
        save(&path, &[("x", &[2], &[1.0, -2.0])], &json!({})).unwrap();
        let b = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "header padded to a multiple of 8");
        let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        assert_eq!(
            h["x"],
            json!({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})
        );
        assert_eq!(h["__metadata__"]["format"], "pt");
        assert_eq!(&b[8 + n..], &[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn save_rejects_bad_input() {
        let dir = scratch("badsave");
        let p = dir.join("w.safetensors");
        let m = json!({});
        assert!(save(&p, &[("x", &[3], &[1.0, 2.0])], &m).is_err());
        assert!(save(&p, &[("x", &[1], &[1.0]), ("x", &[1], &[2.0])], &m).is_err());
        assert!(save(&p, &[("__metadata__", &[1], &[1.0])], &m).is_err());
        assert!(save(&p, &[("x", &[1], &[1.0])], &json!([1, 2])).is_err());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn truncated_files_are_rejected() {
        let dir = scratch("trunc");
        let good = dir.join("good.safetensors");
        save_sample(&good, &meta());
        let bytes = fs::read(&good).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let cuts = [
            0,
            1,
            7,
            8,
            9,
            8 + n / 2,
            8 + n - 1,
            8 + n,
            8 + n + 5,
            bytes.len() - 1,
        ];
        for (i, &cut) in cuts.iter().enumerate() {
            let p = dir.join(format!("cut{i}.safetensors"));
            fs::write(&p, &bytes[..cut]).unwrap();
            fs::copy(sidecar_path(&good), sidecar_path(&p)).unwrap();
            assert_err_names(&p, &p);
        }
    }

    #[test]
    fn flipped_header_bytes_are_rejected() {
        let dir = scratch("flip");
        let good = dir.join("good.safetensors");
        save_sample(&good, &meta());
        let bytes = fs::read(&good).unwrap();
        // Corrupt the JSON structure, produce invalid UTF-8, and break the length itself.
        for (i, (at, val)) in [(8usize, b'x'), (9, 0xff), (20, b'}'), (7, 0x40), (0, 0xff)]
            .into_iter()
            .enumerate()
        {
            let mut b = bytes.clone();
            b[at] = val;
            let p = dir.join(format!("flip{i}.safetensors"));
            fs::write(&p, &b).unwrap();
            fs::copy(sidecar_path(&good), sidecar_path(&p)).unwrap();
            assert_err_names(&p, &p);
        }
        // Garbage of every small length never panics.
        for len in 0..64u64 {
            let p = dir.join("garbage.safetensors");
            let g: Vec<u8> = (0..len)
                .map(|i| crate::rng::hash_u32(len, i) as u8)
                .collect();
            fs::write(&p, g).unwrap();
            assert!(load(&p).is_err());
        }
    }

    #[test]
    fn wrong_dtype_is_rejected() {
        let dir = scratch("dtype");
        let good = dir.join("good.safetensors");
        save(&good, &[("x", &[2], &[1.0, 2.0])], &json!({})).unwrap();
        let mut b = fs::read(&good).unwrap();
        let at = b.windows(3).position(|w| w == b"F32").unwrap();
        b[at..at + 3].copy_from_slice(b"F16");
        fs::write(&good, &b).unwrap();
        let e = assert_err_names(&good, &good);
        assert!(e.contains("dtype"), "{e}");
    }

    #[test]
    fn bad_offsets_are_rejected() {
        let dir = scratch("offs");
        let data = [0u8; 16];
        let cases = [
            // out of bounds
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
            // shape does not match the span
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
            // overlapping
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}}"#,
            // begin after end
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
            // gap and uncovered tail
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            // malformed fields
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0]}}"#,
            r#"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#,
            r#"{"a":{"dtype":"F32","data_offsets":[0,16]}}"#,
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#,
            r#"{"a":[1,2]}"#,
            r#"[1,2,3]"#,
            r#"{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        ];
        for (i, h) in cases.iter().enumerate() {
            let p = dir.join(format!("case{i}.safetensors"));
            write_raw(&p, h, &data);
            assert_err_names(&p, &p);
        }
        // The same writer with a consistent header loads (the helper itself is sound).
        let p = dir.join("ok.safetensors");
        write_raw(
            &p,
            r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
            &data,
        );
        let (t, m) = load(&p).unwrap();
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(m, json!({"epoch": 1}));
    }

    #[test]
    fn sidecar_problems_are_rejected() {
        let dir = scratch("side");
        let p = dir.join("best.safetensors");
        save_sample(&p, &meta());
        let side = sidecar_path(&p);
        fs::write(&side, "{\"epoch\": ").unwrap();
        let e = assert_err_names(&p, &side);
        assert!(e.contains("JSON"), "{e}");
        fs::remove_file(&side).unwrap();
        assert_err_names(&p, &side);
        assert_err_names(&dir, &side);
    }

    #[test]
    fn interrupted_save_is_detected() {
        // Simulate a crash between the two renames: new weights, the previous sidecar.
        let dir = scratch("crash");
        let p = dir.join("best.safetensors");
        save_sample(&p, &meta());
        let old_side = fs::read(sidecar_path(&p)).unwrap();
        save_sample(&p, &json!({"epoch": 8}));
        fs::write(sidecar_path(&p), old_side).unwrap();
        let e = assert_err_names(&p, &sidecar_path(&p));
        assert!(e.contains("different save"), "{e}");
    }

    #[test]
    fn overwrite_leaves_no_temp_files() {
        let dir = scratch("atomic");
        let p = dir.join("best.safetensors");
        save_sample(&p, &meta());
        save(&p, &[("x", &[1], &[3.0])], &json!({"epoch": 9})).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["best.json", "best.safetensors"]);
        let (t, m) = load(&p).unwrap();
        assert_eq!(
            t,
            vec![NamedTensor {
                name: "x".into(),
                shape: vec![1],
                data: vec![3.0]
            }]
        );
        assert_eq!(m, json!({"epoch": 9}));
    }

    #[test]
    fn save_into_missing_directory_fails_cleanly() {
        let dir = scratch("nodir");
        let p = dir.join("nope").join("best.safetensors");
        let e = save(&p, &[("x", &[1], &[1.0])], &json!({})).unwrap_err().0;
        assert!(e.contains("nope"), "{e}");
    }
}
