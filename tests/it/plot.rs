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
        &dir.join("x.png"),
        (100, 100),
    )
    .unwrap_err();
    assert!(matches!(err, ferry::Error::RankMismatch { .. }), "{err}");
    let err =
        ferry::plot::heatmap(&grid, "bad extension", &dir.join("x.jpg"), (100, 100)).unwrap_err();
    assert!(err.to_string().contains(".png or .svg"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
