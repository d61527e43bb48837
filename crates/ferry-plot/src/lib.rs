//! Plots of host arrays (feature `plot`): scatter plots (one panel per array), histograms and
//! heatmaps, to PNG or SVG by the file's extension. Values are read through an explicit
//! `cast::<f64>()`.

use std::path::Path;
use std::sync::OnceLock;

use ferry_core::{DType, Error, HostArray, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Fonts searched for axis labels when `FERRY_FONT` is not set (Debian's fonts-dejavu-core and
/// common alternatives).
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn plot_error(what: impl std::fmt::Display) -> Error {
    Error::backend_message("plotters", what.to_string())
}

/// Registers a TrueType font for labels once per process.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("FERRY_FONT").into_iter().chain(FONT_PATHS.iter().map(|p| p.to_string())).collect();
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!("no TrueType font found for plot labels (tried {candidates:?}); install fonts-dejavu-core or set FERRY_FONT"))
    })
    .clone()
    .map_err(plot_error)
}

/// The values of a real array as f64 (an explicit cast, recorded as a copy).
fn values(array: &HostArray) -> Result<(Vec<usize>, Vec<f64>)> {
    if array.dtype().is_complex() || !array.dtype().is_typed() {
        return Err(Error::UnsupportedCast {
            from: array.dtype(),
            to: DType::F64,
            hint: "plots need real values",
        });
    }
    let f = array.cast::<f64>()?;
    let v = f.view::<f64>()?;
    Ok((v.shape().to_vec(), v.iter().copied().collect()))
}

fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Draws into a PNG or SVG file of `size` pixels, by `path`'s extension.
fn draw(
    path: &Path,
    size: (u32, u32),
    paint: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
    paint_svg: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            paint(&root)?;
            root.present().map_err(plot_error)
        }
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            paint_svg(&root)?;
            root.present().map_err(plot_error)
        }
        other => Err(plot_error(format!(
            "plot path {} must end in .png or .svg (got {other:?})",
            path.display()
        ))),
    }
}

/// Scatter plots of n×2 arrays, one panel per `(title, array)`, side by side, under `title`.
pub fn scatter(
    panels: &[(&str, &HostArray)],
    title: &str,
    path: &Path,
    size: (u32, u32),
) -> Result<()> {
    let mut points = Vec::new();
    for (name, array) in panels {
        let (shape, v) = values(array)?;
        if shape.len() != 2 || shape[1] != 2 {
            return Err(Error::RankMismatch {
                shape,
                expected: 2,
                found: array.ndim(),
            });
        }
        points.push((
            name.to_string(),
            v.chunks(2).map(|p| (p[0], p[1])).collect::<Vec<_>>(),
        ));
    }
    macro_rules! paint {
        ($root:expr) => {{
            let root = $root
                .titled(title, ("sans-serif", 26))
                .map_err(plot_error)?;
            let areas = root.split_evenly((1, points.len().max(1)));
            for ((name, pts), area) in points.iter().zip(areas.iter()) {
                let (x0, x1) = finite_range(pts.iter().map(|p| p.0));
                let (y0, y1) = finite_range(pts.iter().map(|p| p.1));
                let mut chart = ChartBuilder::on(area)
                    .caption(name, ("sans-serif", 20))
                    .margin(12)
                    .x_label_area_size(36)
                    .y_label_area_size(44)
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(plot_error)?;
                chart
                    .configure_mesh()
                    .x_desc("x (column 0)")
                    .y_desc("y (column 1)")
                    .draw()
                    .map_err(plot_error)?;
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&p| Circle::new(p, 3, BLUE.mix(0.6).filled())),
                    )
                    .map_err(plot_error)?;
            }
            Ok(())
        }};
    }
    draw(path, size, |root| paint!(root), |root| paint!(root))
}

/// A histogram of all values in `bins` equal bins.
pub fn histogram(
    array: &HostArray,
    bins: usize,
    title: &str,
    path: &Path,
    size: (u32, u32),
) -> Result<()> {
    let (_, v) = values(array)?;
    let bins = bins.max(1);
    let (lo, hi) = finite_range(v.iter().copied());
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for x in v.iter().filter(|x| x.is_finite()) {
        counts[(((x - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    macro_rules! paint {
        ($root:expr) => {{
            let mut chart = ChartBuilder::on($root)
                .caption(title, ("sans-serif", 24))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("value")
                .y_desc("count")
                .draw()
                .map_err(plot_error)?;
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                    let x = lo + i as f64 * width;
                    Rectangle::new([(x, 0), (x + width, c)], BLUE.mix(0.7).filled())
                }))
                .map_err(plot_error)?;
            Ok(())
        }};
    }
    draw(path, size, |root| paint!(root), |root| paint!(root))
}

/// A heatmap of a 2-D array (row 0 at the top), blue (low) to red (high).
pub fn heatmap(array: &HostArray, title: &str, path: &Path, size: (u32, u32)) -> Result<()> {
    let (shape, v) = values(array)?;
    if shape.len() != 2 {
        return Err(Error::RankMismatch {
            shape,
            expected: 2,
            found: array.ndim(),
        });
    }
    let (rows, cols) = (shape[0], shape[1]);
    let (lo, hi) = finite_range(v.iter().copied());
    macro_rules! paint {
        ($root:expr) => {{
            let mut chart = ChartBuilder::on($root)
                .caption(title, ("sans-serif", 24))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(44)
                .build_cartesian_2d(0..cols, rows..0)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("column")
                .y_desc("row")
                .draw()
                .map_err(plot_error)?;
            chart
                .draw_series((0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))).map(
                    |(r, c)| {
                        let t = ((v[r * cols + c] - lo) / (hi - lo)).clamp(0.0, 1.0);
                        let color = RGBColor((255.0 * t) as u8, 64, (255.0 * (1.0 - t)) as u8);
                        Rectangle::new([(c, r), (c + 1, r + 1)], color.filled())
                    },
                ))
                .map_err(plot_error)?;
            Ok(())
        }};
    }
    draw(path, size, |root| paint!(root), |root| paint!(root))
}
