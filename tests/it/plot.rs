//! The plot module renders real, non-trivial images of the requested size.

use std::collections::HashSet;

use ferry::HostArray;

fn decode(path: &std::path::Path) -> (u32, u32, Vec<u8>, png::ColorType) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf, info.color_type)
}

fn distinct_pixels(buf: &[u8], color: png::ColorType) -> usize {
    let step = match color {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        _ => 1,
    };
    buf.chunks(step)
        .map(|p| p.to_vec())
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn scatter_histogram_and_heatmap_render_pngs_and_svgs() {
    let dir = std::env::temp_dir().join(format!("ferry-plot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let points = HostArray::from_vec(
        vec![50, 2],
        (0..100).map(|i| ((i * 37) % 100) as f32 / 10.0).collect(),
    )
    .unwrap();
    let grid = HostArray::from_vec(vec![6, 8], (0..48).map(|i| i as f64).collect()).unwrap();

    let scatter = dir.join("scatter.png");
    ferry::plot::scatter(
        &[("left", &points), ("right", &points)],
        "two panels",
        &scatter,
        (640, 320),
    )
    .unwrap();
    let (w, h, buf, color) = decode(&scatter);
    assert_eq!((w, h), (640, 320), "the requested size");
    assert!(distinct_pixels(&buf, color) > 10, "not a blank image");
    assert!(std::fs::metadata(&scatter).unwrap().len() > 2_000);

    let hist = dir.join("hist.png");
    ferry::plot::histogram(&points, 10, "histogram", &hist, (400, 300)).unwrap();
    assert_eq!(decode(&hist).0, 400);

    let heat = dir.join("heat.png");
    ferry::plot::heatmap(&grid, "heatmap", &heat, (300, 300)).unwrap();
    let (_, _, buf, color) = decode(&heat);
    assert!(
        distinct_pixels(&buf, color) > 20,
        "a gradient has many colours"
    );

    let svg = dir.join("scatter.svg");
    ferry::plot::scatter(&[("only", &points)], "svg", &svg, (300, 300)).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("<circle"),
        "an SVG with points"
    );

    let err = ferry::plot::scatter(
        &[("bad", &grid)],
        "wrong shape",
        dir.join("x.png"),
        (100, 100),
    )
    .unwrap_err();
    assert!(matches!(err, ferry::plot::Error::NotPairs { .. }), "{err}");
    let err =
        ferry::plot::heatmap(&grid, "bad extension", dir.join("x.jpg"), (100, 100)).unwrap_err();
    assert!(err.to_string().contains(".png or .svg"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scatter_of_a_square_array_names_its_shape() {
    let square = HostArray::from_vec(vec![5, 5], (0..25).map(|i| i as f32).collect()).unwrap();
    let path = std::env::temp_dir().join(format!("ferry-plot-square-{}.png", std::process::id()));
    let err = ferry::plot::scatter(&[("square", &square)], "5x5", &path, (100, 100)).unwrap_err();
    match &err {
        ferry::plot::Error::NotPairs { shape, panel, .. } => {
            assert_eq!((shape.as_slice(), panel.as_str()), (&[5, 5][..], "square"))
        }
        other => panic!("expected NotPairs, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("[5, 5]") && message.contains("(n, 2)"),
        "{message}"
    );
    assert!(!path.exists(), "nothing is written for a refused array");
}

#[test]
fn unsupported_extension_is_named() {
    let points = HostArray::from_vec(vec![2, 2], vec![0f32, 0., 1., 1.]).unwrap();
    let path = std::env::temp_dir().join("ferry-plot-never-written.jpg");
    let err = ferry::plot::scatter(&[("p", &points)], "jpg", &path, (100, 100)).unwrap_err();
    match &err {
        ferry::plot::Error::UnsupportedExtension { extension, .. } => {
            assert_eq!(extension.as_deref(), Some("jpg"))
        }
        other => panic!("expected UnsupportedExtension, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`jpg`") && message.contains("ferry-plot-never-written.jpg"),
        "{message}"
    );
    // `anyhow` and `Box<dyn Error>` users can take it with `?`.
    let boxed: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(err);
    assert!(boxed.to_string().contains(".png or .svg"));
}

#[test]
fn a_plot_into_a_missing_folder_names_the_folder() {
    let points = HostArray::from_vec(vec![2, 2], vec![0f32, 0., 1., 1.]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("not-made-yet");
    let path = folder.join("scatter.png");
    let err = ferry::plot::scatter(&[("p", &points)], "t", &path, (100, 100)).unwrap_err();
    match &err {
        ferry::plot::Error::NoFolder { folder: named, .. } => assert_eq!(named, &folder),
        other => panic!("expected NoFolder, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("does not exist") && message.contains("not-made-yet"),
        "{message}"
    );
    assert!(
        !message.contains("IoError"),
        "no plotters debug dump: {message}"
    );
}

/// A `FERRY_FONT` that names no font is an error naming it, not a silent fallback. Fonts are
/// registered once per process, so the check runs in a child process of this test binary
/// with the variable set.
#[test]
fn a_wrong_ferry_font_is_named_not_ignored() {
    if let Some(font) = std::env::var_os("FERRY_FONT_CHILD") {
        let points = HostArray::from_vec(vec![2, 2], vec![0f32, 0., 1., 1.]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err =
            ferry::plot::scatter(&[("p", &points)], "t", dir.path().join("s.png"), (100, 100))
                .unwrap_err();
        match &err {
            ferry::plot::Error::BadFont { path, .. } => assert_eq!(path.as_os_str(), font),
            other => panic!("expected BadFont, got {other:?}"),
        }
        assert!(
            err.to_string().contains("FERRY_FONT=/wrong/font.ttf"),
            "{err}"
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "plot::a_wrong_ferry_font_is_named_not_ignored"])
        .env("FERRY_FONT", "/wrong/font.ttf")
        .env("FERRY_FONT_CHILD", "/wrong/font.ttf")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bounding box and pixel count of the marker-blue pixels whose x lies in `columns`.
fn blue_blob(
    buf: &[u8],
    width: u32,
    step: usize,
    columns: std::ops::Range<u32>,
) -> (u32, u32, u32, u32, usize) {
    let (mut x0, mut y0, mut x1, mut y1, mut n) = (u32::MAX, u32::MAX, 0, 0, 0);
    for (i, p) in buf.chunks(step).enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        if columns.contains(&x) && b > r + 60 && b > g + 60 {
            (x0, y0, x1, y1, n) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y), n + 1);
        }
    }
    (x0, y0, x1, y1, n)
}

#[test]
fn scatter_draws_edge_points_whole() {
    // The corners (0, 0) and (10, 10) span the axes; (5, 5) sits in the middle.
    let points = HostArray::from_vec(vec![3, 2], vec![0f64, 0., 5., 5., 10., 10.]).unwrap();
    let path = std::env::temp_dir().join(format!("ferry-plot-edge-{}.png", std::process::id()));
    ferry::plot::scatter(&[("corners", &points)], "edges", &path, (300, 300)).unwrap();
    let (w, h, buf, color) = decode(&path);
    std::fs::remove_file(&path).unwrap();
    let step = match color {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected colour type {other:?}"),
    };
    let middle = blue_blob(&buf, w, step, w / 3..2 * w / 3);
    let corner = blue_blob(&buf, w, step, 2 * w / 3..w);
    assert!(middle.4 > 0, "the middle point is drawn");
    assert!(
        corner.4 * 10 >= middle.4 * 9,
        "the point at the max x, y is drawn whole: {} pixels against {} in the middle",
        corner.4,
        middle.4
    );
    assert_eq!(
        (corner.2 - corner.0, corner.3 - corner.1),
        (middle.2 - middle.0, middle.3 - middle.1),
        "the corner marker has the middle marker's size"
    );
    // The plotting area ends at the chart's 12-pixel margin; the marker stays inside it with
    // room to spare (unpadded axes put its centre on that edge, half of it in the margin).
    assert!(
        corner.2 + 12 + 3 < w && corner.1 > 12 + 3 && corner.3 < h,
        "a margin to the image border: {corner:?} in {w}x{h}"
    );
}
