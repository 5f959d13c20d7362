//! Pictures as PNG: line charts (training curves, kernel profiles) and the canvas the heatmaps
//! are drawn on ([`crate::heatmap`]). Drawn with plotters into an in-memory RGB buffer and
//! encoded with `png`, then written atomically. Text is DejaVu Sans, embedded in the binary
//! (`assets/fonts`) and rendered by ab_glyph: no system font library (fontconfig, freetype) is
//! needed, and the pictures are the same on every machine.

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

/// The font family every text of a picture uses (registered on first use).
pub const FONT: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            panic!("the embedded font does not parse");
        }
    });
}

/// A plotters error as ours.
pub fn drawing<E: std::fmt::Debug>(e: E) -> Error {
    Error::msg(format!("drawing a picture: {e:?}"))
}

/// A white RGB picture in memory.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    /// Row-major RGB bytes.
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Self {
        register_font();
        Canvas {
            width,
            height,
            rgb: vec![255; width as usize * height as usize * 3],
        }
    }

    /// A plotters drawing area over the whole picture.
    pub fn area(&mut self) -> DrawingArea<BitMapBackend<'_>, Shift> {
        BitMapBackend::with_buffer(&mut self.rgb, (self.width, self.height)).into_drawing_area()
    }

    /// The picture as PNG bytes.
    pub fn png(&self) -> std::result::Result<Vec<u8>, png::EncodingError> {
        encode_rgb(self.width, self.height, &self.rgb)
    }

    /// Writes the picture to `path` as an 8-bit RGB PNG, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self
            .png()
            .map_err(|e| Error::in_file(path, format!("cannot encode the PNG: {e}")))?;
        write_atomic(path, &bytes)
    }
}

/// An 8-bit RGB image as PNG bytes (encoded in memory so the file is written atomically).
pub fn encode_rgb(w: u32, h: u32, img: &[u8]) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut bytes = vec![];
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(img)?;
    writer.finish()?;
    Ok(bytes)
}

/// Text in the picture font, `size` px, anchored at `(h, v)` of its box.
pub fn text_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    register_font();
    (FONT, size as f64)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(h, v))
}

/// Colours of the lines, in order (Tableau 10, then darker variants): series k takes colour
/// k mod 16.
const COLOURS: [(u8, u8, u8); 16] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (16, 60, 90),
    (128, 64, 7),
    (22, 80, 22),
    (107, 20, 20),
    (74, 52, 95),
    (0, 0, 0),
];

pub fn colour(k: usize) -> RGBColor {
    let (r, g, b) = COLOURS[k % COLOURS.len()];
    RGBColor(r, g, b)
}

/// One line of a chart: its legend label and its points (non-finite points are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// A horizontal reference line (a kernel's initial value), drawn dashed grey.
    pub reference: Option<f64>,
}

/// Size of one panel of [`figure`], in pixels.
pub const PANEL: (u32, u32) = (560, 400);
const TITLE_H: u32 = 36;

/// The range of `v` with a margin of 5 % on each side (a unit range around a single value).
fn padded(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        return (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3));
    }
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// Panels side by side, `PANEL` px each, under a title, with one legend at the right for the
/// series labels of the first panel (every panel colours its series k with [`colour`]`(k)`,
/// so the panels of a figure share the legend when they list the same series in the same
/// order).
pub fn figure(title: &str, panels: &[Panel]) -> Result<Canvas> {
    let labels: Vec<&str> = panels
        .first()
        .map(|p| p.series.iter().map(|s| s.label.as_str()).collect())
        .unwrap_or_default();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    let legend_w = if labels.is_empty() {
        0
    } else {
        48 + 8 * longest
    };
    let n = panels.len().max(1) as u32;
    let mut canvas = Canvas::new(PANEL.0 * n + legend_w, PANEL.1 + TITLE_H);
    {
        let root = canvas.area();
        root.draw(&Text::new(
            title.to_string(),
            ((PANEL.0 * n / 2) as i32, 8),
            text_style(20, HPos::Center, VPos::Top),
        ))
        .map_err(drawing)?;
        let body = root.margin(TITLE_H, 0, 0, 0);
        let (charts, legend) = body.split_horizontally(PANEL.0 * n);
        for (panel, area) in panels.iter().zip(charts.split_evenly((1, n as usize))) {
            draw_panel(&area, panel)?;
        }
        for (k, label) in labels.iter().enumerate() {
            let y = 40 + 22 * k as i32;
            legend
                .draw(&PathElement::new(
                    vec![(6, y), (34, y)],
                    colour(k).stroke_width(3),
                ))
                .map_err(drawing)?;
            legend
                .draw(&Text::new(
                    label.to_string(),
                    (40, y),
                    text_style(14, HPos::Left, VPos::Center),
                ))
                .map_err(drawing)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(canvas)
}

/// A tick label: an integer without decimals, else up to four significant digits.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        return format!("{v:.0}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.digits$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<()> {
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let ys = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.1))
        .chain(p.reference);
    let (x0, x1) = padded(xs);
    let (y0, y1) = padded(ys);
    let mut chart = ChartBuilder::on(area)
        .caption(p.title.clone(), (FONT, 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(p.x_desc.clone())
        .y_desc(p.y_desc.clone())
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(drawing)?;
    if let Some(r) = p.reference {
        chart
            .draw_series(DashedLineSeries::new(
                [(x0, r), (x1, r)],
                6,
                4,
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(drawing)?;
    }
    for (k, s) in p.series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let style = colour(k).stroke_width(2);
        if pts.len() == 1 {
            chart
                .draw_series(std::iter::once(Circle::new(pts[0], 3, style.filled())))
                .map_err(drawing)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(drawing)?;
        }
    }
    if p.series.iter().all(|s| s.points.is_empty()) {
        area.draw(&Text::new(
            "no data",
            (PANEL.0 as i32 / 2, PANEL.1 as i32 / 2),
            text_style(16, HPos::Center, VPos::Center),
        ))
        .map_err(drawing)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        assert_eq!(tick(4.0), "4");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(1.0026), "1.003");
        assert_eq!(tick(0.000123), "0.000123");
    }

    #[test]
    fn padded_ranges() {
        assert_eq!(padded([0.0, 10.0].into_iter()), (-0.5, 10.5));
        assert_eq!(padded([f64::NAN].into_iter()), (0.0, 1.0));
        let (a, b) = padded([2.0, 2.0].into_iter());
        assert!(a < 2.0 && b > 2.0);
    }

    #[test]
    fn figure_has_its_size_and_draws_lines_and_text() {
        let s = |label: &str, k: f64| Series {
            label: label.into(),
            points: (0..10).map(|x| (x as f64, k * x as f64)).collect(),
        };
        let panel = |t: &str| Panel {
            title: t.into(),
            x_desc: "epoch".into(),
            y_desc: "NDCG@10".into(),
            series: vec![s("sasrec", 1.0), s("pasa", 2.0)],
            reference: Some(1.0),
        };
        let c = figure("ml-100k", &[panel("a"), panel("b")]).unwrap();
        assert_eq!(c.height, PANEL.1 + TITLE_H);
        assert_eq!(c.width, 2 * PANEL.0 + 48 + 8 * 6);
        let px: Vec<[u8; 3]> = c.rgb.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        let has = |rgb: (u8, u8, u8)| px.contains(&[rgb.0, rgb.1, rgb.2]);
        assert!(has(COLOURS[0]) && has(COLOURS[1]), "both lines are drawn");
        // Text is drawn: some dark grey anti-aliased pixels in the title row.
        let title_row = &c.rgb[..(TITLE_H * c.width * 3) as usize];
        assert!(title_row.chunks(3).any(|p| p[0] < 100 && p[0] == p[1]));
        let png = c.png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
