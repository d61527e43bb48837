//! `ferry-plot`: scatter plots (one panel per array), histograms and heatmaps of
//! [`HostArray`]s, to PNG or SVG by the file's extension; the facade re-exports it as
//! `ferry::plot` (feature `plot`). Values are read through an explicit `cast::<f64>()`.
//!
//! Axis labels need a TrueType font: `FERRY_FONT` if set, else DejaVu Sans (Debian/Ubuntu
//! package `fonts-dejavu-core`) or Liberation Sans from the usual system paths.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferry_core::{DType, HostArray};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Result alias for `ferry-plot`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when plotting a host array.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scatter panel that is not an (n, 2) array of x, y pairs.
    #[error(
        "scatter needs an (n, 2) array of x, y pairs; panel `{panel}` has shape {shape:?} (dtype {dtype})"
    )]
    NotPairs {
        /// The panel's title.
        panel: String,
        /// Shape of the array.
        shape: Vec<usize>,
        /// Dtype of the array.
        dtype: DType,
    },
    /// A heatmap of an array that is not 2-D.
    #[error("heatmap needs a 2-D array (rows, columns); got shape {shape:?} (dtype {dtype})")]
    NotMatrix {
        /// Shape of the array.
        shape: Vec<usize>,
        /// Dtype of the array.
        dtype: DType,
    },
    /// An array whose values are not real numbers (complex, or a raw dtype without a typed view).
    #[error(
        "plots need real values; the array of shape {shape:?} has dtype {dtype} (cast it to a real dtype first)"
    )]
    NotReal {
        /// Shape of the array.
        shape: Vec<usize>,
        /// Dtype of the array.
        dtype: DType,
    },
    /// An output path whose extension names no format ferry can write.
    #[error(
        "unsupported image extension {} for {}: use .png or .svg",
        describe_extension(.extension.as_deref()),
        .path.display()
    )]
    UnsupportedExtension {
        /// The extension (`None` when the path has none or it is not UTF-8).
        extension: Option<String>,
        /// The output path.
        path: PathBuf,
    },
    /// No font for axis labels could be loaded.
    #[error(
        "no TrueType font for plot labels (tried {}); install fonts-dejavu-core (Debian/Ubuntu) or set FERRY_FONT=/path/to/font.ttf",
        describe_tried(.tried)
    )]
    NoFont {
        /// Each path tried, with why it could not be used.
        tried: Vec<(PathBuf, String)>,
    },
    /// `FERRY_FONT` names a file that is missing or not a TrueType font (ferry does not fall
    /// back to the system fonts then: the variable says which font the user wants).
    #[error(
        "FERRY_FONT={}: {reason}; point it at a .ttf file, or unset it to use DejaVu Sans or Liberation Sans",
        .path.display()
    )]
    BadFont {
        /// The path `FERRY_FONT` gives.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The output path's folder does not exist (checked before any drawing).
    #[error(
        "cannot write {}: the folder {} does not exist; create it first (std::fs::create_dir_all)",
        .path.display(),
        .folder.display()
    )]
    NoFolder {
        /// The output path.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// plotters failed to draw or to write the file.
    #[error("drawing {} failed: {source}", .path.display())]
    Draw {
        /// The output path.
        path: PathBuf,
        /// plotters' error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the array's values failed (the cast to f64).
    #[error(transparent)]
    Core(#[from] ferry_core::Error),
}

fn describe_extension(extension: Option<&str>) -> String {
    extension.map_or_else(|| "(none)".to_string(), |e| format!("`{e}`"))
}

fn describe_tried(tried: &[(PathBuf, String)]) -> String {
    let each: Vec<String> = tried
        .iter()
        .map(|(path, why)| format!("{}: {why}", path.display()))
        .collect();
    each.join(", ")
}

/// Fonts searched for axis labels when `FERRY_FONT` is not set (Debian's fonts-dejavu-core and
/// common alternatives).
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Radius of a scatter marker, in pixels.
const MARKER: u32 = 3;
/// Margin around each chart, in pixels.
const MARGIN: u32 = 12;
/// Height of the x label area below each chart, in pixels.
const X_LABELS: u32 = 36;
/// Width of the y label area left of each chart, in pixels.
const Y_LABELS: u32 = 44;

/// Registers a TrueType font for labels once per process: `FERRY_FONT` if set (and only it),
/// else the first of [`FONT_PATHS`] that loads.
fn ensure_font() -> Result<()> {
    /// Why no font was registered, kept for every later call.
    #[derive(Clone)]
    enum Missing {
        /// `FERRY_FONT`'s path, and why it could not be used.
        Named(PathBuf, String),
        /// Each system path tried, and why it could not be used.
        System(Vec<(PathBuf, String)>),
    }
    static FONT: OnceLock<std::result::Result<(), Missing>> = OnceLock::new();
    FONT.get_or_init(|| {
        if let Some(path) = std::env::var_os("FERRY_FONT").map(PathBuf::from) {
            return register_font(&path).map_err(|reason| Missing::Named(path, reason));
        }
        let mut tried = Vec::new();
        for path in FONT_PATHS.iter().map(PathBuf::from) {
            match register_font(&path) {
                Ok(()) => return Ok(()),
                Err(reason) => tried.push((path, reason)),
            }
        }
        Err(Missing::System(tried))
    })
    .clone()
    .map_err(|missing| match missing {
        Missing::Named(path, reason) => Error::BadFont { path, reason },
        Missing::System(tried) => Error::NoFont { tried },
    })
}

/// Registers the TrueType font at `path` as plotters' sans-serif, or says why it cannot.
fn register_font(path: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    // plotters keeps the font for the process's life: leaked once (the caller's OnceLock).
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "not a TrueType font".to_string())
}

/// The values of a real array as f64 (an explicit cast, recorded as a copy).
fn values(array: &HostArray) -> Result<(Vec<usize>, Vec<f64>)> {
    let dtype = array.dtype();
    if dtype.is_complex() || !dtype.is_typed() {
        return Err(Error::NotReal {
            shape: array.shape().to_vec(),
            dtype,
        });
    }
    let f = array.cast::<f64>()?;
    let v = f.view::<f64>()?;
    Ok((v.shape().to_vec(), v.iter().copied().collect()))
}

/// The smallest and largest finite value; a non-empty range around a single value, and `0..1`
/// when there is none.
fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        let half = (lo.abs() * 0.05).max(0.5);
        (lo - half, hi + half)
    } else {
        (lo, hi)
    }
}

/// `range` widened on both sides so that a marker of [`MARKER`] pixels at either end lies fully
/// inside an axis `pixels` long: by 5 % of the range, or more where the marker needs it.
fn padded((lo, hi): (f64, f64), pixels: u32) -> (f64, f64) {
    let span = hi - lo;
    // A marker reaching `r` pixels from its centre needs pad / (span + 2 pad) >= r / pixels.
    let r = f64::from(MARKER + 2);
    let room = f64::from(pixels) - 2.0 * r;
    let fraction = if room > 0.0 {
        (r / room).max(0.05)
    } else {
        0.5
    };
    let pad = span * fraction;
    if pad.is_finite() {
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    }
}

/// One chart, ready to be painted on any backend.
enum Figure<'a> {
    /// One panel of points per `(title, points)`, side by side, under `title`.
    Scatter {
        title: &'a str,
        panels: Vec<(&'a str, Vec<(f64, f64)>)>,
    },
    /// Bars of `counts` over equal bins of `width` from `lo`.
    Histogram {
        title: &'a str,
        lo: f64,
        width: f64,
        counts: Vec<u32>,
    },
    /// `values` in row-major order, coloured between `range`.
    Heatmap {
        title: &'a str,
        rows: usize,
        cols: usize,
        values: Vec<f64>,
        range: (f64, f64),
    },
}

type Drawn<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart builder with ferry's margins, label areas and a caption.
fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    caption_size: u32,
) -> ChartBuilder<'a, 'static, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", caption_size))
        .margin(MARGIN)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS);
    builder
}

/// Paints `figure` onto `root`, whatever the backend.
fn paint<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, figure: &Figure<'_>) -> Drawn<DB> {
    root.fill(&WHITE)?;
    match figure {
        Figure::Scatter { title, panels } => {
            let root = root.titled(title, ("sans-serif", 26))?;
            let areas = root.split_evenly((1, panels.len().max(1)));
            for ((name, points), area) in panels.iter().zip(&areas) {
                // The plotting area: the panel less margins, label areas and caption.
                let (w, h) = area.dim_in_pixel();
                let plot_w = w.saturating_sub(2 * MARGIN + Y_LABELS);
                let plot_h = h.saturating_sub(2 * MARGIN + X_LABELS + 30);
                let (x0, x1) = padded(finite_range(points.iter().map(|p| p.0)), plot_w);
                let (y0, y1) = padded(finite_range(points.iter().map(|p| p.1)), plot_h);
                let mut chart = chart(area, name, 20).build_cartesian_2d(x0..x1, y0..y1)?;
                chart
                    .configure_mesh()
                    .x_desc("x (column 0)")
                    .y_desc("y (column 1)")
                    .draw()?;
                chart.draw_series(
                    points
                        .iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite())
                        .map(|&p| Circle::new(p, MARKER, BLUE.mix(0.6).filled())),
                )?;
            }
        }
        Figure::Histogram {
            title,
            lo,
            width,
            counts,
        } => {
            let (lo, width) = (*lo, *width);
            let hi = lo + width * counts.len() as f64;
            let top = counts.iter().copied().max().unwrap_or(1).max(1);
            let mut chart =
                chart(root, title, 24).build_cartesian_2d(lo..hi, 0..top + top / 10 + 1)?;
            chart
                .configure_mesh()
                .x_desc("value")
                .y_desc("count")
                .draw()?;
            chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x = lo + i as f64 * width;
                Rectangle::new([(x, 0), (x + width, c)], BLUE.mix(0.7).filled())
            }))?;
        }
        Figure::Heatmap {
            title,
            rows,
            cols,
            values,
            range: (lo, hi),
        } => {
            let (rows, cols) = (*rows, *cols);
            let mut chart = chart(root, title, 24).build_cartesian_2d(0..cols, rows..0)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("column")
                .y_desc("row")
                .draw()?;
            let cells = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
            chart.draw_series(cells.map(|(r, c)| {
                let t = ((values[r * cols + c] - lo) / (hi - lo)).clamp(0.0, 1.0);
                let color = RGBColor((255.0 * t) as u8, 64, (255.0 * (1.0 - t)) as u8);
                Rectangle::new([(c, r), (c + 1, r + 1)], color.filled())
            }))?;
        }
    }
    root.present()
}

/// The output format, from the path's extension (checked before any drawing).
enum Format {
    Png,
    Svg,
}

fn format(path: &Path) -> Result<Format> {
    let extension = path.extension().and_then(|e| e.to_str());
    match extension {
        Some(e) if e.eq_ignore_ascii_case("png") => Ok(Format::Png),
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(Format::Svg),
        _ => Err(Error::UnsupportedExtension {
            extension: extension.map(str::to_string),
            path: path.to_path_buf(),
        }),
    }
}

/// Writes `figure` to a PNG or SVG file of `size` pixels, by `path`'s extension.
fn render(path: &Path, size: (u32, u32), figure: &Figure<'_>) -> Result<()> {
    let format = format(path)?;
    let folder = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::NoFolder {
            path: path.to_path_buf(),
            folder: folder.to_path_buf(),
        });
    }
    ensure_font()?;
    let drawn: std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> = match format {
        Format::Png => {
            paint(&BitMapBackend::new(path, size).into_drawing_area(), figure).map_err(Into::into)
        }
        Format::Svg => {
            paint(&SVGBackend::new(path, size).into_drawing_area(), figure).map_err(Into::into)
        }
    };
    drawn.map_err(|source| Error::Draw {
        path: path.to_path_buf(),
        source,
    })
}

/// Scatter plots of (n, 2) arrays of x, y pairs, one panel per `(title, array)`, side by side,
/// under `title`, written to `path` (`.png` or `.svg`) at `size` pixels. The axes leave a margin
/// so that points at the edges are drawn whole; non-finite points are skipped.
pub fn scatter(
    panels: &[(&str, &HostArray)],
    title: &str,
    path: impl AsRef<Path>,
    size: (u32, u32),
) -> Result<()> {
    let mut points = Vec::with_capacity(panels.len());
    for &(name, array) in panels {
        if array.ndim() != 2 || array.shape()[1] != 2 {
            return Err(Error::NotPairs {
                panel: name.to_string(),
                shape: array.shape().to_vec(),
                dtype: array.dtype(),
            });
        }
        let (_, v) = values(array)?;
        points.push((name, v.chunks(2).map(|p| (p[0], p[1])).collect()));
    }
    render(
        path.as_ref(),
        size,
        &Figure::Scatter {
            title,
            panels: points,
        },
    )
}

/// A histogram of all finite values of `array` in `bins` equal bins (at least one), written to
/// `path` (`.png` or `.svg`) at `size` pixels.
pub fn histogram(
    array: &HostArray,
    bins: usize,
    title: &str,
    path: impl AsRef<Path>,
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
    let figure = Figure::Histogram {
        title,
        lo,
        width,
        counts,
    };
    render(path.as_ref(), size, &figure)
}

/// A heatmap of a 2-D array (row 0 at the top), blue (low) to red (high), written to `path`
/// (`.png` or `.svg`) at `size` pixels.
pub fn heatmap(
    array: &HostArray,
    title: &str,
    path: impl AsRef<Path>,
    size: (u32, u32),
) -> Result<()> {
    if array.ndim() != 2 {
        return Err(Error::NotMatrix {
            shape: array.shape().to_vec(),
            dtype: array.dtype(),
        });
    }
    let (shape, values) = values(array)?;
    let range = finite_range(values.iter().copied());
    let figure = Figure::Heatmap {
        title,
        rows: shape[0],
        cols: shape[1],
        values,
        range,
    };
    render(path.as_ref(), size, &figure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_range_is_widened() {
        for v in [0.0, 3.0, -1e6, 1e20] {
            let (lo, hi) = finite_range([v, v].into_iter());
            assert!(lo < v && v < hi, "{v}: {lo}..{hi}");
            let (lo, hi) = padded((lo, hi), 200);
            assert!(lo < v && v < hi, "{v}: {lo}..{hi}");
        }
        assert_eq!(finite_range([f64::NAN].into_iter()), (0.0, 1.0));
    }

    #[test]
    fn padding_leaves_room_for_a_marker() {
        for pixels in [20, 100, 1000] {
            let (lo, hi) = padded((0.0, 10.0), pixels);
            let from_edge = (hi - 10.0) / (hi - lo) * f64::from(pixels);
            assert!(from_edge >= f64::from(MARKER + 1), "{pixels}: {from_edge}");
            assert!(
                lo <= -0.5 && (lo + hi - 10.0).abs() < 1e-9,
                "symmetric, at least 5 %"
            );
        }
    }

    #[test]
    fn extensions_are_checked_before_drawing() {
        assert!(matches!(format(Path::new("a/b.PNG")), Ok(Format::Png)));
        assert!(matches!(format(Path::new("b.svg")), Ok(Format::Svg)));
        let err = format(Path::new("plot")).err().unwrap();
        assert_eq!(
            err.to_string(),
            "unsupported image extension (none) for plot: use .png or .svg"
        );
    }

    #[test]
    fn a_missing_font_says_what_was_tried_and_how_to_fix_it() {
        let err = Error::NoFont {
            tried: vec![(PathBuf::from("/a.ttf"), "No such file or directory".into())],
        };
        let message = err.to_string();
        assert!(
            message.contains("/a.ttf: No such file or directory"),
            "{message}"
        );
        assert!(
            message.contains("fonts-dejavu-core") && message.contains("FERRY_FONT="),
            "{message}"
        );
    }

    #[test]
    fn errors_travel_as_boxed_errors() {
        fn assert_std_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_std_error::<Error>();
    }
}
