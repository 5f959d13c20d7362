//! Heatmaps of position-space matrices as PNG: a diverging blue–white–red colour map and the
//! writer (`pasa kernels`).
//!
//! White is the centre (the value a kernel starts at, so white reads "no change from plain
//! attention"), blue lies below it and red above it, both saturating at `centre ± half_range`.
//! Cells without data (above the diagonal) are a neutral grey, non-finite values black.

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use std::path::Path;

/// The colour of cells that carry no value (above the causal diagonal).
pub const NO_DATA: [u8; 3] = [200, 200, 200];
/// The colour of NaN and infinite values (a diverged kernel).
pub const NOT_FINITE: [u8; 3] = [0, 0, 0];
/// The widest image written, in pixels (a guard against a `--scale` typo).
pub const MAX_SIDE: usize = 16384;

/// Stops of the ramp from −1 (dark blue) through 0 (white) to +1 (dark red), ColorBrewer's
/// RdBu, interpolated linearly between neighbours.
const STOPS: [[f32; 3]; 5] = [
    [5.0, 48.0, 97.0],
    [67.0, 147.0, 195.0],
    [255.0, 255.0, 255.0],
    [214.0, 96.0, 77.0],
    [103.0, 0.0, 31.0],
];

/// The colour of `value` on a scale centred at `centre` that saturates at `centre ±
/// half_range`. A zero (or non-finite) range paints every finite value white.
pub fn diverging(value: f32, centre: f32, half_range: f32) -> [u8; 3] {
    if !value.is_finite() {
        return NOT_FINITE;
    }
    let x = if half_range > 0.0 && half_range.is_finite() {
        ((value - centre) / half_range).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    // x ∈ [−1, 1] → position along the stops.
    let pos = (x + 1.0) * 0.5 * (STOPS.len() - 1) as f32;
    let k = (pos.floor() as usize).min(STOPS.len() - 2);
    let t = pos - k as f32;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    std::array::from_fn(|c| (a[c] + (b[c] - a[c]) * t).round() as u8)
}

/// The largest |value − centre| over the finite values: the symmetric range of the map.
pub fn half_range(values: impl IntoIterator<Item = f32>, centre: f32) -> f32 {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .map(|v| (v - centre).abs())
        .fold(0.0, f32::max)
}

/// The default cell size: an image about 800 px wide, at least one pixel per cell.
pub fn default_scale(n: usize) -> usize {
    800usize.div_ceil(n.max(1)).max(1)
}

/// An RGB image of a `rows`×`cols` grid (`cells` row-major, `None` = no data), each cell a
/// `scale`×`scale` square, coloured by [`diverging`] around `centre` with range `half`.
pub fn render(
    rows: usize,
    cols: usize,
    cells: &[Option<f32>],
    centre: f32,
    half: f32,
    scale: usize,
) -> Vec<u8> {
    assert_eq!(cells.len(), rows * cols, "cells are not rows × cols");
    let width = cols * scale;
    let mut img = Vec::with_capacity(rows * scale * width * 3);
    let mut line = Vec::with_capacity(width * 3);
    for r in 0..rows {
        line.clear();
        for cell in &cells[r * cols..(r + 1) * cols] {
            let rgb = cell.map_or(NO_DATA, |v| diverging(v, centre, half));
            (0..scale).for_each(|_| line.extend_from_slice(&rgb));
        }
        (0..scale).for_each(|_| img.extend_from_slice(&line));
    }
    img
}

/// Write the heatmap of a grid (as [`render`]) to `path` as an 8-bit RGB PNG, atomically.
pub fn write_png(
    path: &Path,
    rows: usize,
    cols: usize,
    cells: &[Option<f32>],
    centre: f32,
    scale: usize,
) -> Result<()> {
    let (w, h) = (cols * scale, rows * scale);
    if scale == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::arg(
            "--scale",
            format!(
                "{scale} px per cell makes a {w}×{h} image; choose 1..={} for {cols} columns",
                (MAX_SIDE / cols.max(1)).max(1)
            ),
        ));
    }
    let half = half_range(cells.iter().flatten().copied(), centre);
    let img = render(rows, cols, cells, centre, half, scale);
    let bytes = encode_rgb(w as u32, h as u32, &img)
        .map_err(|e| Error::in_file(path, format!("cannot encode the PNG: {e}")))?;
    write_atomic(path, &bytes)
}

/// An 8-bit RGB image as PNG bytes (encoded in memory so the file is written atomically).
fn encode_rgb(w: u32, h: u32, img: &[u8]) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut bytes = vec![];
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(img)?;
    writer.finish()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_is_white_and_the_ends_are_blue_and_red() {
        assert_eq!(diverging(1.0, 1.0, 0.5), [255, 255, 255]);
        assert_eq!(diverging(0.5, 1.0, 0.5), [5, 48, 97]);
        assert_eq!(diverging(1.5, 1.0, 0.5), [103, 0, 31]);
        // Beyond the range saturates; halfway is the middle stop.
        assert_eq!(diverging(-9.0, 1.0, 0.5), [5, 48, 97]);
        assert_eq!(diverging(1.25, 1.0, 0.5), [214, 96, 77]);
        // A flat matrix (range 0) is all white; non-finite values are marked.
        assert_eq!(diverging(3.0, 1.0, 0.0), [255, 255, 255]);
        assert_eq!(diverging(f32::NAN, 1.0, 0.5), NOT_FINITE);
        let [r, g, b] = diverging(1.1, 1.0, 0.5);
        assert!(r > b && g < 255, "slightly above the centre is a light red");
    }

    #[test]
    fn range_is_symmetric_over_finite_values() {
        assert_eq!(half_range([0.5, 1.2, f32::NAN], 1.0), 0.5);
        assert_eq!(half_range([], 1.0), 0.0);
    }

    #[test]
    fn default_scale_aims_at_800_px() {
        assert_eq!(default_scale(200), 4);
        assert_eq!(default_scale(3), 267);
        assert_eq!(default_scale(50), 16);
        assert_eq!(default_scale(5000), 1);
    }

    #[test]
    fn render_draws_scaled_squares() {
        // [[2, -], [0, 1]] around 1, 2 px per cell.
        let cells = [Some(2.0), None, Some(0.0), Some(1.0)];
        let img = render(2, 2, &cells, 1.0, 1.0, 2);
        assert_eq!(img.len(), 4 * 4 * 3);
        let px = |x: usize, y: usize| -> [u8; 3] {
            let o = (y * 4 + x) * 3;
            [img[o], img[o + 1], img[o + 2]]
        };
        assert_eq!(px(1, 1), [103, 0, 31]);
        assert_eq!(px(3, 0), NO_DATA);
        assert_eq!(px(0, 3), [5, 48, 97]);
        assert_eq!(px(3, 3), [255, 255, 255]);
    }

    #[test]
    fn write_png_round_trips_and_rejects_huge_images() {
        let dir = std::env::temp_dir().join(format!("pasa-heatmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.png");
        let cells = [Some(1.0), None, Some(0.5), Some(1.5)];
        write_png(&p, 2, 2, &cells, 1.0, 3).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (6, 6));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..3], &[255, 255, 255]);
        let e = write_png(&p, 2, 2, &cells, 1.0, MAX_SIDE).unwrap_err();
        assert!(e.0.contains("--scale"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
