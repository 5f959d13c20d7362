//! Heatmaps of position-space matrices as PNG (`pasa kernels`, `pasa report`): a diverging
//! blue–white–red colour map, the cells, and the figure around them (title, axes with ticks,
//! colour bar with its values).
//!
//! White is the centre (the value a kernel starts at, so white reads "no change from plain
//! attention"), blue lies below it and red above it, both saturating at `centre ± half_range`.
//! Cells without data (above the diagonal) are a neutral grey, non-finite values black.

use crate::error::{Error, Result};
use crate::plot::{drawing, text_style, Canvas};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
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

/// Margins around the cells of a heatmap figure, in pixels.
const LEFT: usize = 84;
const TOP: usize = 44;
const BOTTOM: usize = 56;
const BAR_GAP: usize = 26;
const BAR_W: usize = 22;
const BAR_LABELS: usize = 84;
/// The narrowest figure (room for the title).
const MIN_WIDTH: usize = 420;

/// Where the parts of a heatmap figure lie: the cells fill `cols·scale` × `rows·scale` pixels
/// from (`x0`, `y0`); the colour bar spans the same rows from column `bar_x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub width: usize,
    pub height: usize,
    pub x0: usize,
    pub y0: usize,
    pub scale: usize,
    pub bar_x: usize,
}

/// The layout of the figure of a `rows`×`cols` grid at `scale` px per cell.
pub fn layout(rows: usize, cols: usize, scale: usize) -> Layout {
    let bar_x = LEFT + cols * scale + BAR_GAP;
    Layout {
        width: (bar_x + BAR_W + BAR_LABELS).max(MIN_WIDTH),
        height: TOP + rows * scale + BOTTOM,
        x0: LEFT,
        y0: TOP,
        scale,
        bar_x,
    }
}

/// Positions of the ticks on an axis of `len` cells: 0 and multiples of a round step (1, 2,
/// 5 × 10^k) chosen for about eight ticks.
pub fn ticks(len: usize) -> Vec<usize> {
    let mut step = 1;
    'outer: for p in [1, 10, 100, 1000, 10000] {
        for m in [1, 2, 5] {
            step = m * p;
            if len.div_ceil(step) <= 8 {
                break 'outer;
            }
        }
    }
    (0..len).step_by(step).collect()
}

/// A value as a colour-bar label: three decimals, or scientific when tiny or huge.
fn label(v: f32) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// The heatmap of a grid as a figure: `title` above, the cells (as [`render`]) with the
/// axes "query i" (rows, downwards) and "key j" (columns) and their ticks, and at the right
/// a colour bar from `centre − half` to `centre + half` with its values.
pub fn figure(
    title: &str,
    rows: usize,
    cols: usize,
    cells: &[Option<f32>],
    centre: f32,
    scale: usize,
) -> Result<Canvas> {
    let half = half_range(cells.iter().flatten().copied(), centre);
    let lay = layout(rows, cols, scale);
    let mut canvas = Canvas::new(lay.width as u32, lay.height as u32);
    let img = render(rows, cols, cells, centre, half, scale);
    let (pw, ph) = (cols * scale, rows * scale);
    for r in 0..ph {
        let dst = ((lay.y0 + r) * lay.width + lay.x0) * 3;
        canvas.rgb[dst..dst + pw * 3].copy_from_slice(&img[r * pw * 3..(r + 1) * pw * 3]);
    }
    // The colour bar: top row centre + half, bottom row centre − half.
    for r in 0..ph {
        let x = if ph > 1 {
            1.0 - 2.0 * r as f32 / (ph - 1) as f32
        } else {
            0.0
        };
        let rgb = diverging(centre + half * x, centre, half);
        for c in 0..BAR_W {
            let o = ((lay.y0 + r) * lay.width + lay.bar_x + c) * 3;
            canvas.rgb[o..o + 3].copy_from_slice(&rgb);
        }
    }
    {
        let area = canvas.area();
        let black = ShapeStyle::from(&BLACK);
        let (x0, y0) = (lay.x0 as i32, lay.y0 as i32);
        let (pw, ph, s) = (pw as i32, ph as i32, scale as i32);
        let frame = |x: i32, w: i32| Rectangle::new([(x - 1, y0 - 1), (x + w, y0 + ph)], black);
        area.draw(&frame(x0, pw)).map_err(drawing)?;
        area.draw(&frame(lay.bar_x as i32, BAR_W as i32))
            .map_err(drawing)?;
        area.draw(&Text::new(
            title.to_string(),
            (lay.width as i32 / 2, 12),
            text_style(16, HPos::Center, VPos::Top),
        ))
        .map_err(drawing)?;
        let tick_text = |h, v| text_style(12, h, v);
        for t in ticks(cols) {
            let x = x0 + t as i32 * s + s / 2;
            area.draw(&PathElement::new(
                vec![(x, y0 + ph), (x, y0 + ph + 4)],
                black,
            ))
            .map_err(drawing)?;
            area.draw(&Text::new(
                t.to_string(),
                (x, y0 + ph + 7),
                tick_text(HPos::Center, VPos::Top),
            ))
            .map_err(drawing)?;
        }
        for t in ticks(rows) {
            let y = y0 + t as i32 * s + s / 2;
            area.draw(&PathElement::new(vec![(x0 - 5, y), (x0 - 1, y)], black))
                .map_err(drawing)?;
            area.draw(&Text::new(
                t.to_string(),
                (x0 - 8, y),
                tick_text(HPos::Right, VPos::Center),
            ))
            .map_err(drawing)?;
        }
        area.draw(&Text::new(
            "key j",
            (x0 + pw / 2, y0 + ph + 28),
            text_style(14, HPos::Center, VPos::Top),
        ))
        .map_err(drawing)?;
        area.draw(&Text::new(
            "query i",
            (18, y0 + ph / 2),
            text_style(14, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
        ))
        .map_err(drawing)?;
        // Colour-bar values: the ends and the centre, and the quarter points when tall enough.
        let marks: &[f32] = match ph {
            160.. => &[1.0, 0.5, 0.0, -0.5, -1.0],
            48.. => &[1.0, 0.0, -1.0],
            _ => &[1.0, -1.0],
        };
        let bx = lay.bar_x as i32 + BAR_W as i32;
        for &m in marks {
            let y = y0 + ((1.0 - m) * 0.5 * (ph - 1).max(0) as f32).round() as i32;
            area.draw(&PathElement::new(vec![(bx, y), (bx + 4, y)], black))
                .map_err(drawing)?;
            area.draw(&Text::new(
                label(centre + half * m),
                (bx + 7, y),
                tick_text(HPos::Left, VPos::Center),
            ))
            .map_err(drawing)?;
        }
        area.present().map_err(drawing)?;
    }
    Ok(canvas)
}

/// Write the heatmap figure of a grid (as [`figure`]) to `path` as an 8-bit RGB PNG,
/// atomically.
pub fn write_png(
    path: &Path,
    title: &str,
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
    figure(title, rows, cols, cells, centre, scale)?.save(path)
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
    fn ticks_are_round() {
        assert_eq!(ticks(6), [0, 1, 2, 3, 4, 5]);
        assert_eq!(ticks(50), [0, 10, 20, 30, 40]);
        assert_eq!(ticks(200), [0, 50, 100, 150]);
        assert_eq!(ticks(1), [0]);
    }

    #[test]
    fn write_png_round_trips_and_rejects_huge_images() {
        let dir = std::env::temp_dir().join(format!("pasa-heatmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.png");
        // [[1, -], [0.5, 1.5]] around 1, 40 px per cell.
        let cells = [Some(1.0), None, Some(0.5), Some(1.5)];
        write_png(&p, "block0.L", 2, 2, &cells, 1.0, 40).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let lay = layout(2, 2, 40);
        assert_eq!(
            (info.width as usize, info.height as usize),
            (lay.width, lay.height)
        );
        assert_eq!(info.color_type, png::ColorType::Rgb);
        // The centre of each cell has its colour; the bar runs from red (top) to blue.
        let px = |x: usize, y: usize| -> [u8; 3] {
            let o = (y * lay.width + x) * 3;
            [buf[o], buf[o + 1], buf[o + 2]]
        };
        let cell = |i: usize, j: usize| px(lay.x0 + j * 40 + 20, lay.y0 + i * 40 + 20);
        assert_eq!(cell(0, 0), [255, 255, 255]);
        assert_eq!(cell(0, 1), NO_DATA);
        assert_eq!(cell(1, 0), [5, 48, 97]);
        assert_eq!(cell(1, 1), [103, 0, 31]);
        assert_eq!(px(lay.bar_x + 10, lay.y0), [103, 0, 31]);
        assert_eq!(px(lay.bar_x + 10, lay.y0 + 79), [5, 48, 97]);
        // Text and ticks are drawn: dark pixels in the title band and left of the cells.
        let dark = |x0: usize, x1: usize, y0: usize, y1: usize| {
            (y0..y1).any(|y| (x0..x1).any(|x| px(x, y).iter().all(|&c| c < 90)))
        };
        assert!(dark(0, lay.width, 0, lay.y0 - 4), "title");
        assert!(dark(0, lay.x0 - 2, lay.y0, lay.y0 + 80), "row ticks");
        assert!(
            dark(lay.x0, lay.x0 + 80, lay.y0 + 82, lay.height),
            "column ticks"
        );
        assert!(
            dark(lay.bar_x + 24, lay.width, lay.y0, lay.y0 + 80),
            "bar values"
        );
        let e = write_png(&p, "m", 2, 2, &cells, 1.0, MAX_SIDE).unwrap_err();
        assert!(e.0.contains("--scale"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
