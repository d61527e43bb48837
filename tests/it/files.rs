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

/// Audit of round 3 (B2-2): `load_npz` bounded a member by the size the archive declares and
/// allocated that much up front with `vec!`: a 250-byte archive declaring 2^46 bytes, whose
/// `.npy` header asks for 2^45, aborted the process ("memory allocation of 35184372088832 bytes
/// failed"). Buffers a file's header asks for are allocated fallibly: an error, never an abort.
#[test]
fn round3_audit_npz_declaring_more_than_it_holds_is_an_error() {
    let honest = {
        let mut payload = npy_header("|u1", "(3,)");
        payload.extend_from_slice(&[1, 2, 3]);
        npz_declaring(&payload, payload.len() as u64)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("honest.npz");
    std::fs::write(&path, honest).unwrap();
    let arrays = npy::load_npz(&path).unwrap();
    assert_eq!(arrays[0].1.as_bytes().unwrap(), [1, 2, 3]);

    let payload = npy_header("|u1", &format!("({},)", 1u64 << 45));
    let path = dir.path().join("huge.npz");
    std::fs::write(&path, npz_declaring(&payload, 1u64 << 46)).unwrap();
    let err = npy::load_npz(&path).unwrap_err();
    assert!(
        matches!(err, Error::OutOfMemory { .. } | Error::InvalidFile { .. }),
        "{err}"
    );
}

fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let padded = (10 + dict.len() + 1).next_multiple_of(64) - 10;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(padded as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + padded - 1, b' ');
    out.push(b'\n');
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A one-member zip64 archive: `payload` deflated as one stored deflate block, with the member
/// declaring `declared` uncompressed bytes (central and local headers agree), whatever it
/// really holds.
fn npz_declaring(payload: &[u8], declared: u64) -> Vec<u8> {
    let name = b"a.npy";
    let mut deflated = vec![0x01u8];
    let len = payload.len() as u16;
    deflated.extend_from_slice(&len.to_le_bytes());
    deflated.extend_from_slice(&(!len).to_le_bytes());
    deflated.extend_from_slice(payload);
    let crc = crc32(payload);
    let comp = deflated.len() as u64;
    let zip64_local = {
        let mut e = Vec::new();
        e.extend_from_slice(&1u16.to_le_bytes());
        e.extend_from_slice(&16u16.to_le_bytes());
        e.extend_from_slice(&declared.to_le_bytes());
        e.extend_from_slice(&comp.to_le_bytes());
        e
    };
    let mut out = Vec::new();
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&8u16.to_le_bytes()); // deflate
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x21u16.to_le_bytes()); // date
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    out.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(zip64_local.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&zip64_local);
    out.extend_from_slice(&deflated);
    let cd_offset = out.len() as u32;
    // Central directory header.
    let mut cd = Vec::new();
    cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    cd.extend_from_slice(&45u16.to_le_bytes()); // made by
    cd.extend_from_slice(&45u16.to_le_bytes()); // needed
    cd.extend_from_slice(&0u16.to_le_bytes());
    cd.extend_from_slice(&8u16.to_le_bytes());
    cd.extend_from_slice(&0u16.to_le_bytes());
    cd.extend_from_slice(&0x21u16.to_le_bytes());
    cd.extend_from_slice(&crc.to_le_bytes());
    cd.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    cd.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
    cd.extend_from_slice(&(zip64_local.len() as u16).to_le_bytes());
    cd.extend_from_slice(&0u16.to_le_bytes()); // comment
    cd.extend_from_slice(&0u16.to_le_bytes()); // disk
    cd.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
    cd.extend_from_slice(&0u32.to_le_bytes()); // external attrs
    cd.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    cd.extend_from_slice(name);
    cd.extend_from_slice(&zip64_local);
    out.extend_from_slice(&cd);
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}
