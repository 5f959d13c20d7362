//! `pasa kernels`: a model's learned position-space matrices (U and L, PARec's P, FPARec's
//! A·Bᵀ) expanded from their parameters to dense n×n lower-triangular form [i][j] (query i,
//! key j ≤ i), and written as CSV, as PNG heatmaps and as distance profiles (t[δ] of a Toeplitz
//! kernel, the diagonal means of a full matrix), with the shape of each profile
//! ([`shape`]) for `pasa report`'s automatic description.

use crate::backend::KernelKind;
use crate::error::{Error, Result};
use crate::heatmap;
use crate::models::{Model, Positional};
use crate::params::ParamSpec;
use crate::plot::{self, Panel, Series};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A dense n×n matrix on the causal support: a value at [i][j] for j ≤ i, nothing above.
#[derive(Debug, Clone, PartialEq)]
pub struct Causal {
    pub n: usize,
    /// Row-major n×n; `None` exactly above the diagonal.
    pub cells: Vec<Option<f32>>,
}

impl Causal {
    /// The matrix with `value(i, j)` at every j ≤ i.
    fn from_fn(n: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        let cells = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                (j <= i).then(|| value(i, j))
            })
            .collect();
        Causal { n, cells }
    }

    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        self.cells[i * self.n + j]
    }

    /// The values on the causal support, row by row.
    pub fn values(&self) -> impl Iterator<Item = f32> + '_ {
        self.cells.iter().flatten().copied()
    }

    /// n lines of n comma-separated cells, empty above the diagonal; each value in Rust's
    /// shortest form that reads back as the same f32.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        for i in 0..self.n {
            for j in 0..self.n {
                if j > 0 {
                    s.push(',');
                }
                if let Some(v) = self.get(i, j) {
                    write!(s, "{v}").expect("writing to a String");
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Head `h` of a tensor laid out `[heads, …]`.
pub fn head_slice(data: &[f32], heads: usize, h: usize) -> Result<&[f32]> {
    if heads == 0 || h >= heads || !data.len().is_multiple_of(heads) {
        return Err(Error::msg(format!(
            "head {h} of a tensor of {} values in {heads} heads",
            data.len()
        )));
    }
    let per = data.len() / heads;
    Ok(&data[h * per..(h + 1) * per])
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::msg(format!(
            "{what}: {got} values where {want} were expected"
        )));
    }
    Ok(())
}

/// One head of a kernel in its packed form (DESIGN §1: `full` row-packed at i(i+1)/2 + j,
/// `toeplitz` t[i − j]) as a dense lower-triangular matrix.
pub fn expand_kernel(kind: KernelKind, n: usize, packed: &[f32]) -> Result<Causal> {
    if kind == KernelKind::None {
        return Err(Error::msg("a `none` kernel has no parameters to expand"));
    }
    check_len(
        &format!("{kind:?} kernel of n = {n}"),
        packed.len(),
        kind.len(n),
    )?;
    Ok(Causal::from_fn(n, |i, j| packed[kind.index(i, j)]))
}

/// The causal part of one head of a row-major n×n matrix (PARec's P; the kernels never read
/// above the diagonal).
pub fn lower_of_square(n: usize, dense: &[f32]) -> Result<Causal> {
    check_len(&format!("{n}×{n} matrix"), dense.len(), n * n)?;
    Ok(Causal::from_fn(n, |i, j| dense[i * n + j]))
}

/// One head of FPARec's P = A·Bᵀ (A, B row-major n×rank) on the causal support.
pub fn factor_product(n: usize, rank: usize, a: &[f32], b: &[f32]) -> Result<Causal> {
    check_len(&format!("factor A ({n}×{rank})"), a.len(), n * rank)?;
    check_len(&format!("factor B ({n}×{rank})"), b.len(), n * rank)?;
    Ok(Causal::from_fn(n, |i, j| {
        let (ai, bj) = (&a[i * rank..(i + 1) * rank], &b[j * rank..(j + 1) * rank]);
        ai.iter().zip(bj).map(|(x, y)| x * y).sum()
    }))
}

/// One matrix to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// File stem: the parameter name, `.h<head>` when the parameter has several heads.
    pub stem: String,
    /// What it is, for the summary ("U, toeplitz").
    pub what: String,
    pub matrix: Causal,
    /// The value the heatmap shows white: where the matrix starts (1 for U and `weight` L, 0
    /// for `mix` L and for the scores P).
    pub centre: f32,
    /// A Toeplitz kernel's values by distance, t[0..n].
    pub by_distance: Option<Vec<f32>>,
}

fn values<'a>(model: &Model, flat: &'a [f32], spec: &ParamSpec) -> Result<&'a [f32]> {
    flat.get(spec.off..spec.off + spec.len()).ok_or_else(|| {
        Error::msg(format!(
            "parameter {} lies outside the {} loaded values (model has {})",
            spec.name,
            flat.len(),
            model.params.len
        ))
    })
}

/// `name` with the head suffix when the parameter has several heads.
fn stem(name: &str, heads: usize, h: usize) -> String {
    if heads > 1 {
        format!("{name}.h{h}")
    } else {
        name.to_string()
    }
}

/// Every learned position-space matrix of `model` with parameters `flat` (laid out as
/// `model.params`), one per head, in the order of [`Model::positional`].
pub fn collect(model: &Model, flat: &[f32]) -> Result<Vec<Exported>> {
    let n = model.cfg.n;
    let specs = &model.params.specs;
    let mut out = vec![];
    for p in model.positional() {
        match p {
            Positional::Kernel {
                id,
                kind,
                identity_init,
            } => {
                let spec = &specs[id];
                let heads = spec.shape[0];
                let data = values(model, flat, spec)?;
                // The kernel's last letter is its role (U or L) whatever the block prefix.
                let role = spec.name.rsplit('.').next().unwrap_or(&spec.name);
                let kind_name = format!("{kind:?}").to_lowercase();
                let what = if identity_init {
                    format!("{role}, {kind_name}, mix reading: starts as the identity")
                } else {
                    format!("{role}, {kind_name}")
                };
                for h in 0..heads {
                    let packed = head_slice(data, heads, h)?;
                    out.push(Exported {
                        stem: stem(&spec.name, heads, h),
                        what: what.clone(),
                        matrix: expand_kernel(kind, n, packed)?,
                        centre: if identity_init { 0.0 } else { 1.0 },
                        by_distance: (kind == KernelKind::Toeplitz).then(|| packed.to_vec()),
                    });
                }
            }
            Positional::Learned { id } => {
                let spec = &specs[id];
                let heads = spec.shape[0];
                let data = values(model, flat, spec)?;
                for h in 0..heads {
                    out.push(Exported {
                        stem: stem(&spec.name, heads, h),
                        what: "learned scores P".into(),
                        matrix: lower_of_square(n, head_slice(data, heads, h)?)?,
                        centre: 0.0,
                        by_distance: None,
                    });
                }
            }
            Positional::Factorised { a, b } => {
                let (sa, sb) = (&specs[a], &specs[b]);
                let (heads, rank) = (sa.shape[0], model.cfg.rank);
                let (da, db) = (values(model, flat, sa)?, values(model, flat, sb)?);
                // Named after the matrix it materialises: block{b}.PA and .PB give block{b}.P.
                let name = sa.name.strip_suffix('A').unwrap_or(&sa.name);
                for h in 0..heads {
                    let (ha, hb) = (head_slice(da, heads, h)?, head_slice(db, heads, h)?);
                    out.push(Exported {
                        stem: stem(name, heads, h),
                        what: format!("factorised scores P = PA·PBᵀ, rank {rank}"),
                        matrix: factor_product(n, rank, ha, hb)?,
                        centre: 0.0,
                        by_distance: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Minimum, maximum and mean over the causal support.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
}

pub fn stats(m: &Causal) -> Stats {
    let (mut min, mut max, mut sum, mut count) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64, 0);
    for v in m.values() {
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
        count += 1;
    }
    Stats {
        min,
        max,
        mean: sum / count.max(1) as f64,
    }
}

/// How many distances of a Toeplitz kernel the summary shows.
const SHOWN_DISTANCES: usize = 6;

/// One line about a matrix: what it is, its range and mean, a Toeplitz kernel's first
/// distances.
pub fn summary(e: &Exported) -> String {
    let s = stats(&e.matrix);
    let mut line = format!(
        "{} ({}; white = {}): min {:.4} max {:.4} mean {:.4}",
        e.stem, e.what, e.centre, s.min, s.max, s.mean
    );
    if let Some(t) = &e.by_distance {
        let shown: Vec<String> = t
            .iter()
            .take(SHOWN_DISTANCES)
            .map(|v| format!("{v:.4}"))
            .collect();
        let more = if t.len() > SHOWN_DISTANCES {
            " …"
        } else {
            ""
        };
        write!(line, "; by distance 0.. {}{more}", shown.join(" ")).expect("String");
    }
    line
}

/// The matrix by distance δ = i − j, δ = 0..n: a Toeplitz kernel's t[δ]; otherwise the mean
/// of diagonal δ (what a full matrix does at each distance, averaged over the queries).
pub fn profile(e: &Exported) -> Vec<f32> {
    if let Some(t) = &e.by_distance {
        return t.clone();
    }
    let n = e.matrix.n;
    (0..n)
        .map(|d| {
            let sum: f64 = (d..n)
                .filter_map(|i| e.matrix.get(i, i - d))
                .map(f64::from)
                .sum();
            (sum / (n - d) as f64) as f32
        })
        .collect()
}

/// The parts of a matrix's name: (block, role, head), from its stem (`block1.L.h0` → block
/// "1", role "L", head "0"; a shared kernel has no block, a single head no head).
pub fn name_parts(stem: &str) -> (Option<&str>, &str, Option<&str>) {
    let mut block = None;
    let mut head = None;
    let mut role = stem;
    for part in stem.split('.') {
        if let Some(b) = part.strip_prefix("block") {
            block = Some(b);
        } else if let Some(h) = part
            .strip_prefix('h')
            .filter(|h| h.parse::<usize>().is_ok())
        {
            head = Some(h);
        } else {
            role = part;
        }
    }
    (block, role, head)
}

/// The title of a matrix's pictures: block, matrix, head, and what white (or the dashed line)
/// stands for.
pub fn title(e: &Exported) -> String {
    let (block, _, head) = name_parts(&e.stem);
    let block = block.map_or_else(|| "all blocks".to_string(), |b| format!("block {b}"));
    let head = head.map_or_else(|| "all heads".to_string(), |h| format!("head {h}"));
    format!("{block} · {} · {head} (init {})", e.what, e.centre)
}

/// The shape of a distance profile, computed from its values (the automatic description of
/// `pasa report`).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub min: f32,
    pub max: f32,
    /// max / min, when every value is positive.
    pub spread: Option<f32>,
    /// The distance δ ≥ 1 with the largest value, and that value over the median of the
    /// profile (None for a profile of one value).
    pub peak: Option<(usize, f32)>,
    /// Share of Σ|t[δ]| at δ ≤ 2, and what a flat profile would have (3/len).
    pub recency: f64,
    pub flat_recency: f64,
    /// One of "near-uniform", "recency-focused", "peak at δ = k", "broad", by [`shape`]'s rules.
    pub label: String,
}

/// Distances that count as recent in [`Shape::recency`].
pub const RECENT: usize = 2;

/// The shape of `t` (a profile over δ = 0..len): min, max, spread, the largest δ ≥ 1, the share
/// of the absolute mass at δ ≤ 2; labelled by these rules, in order:
/// near-uniform when max − min ≤ 0.25·max|t| (for positive values: max/min ≤ 1.33);
/// recency-focused when the largest value is at δ ≤ 2 and the recent share is at least twice
/// the flat share; "peak at δ = k" when the largest value at δ ≥ 1 is at k > 2 and at least
/// 1.25 × the median; broad otherwise.
pub fn shape(t: &[f32]) -> Shape {
    let finite: Vec<f32> = t.iter().copied().filter(|v| v.is_finite()).collect();
    let min = finite.iter().copied().fold(f32::INFINITY, f32::min);
    let max = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let spread = (min > 0.0).then(|| max / min);
    let mut sorted = finite.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let argmax = |from: usize| {
        (from..t.len())
            .filter(|&d| t[d].is_finite())
            .max_by(|&a, &b| t[a].total_cmp(&t[b]).then(b.cmp(&a)))
    };
    let peak = argmax(1).map(|d| {
        (
            d,
            if median != 0.0 {
                t[d] / median
            } else {
                f32::NAN
            },
        )
    });
    let abs: f64 = finite.iter().map(|v| v.abs() as f64).sum();
    let recent: f64 = t
        .iter()
        .take(RECENT + 1)
        .filter(|v| v.is_finite())
        .map(|v| v.abs() as f64)
        .sum();
    let recency = if abs > 0.0 { recent / abs } else { 0.0 };
    let flat_recency = (RECENT + 1).min(t.len()) as f64 / t.len().max(1) as f64;
    let amp = max.abs().max(min.abs());
    let label = if finite.is_empty() {
        "no finite values".to_string()
    } else if max - min <= 0.25 * amp {
        "near-uniform".to_string()
    } else if argmax(0).is_some_and(|d| d <= RECENT) && recency >= 2.0 * flat_recency {
        "recency-focused".to_string()
    } else {
        match peak {
            Some((d, r)) if d > RECENT && r >= 1.25 => format!("peak at δ = {d}"),
            _ => "broad".to_string(),
        }
    };
    Shape {
        min,
        max,
        spread,
        peak,
        recency,
        flat_recency,
        label,
    }
}

/// The distance-profile chart of one matrix.
fn profile_panel(e: &Exported) -> Panel {
    let kind = if e.by_distance.is_some() {
        "t[δ]"
    } else {
        "mean of diagonal δ"
    };
    Panel {
        title: format!("{} by distance: {kind}", e.stem),
        x_desc: "distance δ = i − j".into(),
        y_desc: kind.into(),
        series: vec![Series {
            label: e.stem.clone(),
            points: profile(e)
                .iter()
                .enumerate()
                .map(|(d, &v)| (d as f64, v as f64))
                .collect(),
        }],
        reference: Some(e.centre as f64),
    }
}

/// The distance-profile picture of one matrix.
pub fn profile_figure(e: &Exported) -> Result<plot::Canvas> {
    plot::figure(&title(e), &[profile_panel(e)])
}

/// Write `<out>/<stem>.csv`, the heatmap `<out>/<stem>.png` (cells `scale` px square) and the
/// distance profile `<out>/<stem>.profile.png`; the three paths.
pub fn write(out: &Path, e: &Exported, scale: usize) -> Result<[PathBuf; 3]> {
    let csv = out.join(format!("{}.csv", e.stem));
    let png = out.join(format!("{}.png", e.stem));
    let prof = out.join(format!("{}.profile.png", e.stem));
    crate::checkpoint::write_atomic(&csv, e.matrix.to_csv().as_bytes())?;
    let n = e.matrix.n;
    heatmap::write_png(&png, &title(e), n, n, &e.matrix.cells, e.centre, scale)?;
    profile_figure(e)?.save(&prof)?;
    Ok([csv, png, prof])
}

/// Every matrix's distance profile in one picture, `<out>/profiles.png`: a chart per role (U,
/// L, P), a line per block (and head); None when there is nothing to draw.
pub fn write_profiles(out: &Path, all: &[Exported]) -> Result<Option<PathBuf>> {
    let mut roles: Vec<&str> = vec![];
    for e in all {
        let role = name_parts(&e.stem).1;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Ok(None);
    }
    let panels: Vec<Panel> = roles
        .iter()
        .map(|&role| {
            let of_role: Vec<&Exported> = all
                .iter()
                .filter(|e| name_parts(&e.stem).1 == role)
                .collect();
            let toeplitz = of_role.iter().all(|e| e.by_distance.is_some());
            let y = if toeplitz {
                "t[δ]"
            } else {
                "mean of diagonal δ"
            };
            Panel {
                title: of_role[0].what.clone(),
                x_desc: "distance δ = i − j".into(),
                y_desc: y.into(),
                series: of_role
                    .iter()
                    .map(|e| {
                        let (b, _, h) = name_parts(&e.stem);
                        let label = match (b, h) {
                            (Some(b), Some(h)) => format!("block {b}, head {h}"),
                            (Some(b), None) => format!("block {b}"),
                            (None, Some(h)) => format!("shared, head {h}"),
                            (None, None) => "shared".to_string(),
                        };
                        Series {
                            label,
                            points: profile(e)
                                .iter()
                                .enumerate()
                                .map(|(d, &v)| (d as f64, v as f64))
                                .collect(),
                        }
                    })
                    .collect(),
                reference: Some(of_role[0].centre as f64),
            }
        })
        .collect();
    let path = out.join("profiles.png");
    plot::figure("distance profiles (dashed: initial value)", &panels)?.save(&path)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(m: &Causal) -> Vec<Vec<Option<f32>>> {
        m.cells.chunks(m.n).map(|r| r.to_vec()).collect()
    }

    #[test]
    fn full_kernel_expands_row_packed() {
        let m = expand_kernel(KernelKind::Full, 1, &[7.0]).unwrap();
        assert_eq!(rows(&m), vec![vec![Some(7.0)]]);
        // (0,0)=1; (1,0)=2 (1,1)=3; (2,0)=4 (2,1)=5 (2,2)=6.
        let m = expand_kernel(KernelKind::Full, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            rows(&m),
            vec![
                vec![Some(1.0), None, None],
                vec![Some(2.0), Some(3.0), None],
                vec![Some(4.0), Some(5.0), Some(6.0)],
            ]
        );
    }

    #[test]
    fn toeplitz_kernel_expands_by_distance() {
        let m = expand_kernel(KernelKind::Toeplitz, 1, &[0.5]).unwrap();
        assert_eq!(rows(&m), vec![vec![Some(0.5)]]);
        let m = expand_kernel(KernelKind::Toeplitz, 3, &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            rows(&m),
            vec![
                vec![Some(1.0), None, None],
                vec![Some(2.0), Some(1.0), None],
                vec![Some(3.0), Some(2.0), Some(1.0)],
            ]
        );
    }

    #[test]
    fn wrong_lengths_and_none_are_errors() {
        assert!(expand_kernel(KernelKind::Full, 3, &[1.0; 5]).is_err());
        assert!(expand_kernel(KernelKind::Toeplitz, 3, &[1.0; 6]).is_err());
        assert!(expand_kernel(KernelKind::None, 3, &[]).is_err());
        assert!(lower_of_square(2, &[1.0; 3]).is_err());
        assert!(factor_product(2, 2, &[1.0; 4], &[1.0; 3]).is_err());
    }

    #[test]
    fn heads_slice_in_order() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(head_slice(&data, 1, 0).unwrap(), &data[..]);
        assert_eq!(head_slice(&data, 2, 1).unwrap(), &[4.0, 5.0, 6.0]);
        assert_eq!(head_slice(&data, 3, 0).unwrap(), &[1.0, 2.0]);
        assert!(head_slice(&data, 2, 2).is_err());
        assert!(head_slice(&data, 4, 0).is_err());
        // Two heads of a toeplitz kernel of n = 3.
        let m = expand_kernel(KernelKind::Toeplitz, 3, head_slice(&data, 2, 1).unwrap()).unwrap();
        assert_eq!(m.get(2, 0), Some(6.0));
        assert_eq!(m.get(1, 1), Some(4.0));
    }

    #[test]
    fn square_and_factorised_keep_the_causal_part() {
        let m = lower_of_square(2, &[1.0, 9.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            rows(&m),
            vec![vec![Some(1.0), None], vec![Some(2.0), Some(3.0)]]
        );
        // A = [[1, 2], [3, 4]], B = [[1, 0], [0, 1]]: A·Bᵀ = A.
        let m = factor_product(2, 2, &[1.0, 2.0, 3.0, 4.0], &[1.0, 0.0, 0.0, 1.0]).unwrap();
        assert_eq!(
            rows(&m),
            vec![vec![Some(1.0), None], vec![Some(3.0), Some(4.0)]]
        );
    }

    #[test]
    fn csv_leaves_the_upper_triangle_empty_and_round_trips() {
        let x = 0.1f32 + 0.2;
        let m = expand_kernel(KernelKind::Full, 3, &[1.0, -2.5, x, 1e-7, 4.0, 5.0]).unwrap();
        let csv = m.to_csv();
        assert_eq!(csv, format!("1,,\n-2.5,{x},\n0.0000001,4,5\n"), "{csv}");
        let back: f32 = csv
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(back.to_bits(), x.to_bits());
        assert_eq!(
            expand_kernel(KernelKind::Toeplitz, 1, &[2.0])
                .unwrap()
                .to_csv(),
            "2\n"
        );
    }

    fn tiny(name: &str, edit: impl Fn(&mut crate::models::ModelConfig)) -> Model {
        let mut c = crate::models::ModelConfig::preset(name, 10).unwrap();
        (c.n, c.d, c.d_ff, c.rank) = (3, 8, 8, 2);
        edit(&mut c);
        Model::new(c).unwrap()
    }

    fn stems(v: &[Exported]) -> Vec<&str> {
        v.iter().map(|e| e.stem.as_str()).collect()
    }

    #[test]
    fn collect_names_every_matrix_once_with_its_centre() {
        let m = tiny("pasa", |_| {});
        let got = collect(&m, &m.params.init(1)).unwrap();
        assert_eq!(
            stems(&got),
            ["block0.U", "block0.L", "block1.U", "block1.L"]
        );
        assert!(got.iter().all(|e| e.centre == 1.0));
        assert!(got[0].by_distance.is_some() && got[1].by_distance.is_none());
        // Untrained kernels are all ones.
        assert!(got.iter().all(|e| e.matrix.values().all(|v| v == 1.0)));

        // Shared kernels appear once; the mix reading's L starts as I and is centred on 0.
        let m = tiny("pasa", |c| {
            c.kernel_shared = true;
            c.reading = crate::models::Reading::Mix;
        });
        let got = collect(&m, &m.params.init(1)).unwrap();
        assert_eq!(stems(&got), ["U", "L"]);
        assert_eq!(got[1].centre, 0.0);
        let l = &got[1].matrix;
        assert_eq!(
            (l.get(0, 0), l.get(2, 2), l.get(2, 1)),
            (Some(1.0), Some(1.0), Some(0.0))
        );

        // PARec's P per head; FPARec's A·Bᵀ named P.
        let m = tiny("parec", |c| c.heads = 2);
        let flat = m.params.init(1);
        let got = collect(&m, &flat).unwrap();
        assert_eq!(
            stems(&got),
            ["block0.P.h0", "block0.P.h1", "block1.P.h0", "block1.P.h1"]
        );
        let p = m.params.find("block0.P").unwrap();
        // Head 1, [2][1] of [heads, n, n].
        assert_eq!(got[1].matrix.get(2, 1), Some(flat[p.off + 9 + 2 * 3 + 1]));
        let m = tiny("fparec", |_| {});
        let got = collect(&m, &m.params.init(1)).unwrap();
        assert_eq!(stems(&got), ["block0.P", "block1.P"]);
        assert_eq!(got[0].centre, 0.0);

        assert!(collect(&tiny("sasrec", |_| {}), &[]).unwrap().is_empty());
    }

    #[test]
    fn stats_cover_the_causal_support_only() {
        let m = expand_kernel(KernelKind::Toeplitz, 3, &[1.0, 2.0, 4.0]).unwrap();
        let s = stats(&m);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        // Three 1s, two 2s, one 4.
        assert!((s.mean - 11.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn profiles_and_shapes() {
        let t = expand_kernel(KernelKind::Toeplitz, 3, &[1.0, 2.0, 4.0]).unwrap();
        let e = Exported {
            stem: "block1.U.h0".into(),
            what: "U, toeplitz".into(),
            matrix: t,
            centre: 1.0,
            by_distance: Some(vec![1.0, 2.0, 4.0]),
        };
        assert_eq!(profile(&e), [1.0, 2.0, 4.0]);
        assert_eq!(name_parts("block1.U.h0"), (Some("1"), "U", Some("0")));
        assert_eq!(name_parts("L"), (None, "L", None));
        assert_eq!(title(&e), "block 1 · U, toeplitz · head 0 (init 1)");
        // A full matrix: diagonal means.
        let f = Exported {
            by_distance: None,
            matrix: expand_kernel(KernelKind::Full, 2, &[1.0, 3.0, 2.0]).unwrap(),
            ..e
        };
        assert_eq!(profile(&f), [1.5, 3.0]);

        assert_eq!(shape(&[1.0, 1.1, 0.95, 1.0]).label, "near-uniform");
        let s = shape(&[3.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
        assert_eq!(s.label, "recency-focused");
        assert_eq!(s.spread, Some(6.0));
        assert!((s.recency - 6.0 / 9.5).abs() < 1e-9 && (s.flat_recency - 0.3).abs() < 1e-12);
        let s = shape(&[1.0, 0.5, 0.5, 0.5, 0.5, 2.0, 0.5, 0.5]);
        assert_eq!(s.label, "peak at δ = 5");
        assert_eq!(s.peak, Some((5, 4.0)));
        assert_eq!(shape(&[1.0, 0.2, 0.4, 0.6, 0.8, 0.9]).label, "broad");
    }
}
