//! Every dtype × every layout: typed views, copies and DLPack round trips equal plain indexing.

use ferry::{CopyPolicy, CopyReason, DType, HostArray, copy_totals};
use ferry_tests::fixtures::{Sample, layouts, reference_values, strided_array};
use ferry_tests::for_each_dtype;

fn check_dtype<T: Sample>() {
    for layout in layouts() {
        let (buffer, array) = strided_array::<T>(&layout);
        let expected = reference_values(&buffer, &layout);
        let ctx = format!("{} / {}", T::DTYPE, layout.name);

        let before = copy_totals();
        let view = array.view::<T>().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(view.shape(), layout.shape.as_slice(), "{ctx}");
        assert_eq!(
            view.iter().copied().collect::<Vec<_>>(),
            expected,
            "{ctx}: view"
        );
        assert_eq!(
            copy_totals().since(before).copies,
            0,
            "{ctx}: a view must not copy"
        );

        let owned = array.to_array::<T>().unwrap();
        assert!(owned.is_standard_layout(), "{ctx}");
        assert_eq!(
            owned.iter().copied().collect::<Vec<_>>(),
            expected,
            "{ctx}: to_array"
        );

        let contiguous = array.to_contiguous(CopyPolicy::IfNeeded).unwrap();
        assert!(contiguous.is_standard_layout(), "{ctx}");
        assert_eq!(
            contiguous
                .view::<T>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            expected,
            "{ctx}"
        );
        if array.is_standard_layout() {
            assert_eq!(contiguous.copies(), 0, "{ctx}: already row-major");
            assert_eq!(contiguous.as_ptr(), array.as_ptr(), "{ctx}: shares memory");
        } else {
            assert_eq!(
                contiguous.copy_log()[0].reason,
                CopyReason::NonContiguous,
                "{ctx}"
            );
            let err = array.to_contiguous(CopyPolicy::Never).unwrap_err();
            assert!(
                matches!(
                    err,
                    ferry::Error::NeedsCopy {
                        reason: CopyReason::NonContiguous,
                        ..
                    }
                ),
                "{ctx}: {err}"
            );
        }
        let forced = array.to_contiguous(CopyPolicy::Always).unwrap();
        assert_eq!(forced.copies(), 1, "{ctx}");
        assert_eq!(
            forced
                .view::<T>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            expected,
            "{ctx}"
        );

        for (kind, exported) in [
            ("versioned", array.to_dlpack()),
            ("legacy", array.to_dlpack_legacy()),
        ] {
            assert_eq!(exported.shape(), array.shape(), "{ctx} {kind}");
            assert_eq!(exported.strides(), array.strides(), "{ctx} {kind}");
            let back = exported.into_host().unwrap();
            assert_eq!(back.as_ptr(), array.as_ptr(), "{ctx} {kind}: zero-copy");
            assert_eq!(back.strides(), array.strides(), "{ctx} {kind}");
            assert_eq!(back.view::<T>().unwrap(), view, "{ctx} {kind}: round trip");
            assert_eq!(back.copies(), 0, "{ctx} {kind}");
        }
        // Through the raw pointers, as a foreign consumer would get them.
        let raw = array.to_dlpack().into_raw();
        // SAFETY: a pointer ferry just exported and nobody else owns.
        let back = unsafe { ferry::DlpackTensor::from_raw(raw) }
            .unwrap()
            .into_host()
            .unwrap();
        assert_eq!(back.view::<T>().unwrap(), view, "{ctx}: raw round trip");
    }
}

#[test]
fn every_dtype_and_layout_matches_plain_indexing() {
    let mut covered = Vec::new();
    for_each_dtype!(T => {
        covered.push(<T as ferry::Element>::DTYPE);
        check_dtype::<T>();
    });
    assert_eq!(covered, ferry_tests::fixtures::all_typed());
}

#[test]
fn typed_access_refuses_other_dtypes() {
    let a = HostArray::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
    let err = a.view::<f64>().unwrap_err();
    assert!(
        matches!(
            err,
            ferry::Error::DtypeMismatch {
                found: DType::F32,
                wanted: DType::F64
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "dtype f32 cannot be viewed as f64; call cast::<f64>() for an explicit conversion"
    );
    assert!(matches!(
        a.to_array::<i32>(),
        Err(ferry::Error::DtypeMismatch { .. })
    ));
}

#[test]
fn bool_values_are_checked_on_typed_access() {
    // The same bytes tagged as bool by a producer: 2 is not a valid bool.
    let producer = ferry_tests::producer::Producer::default();
    let mut spec = ferry_tests::producer::Spec::f32_row_major(&[3]);
    spec.dtype = (6, 8, 1);
    // SAFETY: the producer's pointer is fresh and owned by us.
    let as_bool =
        unsafe { HostArray::from_dlpack_versioned(producer.versioned(&spec, vec![0, 1, 2])) }
            .unwrap();
    assert_eq!(as_bool.dtype(), DType::Bool);
    let err = as_bool.view::<bool>().unwrap_err();
    assert!(
        matches!(
            err,
            ferry::Error::InvalidBool {
                position: 2,
                value: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(as_bool.to_array::<bool>().is_err());
    assert!(
        matches!(
            as_bool.view::<u8>(),
            Err(ferry::Error::DtypeMismatch { .. })
        ),
        "a bool array is not a u8 array"
    );
    // Copies carry the bytes as they are; the check happens on typed access.
    let copied = as_bool.to_contiguous(CopyPolicy::Always).unwrap();
    assert!(copied.view::<bool>().is_err());
    drop((as_bool, copied));
    assert_eq!(producer.deleted(), 1);
}

#[test]
fn into_array_moves_an_owned_buffer_without_copying() {
    let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let ptr = data.as_ptr();
    let a = HostArray::from_vec(vec![3, 4], data).unwrap();
    let before = copy_totals();
    let back = a.into_array::<f32>().unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(back.as_ptr(), ptr);
    assert_eq!(back.shape(), &[3, 4]);

    // Shared (a clone is alive): must copy, values equal.
    let a = HostArray::from_array(back);
    let keep = a.clone();
    let copied = a.into_array::<f32>().unwrap();
    assert_ne!(copied.as_ptr().cast::<u8>(), keep.as_ptr());
    assert_eq!(copied.view(), keep.view::<f32>().unwrap());

    // A transposed view of an owned buffer is copied into row-major order.
    let t = HostArray::from_array(copied.reversed_axes());
    let standard = t.clone().into_array::<f32>().unwrap();
    assert!(standard.is_standard_layout());
    assert_eq!(standard.view(), t.view::<f32>().unwrap());
}

#[test]
fn arc_arrays_are_shared_without_copying() {
    let arc = ferry::ndarray::ArcArray::from_shape_vec(
        ferry::ndarray::IxDyn(&[2, 2]),
        vec![1i64, 2, 3, 4],
    )
    .unwrap();
    let other = arc.clone();
    let mut shared = HostArray::from_arc_array(arc);
    assert_eq!(shared.as_ptr(), other.as_ptr().cast());
    assert!(shared.is_read_only());
    assert!(matches!(
        shared.view_mut::<i64>(),
        Err(ferry::Error::NotWritable { .. })
    ));
    drop(other);
    let unique =
        ferry::ndarray::ArcArray::from_shape_vec(ferry::ndarray::IxDyn(&[2]), vec![5i64, 6])
            .unwrap();
    let mut a = HostArray::from_arc_array(unique);
    a.view_mut::<i64>().unwrap()[[0]] = 50;
    assert_eq!(a.view::<i64>().unwrap().as_slice().unwrap(), &[50, 6]);
}

#[test]
fn view_mut_only_for_unshared_writable_memory() {
    let mut a = HostArray::from_vec(vec![2, 2], vec![1u16, 2, 3, 4]).unwrap();
    a.view_mut::<u16>().unwrap()[[1, 0]] = 30;
    assert_eq!(a.view::<u16>().unwrap()[[1, 0]], 30);
    let clone = a.clone();
    let err = a.view_mut::<u16>().unwrap_err();
    assert!(
        err.to_string()
            .contains("shared with another HostArray clone"),
        "{err}"
    );
    drop(clone);
    let mut ro = a.into_read_only();
    assert!(matches!(
        ro.view_mut::<u16>(),
        Err(ferry::Error::NotWritable { .. })
    ));

    let layout = layouts()
        .into_iter()
        .find(|l| l.name.starts_with("broadcast"))
        .unwrap();
    let (_, mut broadcast) = strided_array::<f32>(&layout);
    let err = broadcast.view_mut::<f32>().unwrap_err();
    assert!(err.to_string().contains("broadcast"), "{err}");

    let flipped = layouts()
        .into_iter()
        .find(|l| l.name == "both axes flipped")
        .unwrap();
    let (buffer, mut f) = strided_array::<i32>(&flipped);
    f.view_mut::<i32>().unwrap()[[0, 0]] = -1;
    let v = f.view::<i32>().unwrap();
    assert_eq!(v[[0, 0]], -1);
    assert_eq!(v[[2, 4]], buffer[0]);
}

#[test]
fn explicit_casts_convert_and_are_recorded() {
    let a = HostArray::from_vec(vec![4], vec![1.5f32, -2.0, 0.0, 300.0]).unwrap();
    let i = a.cast::<i32>().unwrap();
    assert_eq!(
        i.view::<i32>().unwrap().as_slice().unwrap(),
        &[1, -2, 0, 300]
    );
    assert_eq!(i.copy_log()[0].reason, CopyReason::Cast);
    let u8s = a.cast::<u8>().unwrap();
    assert_eq!(
        u8s.view::<u8>().unwrap().as_slice().unwrap(),
        &[1, 0, 0, 255],
        "saturating like `as`"
    );
    let b = a.cast::<bool>().unwrap();
    assert_eq!(
        b.view::<bool>().unwrap().as_slice().unwrap(),
        &[true, true, false, true]
    );
    let h = a
        .cast::<ferry::half::bf16>()
        .unwrap()
        .cast::<f64>()
        .unwrap();
    assert_eq!(
        h.view::<f64>().unwrap().as_slice().unwrap(),
        &[1.5, -2.0, 0.0, 300.0]
    );
    let c = a.cast::<ferry::num_complex::Complex64>().unwrap();
    assert_eq!(
        c.view::<ferry::num_complex::Complex64>().unwrap()[[0]].re,
        1.5
    );
    let err = c.cast::<f64>().unwrap_err();
    assert!(
        matches!(
            err,
            ferry::Error::UnsupportedCast {
                from: DType::C128,
                to: DType::F64,
                ..
            }
        ),
        "{err}"
    );
    let same = a.cast::<f32>().unwrap();
    assert_eq!(
        (same.as_ptr(), same.copies()),
        (a.as_ptr(), 0),
        "same dtype: no copy"
    );

    let big = HostArray::from_vec(vec![2], vec![u64::MAX, 7]).unwrap();
    assert_eq!(
        big.cast::<i64>()
            .unwrap()
            .view::<i64>()
            .unwrap()
            .as_slice()
            .unwrap(),
        &[-1, 7]
    );
    let transposed = HostArray::from_array(
        ferry::ndarray::arr2(&[[1i8, 2], [3, 4]])
            .reversed_axes()
            .into_dyn(),
    );
    assert_eq!(
        transposed
            .cast::<i16>()
            .unwrap()
            .view::<i16>()
            .unwrap()
            .as_slice()
            .unwrap(),
        &[1, 3, 2, 4]
    );
}

#[test]
fn large_transposes_are_copied_correctly() {
    let (rows, cols) = (1500, 1100);
    let data: Vec<u32> = (0..rows * cols).map(|i| i as u32).collect();
    let a = HostArray::from_array(
        ferry::ndarray::Array2::from_shape_vec((rows, cols), data)
            .unwrap()
            .reversed_axes()
            .into_dyn(),
    );
    let c = a.to_contiguous(CopyPolicy::IfNeeded).unwrap();
    let v = c.view::<u32>().unwrap();
    for (r, c) in [(0, 0), (5, 7), (1099, 1499), (1000, 3)] {
        assert_eq!(v[[r, c]], (c * cols + r) as u32);
    }
    assert_eq!(c.bytes_copied(), (rows * cols * 4) as u64);
}

/// Transposes and permutations whose kernel calls write 8 MiB or more take the streaming
/// (non-temporal) stores of the 4-byte kernel (each of these is split over at most two calls
/// on one or two cores): every element must land, including the columns before the first
/// cache-line boundary of each row, the edges that fill no 16×16 block, and rows whose length
/// is no multiple of 16 (ordinary stores there).
#[test]
fn streaming_transposes_write_every_element() {
    fn check(array: ferry::ndarray::ArrayD<u32>, what: &str) {
        let expected: Vec<u32> = array.iter().copied().collect();
        let host = HostArray::from_array(array);
        let copy = host.to_contiguous(CopyPolicy::IfNeeded).unwrap();
        assert!(
            copy.bytes_copied() >= 16 << 20,
            "{what}: large enough to stream"
        );
        let got = copy.view::<u32>().unwrap();
        assert_eq!(got.as_slice().unwrap(), expected.as_slice(), "{what}");
    }
    let matrix = |rows: usize, cols: usize| {
        ferry::ndarray::Array2::from_shape_vec(
            (rows, cols),
            (0..rows * cols).map(|i| i as u32).collect(),
        )
        .unwrap()
    };
    // Row length 2064 (a multiple of 16, so streaming), 2050 rows (an edge of 2).
    check(
        matrix(2064, 2050).reversed_axes().into_dyn(),
        "2050×2064 transposed",
    );
    // Row length 2053: rows start at different offsets within a cache line, no streaming.
    check(
        matrix(2053, 2051).reversed_axes().into_dyn(),
        "2051×2053 transposed",
    );
    // NCHW → NHWC with 48 channels: two images of 8.1 MiB, one kernel call each.
    let nchw = ferry::ndarray::Array4::from_shape_vec(
        (2, 48, 210, 210),
        (0..2 * 48 * 210 * 210).map(|i| i as u32).collect(),
    )
    .unwrap();
    check(nchw.permuted_axes([0, 2, 3, 1]).into_dyn(), "NCHW → NHWC");
}
