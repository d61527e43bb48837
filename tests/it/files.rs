//! Files for legacy tools, Rust side: `.npy`/`.npz` and safetensors round trips for every dtype
//! × every fixture layout, zero-copy maps, Fortran order, raw fp8, and refusals. (The
//! cross-tests against NumPy and safetensors for Python are in `tests/python/test_files.py`.)

use ferry::{DType, Error, HostArray, npy, raw_dtypes, safetensors};
use ferry_tests::fixtures::{Sample, layouts, reference_values, strided_array};
use ferry_tests::for_each_dtype;

fn values<T: Sample>(array: &HostArray) -> Vec<T> {
    array.view::<T>().unwrap().iter().copied().collect()
}

fn check_dtype<T: Sample>(dir: &std::path::Path) {
    for layout in layouts() {
        let (buffer, array) = strided_array::<T>(&layout);
        let expected = reference_values(&buffer, &layout);
        let ctx = format!("{} / {}", T::DTYPE, layout.name);
        let path = dir.join(format!("{}-{}.npy", T::DTYPE, layout.name));
        match npy::save(&path, &array) {
            Ok(()) => {
                // SAFETY: the file is this test's own and nobody changes it while mapped.
                let mapped = unsafe { npy::map(&path) }.unwrap();
                for back in [npy::load(&path).unwrap(), mapped] {
                    assert_eq!(back.shape(), layout.shape.as_slice(), "{ctx}");
                    assert_eq!(values::<T>(&back), expected, "{ctx}: npy");
                }
            }
            Err(e) => {
                assert_eq!(T::DTYPE, DType::BF16, "{ctx}: {e}");
                assert!(matches!(e, Error::UnsupportedDtype { .. }), "{ctx}: {e}");
            }
        }
        match safetensors::to_bytes([("x", &array)], None) {
            Ok(bytes) => {
                let file = safetensors::from_bytes(&bytes).unwrap();
                let back = file.get("x").unwrap();
                assert_eq!(back.copies(), 0, "{ctx}: views into the file buffer");
                assert_eq!(values::<T>(back), expected, "{ctx}: safetensors");
            }
            Err(e) => {
                assert_eq!(T::DTYPE, DType::C128, "{ctx}: {e}");
            }
        }
    }
}

#[test]
fn every_dtype_and_layout_round_trips_through_npy_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    for_each_dtype!(T => { check_dtype::<T>(dir.path()) });
}

#[test]
fn fortran_order_is_written_and_read_without_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let c = HostArray::from_vec(vec![3, 4], (0..12).map(|i| i as f64).collect()).unwrap();
    let f = c.reversed_axes().unwrap();
    let path = dir.path().join("f.npy");
    npy::save(&path, &f).unwrap();
    let text = std::fs::read(&path).unwrap();
    assert!(
        String::from_utf8_lossy(&text[..128]).contains("'fortran_order': True"),
        "a column-major array is stored as it is"
    );
    // SAFETY: the file is this test's own and nobody changes it while mapped.
    let mapped = unsafe { npy::map(&path) }.unwrap();
    assert_eq!(mapped.strides(), [1, 4]);
    assert_eq!(mapped.copies(), 0);
    assert!(mapped.is_read_only());
    assert_eq!(mapped.view::<f64>().unwrap(), f.view::<f64>().unwrap());
}

#[test]
fn npz_archives_keep_names_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let a = HostArray::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
    let b = HostArray::from_vec(vec![3], vec![true, false, true]).unwrap();
    for compressed in [false, true] {
        let path = dir.path().join(format!("x-{compressed}.npz"));
        npy::save_npz(&path, [("a", &a), ("b", &b)], compressed).unwrap();
        let back = npy::load_npz(&path).unwrap();
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(back[0].1.view::<i32>().unwrap(), a.view::<i32>().unwrap());
        assert_eq!(back[1].1.view::<bool>().unwrap(), b.view::<bool>().unwrap());
    }
}

#[test]
fn safetensors_maps_are_zero_copy_and_carry_fp8_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let w = HostArray::from_vec(vec![64, 32], (0..2048).map(|i| i as f32).collect()).unwrap();
    let fp8 = HostArray::from_bytes(
        vec![5],
        DType::Raw(raw_dtypes::FLOAT8_E4M3FN),
        &[1, 2, 3, 4, 5],
    )
    .unwrap();
    let odd = HostArray::from_vec(vec![3], vec![7u8, 8, 9]).unwrap();
    let meta = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    let path = dir.path().join("m.safetensors");
    safetensors::save(
        &path,
        [
            ("w", &w.reversed_axes().unwrap()),
            ("fp8", &fp8),
            ("odd", &odd),
        ],
        Some(meta),
    )
    .unwrap();
    // SAFETY: the file is this test's own and nobody changes it while mapped.
    let file = unsafe { safetensors::map(&path) }.unwrap();
    assert_eq!(file.metadata["format"], "pt");
    let names: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fp8", "odd", "w"]);
    let back = file.get("w").unwrap();
    assert_eq!((back.copies(), back.is_read_only()), (0, true));
    assert_eq!(
        back.view::<f32>().unwrap(),
        w.reversed_axes().unwrap().view::<f32>().unwrap()
    );
    assert_eq!(
        file.get("fp8").unwrap().as_bytes(),
        Some(&[1u8, 2, 3, 4, 5][..])
    );
    assert_eq!(file.get("fp8").unwrap().dtype(), fp8.dtype());
}

#[test]
fn hostile_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = HostArray::from_vec(vec![100], vec![1f64; 100]).unwrap();
    let path = dir.path().join("a.npy");
    npy::save(&path, &a).unwrap();
    let whole = std::fs::read(&path).unwrap();
    for cut in [0, 5, 9, 64, whole.len() - 1] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        // SAFETY: the file is this test's own and nobody changes it while mapped.
        let mapped = unsafe { npy::map(&path) };
        for result in [npy::load(&path), mapped, npy::read(&whole[..cut])] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::InvalidFile { .. }),
                "cut at {cut}: {err}"
            );
        }
    }
    // A header that claims an enormous shape cannot make ferry allocate it.
    let mut huge = whole[..10].to_vec();
    let dict = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1024), }";
    huge[8..10].copy_from_slice(&(dict.len() as u16).to_le_bytes());
    huge.extend_from_slice(dict);
    assert!(matches!(
        npy::read(&huge[..]),
        Err(Error::InvalidFile { .. } | Error::LayoutOverflow { .. })
    ));
    let mut bytes = safetensors::to_bytes([("a", &a)], None).unwrap();
    bytes[0] = 0xff;
    assert!(matches!(
        safetensors::from_bytes(&bytes),
        Err(Error::InvalidFile { .. })
    ));
    assert!(matches!(
        npy::load(dir.path().join("missing.npy")),
        Err(Error::Io { .. })
    ));
}
