//! The conformance suite, written once against [`SuiteBackend`] and run for every enabled
//! backend and every (source, destination) pair. Each function returns how many cases it ran.

use ferry::{CopyPolicy, DType, Error, HostArray, copy_totals};

use crate::backends::{FloatOps, SuiteBackend};

/// A `shape` array of dtype `dtype` holding 0, 1, 2, ... (mod 50, exact in every dtype).
pub fn fixture(dtype: DType, shape: &[usize]) -> HostArray {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|i| (i % 50) as f64).collect();
    HostArray::from_vec(shape.to_vec(), values)
        .unwrap()
        .cast_to(dtype)
        .unwrap()
}

/// Asserts equal dtype, shape and bit-identical values (in row-major order).
pub fn assert_same(actual: &HostArray, expected: &HostArray, ctx: &str) {
    assert_eq!(actual.dtype(), expected.dtype(), "{ctx}: dtype");
    assert_eq!(actual.shape(), expected.shape(), "{ctx}: shape");
    let a = actual.to_contiguous(CopyPolicy::IfNeeded).unwrap();
    let e = expected.to_contiguous(CopyPolicy::IfNeeded).unwrap();
    assert_eq!(
        a.as_bytes().unwrap(),
        e.as_bytes().unwrap(),
        "{ctx}: values"
    );
}

/// Appends "what: N cases" to the report file `cargo xtask ci` prints (when it set one).
pub fn report(what: &str, cases: usize) {
    assert!(cases > 0, "{what}: no case ran");
    if let Ok(path) = std::env::var("FERRY_SUITE_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{what}: {cases} cases").unwrap();
    }
}

/// Every single-framework check of the suite — host views of every dtype and layout, round
/// trips, refusals — run against `B`; returns the cases run. This is what a new adapter's own
/// test calls, with its [`SuiteBackend`] implementation (like object_store's `integration`
/// functions): `assert!(ferry_tests::suite::run_backend::<MyBackend>() > 0);`.
pub fn run_backend<B: SuiteBackend>() -> usize {
    let cases = to_host_layouts::<B>() + round_trips::<B>() + refusals::<B>();
    #[cfg(feature = "arrow")]
    let cases = cases + arrow_columns::<B>();
    cases
}

/// The checks between two frameworks: conversion over DLPack in both directions (every dtype
/// both hold). Returns the cases run.
pub fn run_pair<A: SuiteBackend, B: SuiteBackend>() -> usize {
    cross::<A, B>() + cross::<B, A>()
}

/// Views of one tensor the framework can express: name and tensor.
fn layouts<B: SuiteBackend>(t: &B::Tensor) -> Vec<(&'static str, B::Tensor)> {
    vec![
        ("contiguous", B::narrow(t, 0, 0, 3)),
        ("transposed", B::transpose(t)),
        (
            "narrowed with offset",
            B::narrow(&B::narrow(t, 1, 1, 2), 0, 1, 2),
        ),
        ("broadcast", B::broadcast_leading(&B::narrow(t, 0, 2, 1), 4)),
        ("size-1 axis", B::narrow(t, 0, 1, 1)),
        ("flipped", B::flip(t, 0)),
    ]
}

/// Each layout of [`layouts`] made from a base of its own, which is dropped with the other
/// layouts, so the view is the only handle on its memory (what tch needs to share a storage
/// copy-on-write: a storage other tensors share is copied).
fn sole_layouts<B: SuiteBackend>(
    make_base: impl Fn() -> B::Tensor,
) -> Vec<(&'static str, B::Tensor)> {
    let count = layouts::<B>(&make_base()).len();
    (0..count)
        .map(|i| layouts::<B>(&make_base()).swap_remove(i))
        .collect()
}

/// CPU tensors of every dtype and layout come to the host with zero copies, equal to the
/// framework's own read-back.
pub fn to_host_layouts<B: SuiteBackend>() -> usize {
    let mut cases = 0;
    let cpu = B::cpu();
    for &dtype in B::DTYPES {
        let mut views = sole_layouts::<B>(|| B::from_host(&fixture(dtype, &[3, 4]), &cpu).unwrap());
        views.push((
            "empty",
            B::from_host(&fixture(dtype, &[3, 0]), &cpu).unwrap(),
        ));
        match (B::CAPS.fixed_rank, B::from_host(&fixture(dtype, &[]), &cpu)) {
            (None, Ok(scalar)) => views.push(("0-d", scalar)),
            (
                Some(rank),
                Err(Error::TensorRank {
                    expected, found: 0, ..
                }),
            ) if expected == rank => cases += 1,
            (_, Err(e)) => panic!("{} {dtype}: 0-d: {e}", B::NAME),
            (Some(_), Ok(_)) => panic!(
                "{} {dtype}: a fixed-rank tensor accepted a 0-d array",
                B::NAME
            ),
        }
        for (name, view) in views {
            let ctx = format!("{} {dtype} {name}", B::NAME);
            let before = copy_totals();
            let host = B::to_host(&view).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(
                copy_totals().since(before).copies,
                0,
                "{ctx}: a CPU view must not copy"
            );
            assert_eq!(host.copies(), 0, "{ctx}");
            assert_same(&host, &B::read_back(&view).unwrap(), &ctx);
            match name {
                "transposed" => assert!(
                    !host.is_standard_layout(),
                    "{ctx}: real strides {:?}",
                    host.strides()
                ),
                "broadcast" => assert_eq!(host.strides()[0], 0, "{ctx}: zero stride"),
                "flipped" if B::CAPS.negative_strides => {
                    assert!(host.strides()[0] < 0, "{ctx}: negative stride")
                }
                "flipped" => assert!(
                    host.strides().iter().all(|&s| s >= 0),
                    "{ctx}: a framework without negative strides flips by copying: {:?}",
                    host.strides()
                ),
                _ => {}
            }
            cases += 1;
        }
    }
    cases
}

/// HostArray → framework → HostArray and framework → DLPack → framework are bit-exact; an
/// owned row-major buffer moves in without a copy where the framework can take it.
pub fn round_trips<B: SuiteBackend>() -> usize {
    let mut cases = 0;
    let cpu = B::cpu();
    for &dtype in B::DTYPES {
        let ctx = format!("{} {dtype}", B::NAME);
        let host = fixture(dtype, &[3, 4]);
        let t = B::from_host(&host, &cpu).unwrap();
        assert_same(
            &B::read_back(&t).unwrap(),
            &host,
            &format!("{ctx}: from_host"),
        );
        assert_same(
            &B::to_host(&t).unwrap(),
            &host,
            &format!("{ctx}: host round trip"),
        );

        let transposed = B::transpose(&t);
        let back = B::from_host(&B::to_host(&transposed).unwrap(), &cpu).unwrap();
        assert_same(
            &B::read_back(&back).unwrap(),
            &B::read_back(&transposed).unwrap(),
            &format!("{ctx}: transposed"),
        );

        let via_dlpack = B::from_dlpack(B::to_dlpack(&transposed).unwrap(), &cpu).unwrap();
        assert_same(
            &B::read_back(&via_dlpack).unwrap(),
            &B::read_back(&transposed).unwrap(),
            &format!("{ctx}: dlpack"),
        );

        let owned = fixture(dtype, &[2, 5]);
        let before = copy_totals();
        let moved = B::into_tensor(owned, &cpu).unwrap();
        let copies = copy_totals().since(before).copies;
        assert_same(
            &B::read_back(&moved).unwrap(),
            &fixture(dtype, &[2, 5]),
            &format!("{ctx}: into_tensor"),
        );
        assert_eq!(
            copies, 0,
            "{ctx}: an owned row-major buffer moves (or is shared) in without a copy"
        );
        cases += 5;
    }
    cases
}

/// Dtypes the framework lacks are refused with `UnsupportedDtype`, naming the framework.
pub fn refusals<B: SuiteBackend>() -> usize {
    let mut cases = 0;
    for dtype in DType::TYPED {
        if B::DTYPES.contains(&dtype) {
            continue;
        }
        let Err(err) = B::from_host(&fixture(dtype, &[2, 2]), &B::cpu()) else {
            panic!("{}: {dtype} was accepted", B::NAME);
        };
        assert!(
            matches!(err, Error::UnsupportedDtype { backend, dtype: d, .. } if backend == B::NAME && d == dtype),
            "{}: {err}",
            B::NAME
        );
        assert!(err.to_string().contains("cast"), "{err}");
        cases += 1;
    }
    // Never refuses nothing on the CPU: a host view needs no copy.
    let t = B::from_host(&fixture(B::DTYPES[0], &[2, 2]), &B::cpu()).unwrap();
    assert_eq!(B::to_host_with(&t, CopyPolicy::Never).unwrap().copies(), 0);
    let forced = B::to_host_with(&t, CopyPolicy::Always).unwrap();
    assert_eq!(forced.copies(), 1, "{}: Always copies", B::NAME);
    cases + 1
}

/// Framework → framework over DLPack equals the source's own read-back, for every dtype both
/// hold, from a non-contiguous view.
pub fn cross<Src: SuiteBackend, Dst: SuiteBackend>() -> usize {
    let mut cases = 0;
    for &dtype in Src::DTYPES.iter().filter(|d| Dst::DTYPES.contains(d)) {
        let ctx = format!("{} -> {} {dtype}", Src::NAME, Dst::NAME);
        let src = Src::transpose(&Src::from_host(&fixture(dtype, &[3, 4]), &Src::cpu()).unwrap());
        // What `ferry::convert` does, through the backends alone (no facade trait needed).
        let dst = Src::to_dlpack(&src)
            .and_then(|t| Dst::from_dlpack(t, &Dst::cpu()))
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_same(
            &Dst::read_back(&dst).unwrap(),
            &Src::read_back(&src).unwrap(),
            &ctx,
        );
        cases += 1;
    }
    cases
}

/// The same sum over an axis and matrix product computed in two frameworks agree on the host
/// within 1e-5 relative.
pub fn ops_agree<A: FloatOps, B: FloatOps>() -> usize {
    let x = fixture(DType::F32, &[3, 4]);
    let w = fixture(DType::F32, &[4, 2]);
    let (xa, wa) = (
        A::from_host(&x, &A::cpu()).unwrap(),
        A::from_host(&w, &A::cpu()).unwrap(),
    );
    let (xb, wb) = (
        B::from_host(&x, &B::cpu()).unwrap(),
        B::from_host(&w, &B::cpu()).unwrap(),
    );
    let close = |a: &HostArray, b: &HostArray, what: &str| {
        // Frameworks differ in whether a reduced axis is kept (length 1): compare the values.
        let (a, b) = (a.view::<f32>().unwrap(), b.view::<f32>().unwrap());
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                "{} vs {}: {what}: {x} != {y}",
                A::NAME,
                B::NAME
            );
        }
    };
    close(
        &A::sum_axis(&xa, 1),
        &B::sum_axis(&xb, 1),
        "sum over axis 1",
    );
    close(&A::matmul(&xa, &wa), &B::matmul(&xb, &wb), "matmul");
    2
}

/// Every view of every dtype Arrow holds becomes a column (rows = first axis) equal to the
/// framework's own read-back, directly and through an in-memory Arrow IPC stream. Row-major
/// views are exported without a copy (Arrow's buffer is the framework's memory) and read back
/// over the same address; views whose rows are not contiguous blocks (a 2-D transpose,
/// narrowed, broadcast, flipped) are copied once, recorded.
#[cfg(feature = "arrow")]
pub fn arrow_columns<B: SuiteBackend>() -> usize {
    use ferry::arrow::{TensorColumn, arrow_type, column, ipc, record_batch};
    let mut cases = 0;
    let cpu = B::cpu();
    for &dtype in B::DTYPES.iter().filter(|&&d| arrow_type(d).is_ok()) {
        let t = B::from_host(&fixture(dtype, &[3, 4]), &cpu).unwrap();
        for (name, view) in layouts::<B>(&t) {
            let ctx = format!("{} {dtype} {name} -> arrow", B::NAME);
            let host = B::to_host(&view).unwrap();
            let expected = B::read_back(&view).unwrap();
            let before = copy_totals();
            let col = TensorColumn::from_batch("x", &host).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let copies = copy_totals().since(before).copies;
            let dense = host.is_standard_layout();
            if dtype == DType::Bool {
                assert_eq!(
                    col.copy_log().len(),
                    1,
                    "{ctx}: bools are bit-packed (one copy)"
                );
            } else if dense {
                assert_eq!(
                    copies, 0,
                    "{ctx}: a permutation of row-major exports in place"
                );
                assert!(col.copy_log().is_empty(), "{ctx}");
                let back = col.to_host().unwrap();
                assert_eq!(back.as_ptr(), host.as_ptr(), "{ctx}: same memory back");
                assert_eq!(back.shape(), host.shape(), "{ctx}: same shape back");
            } else {
                assert_eq!(copies, 1, "{ctx}: other layouts are copied once");
                assert_eq!(col.copy_log().len(), 1, "{ctx}: and the copy is recorded");
            }
            assert_same(&col.to_host().unwrap(), &expected, &ctx);
            let stream = ipc::write_stream(Vec::new(), &[record_batch([col]).unwrap()]).unwrap();
            let batches = ipc::read_stream(stream.as_slice()).unwrap();
            let read = column(&batches[0], "x").unwrap().to_host().unwrap();
            assert_same(&read, &expected, &format!("{ctx}: IPC stream"));
            cases += 1;
        }
    }
    cases
}
