//! `ferry::testing` against `torch.testing.assert_close` itself (a committed fixture of pairs
//! and torch's answers, `tests/testing/make_torch_fixture.py`), across frameworks, with golden
//! files, and on bad input.

use ferry::testing::{Compared, Comparison, Error as TestingError, Tolerance, compare};
use ferry::{Backend, DType, HostArray};

/// One pair of the fixture and what torch said.
struct Case {
    id: u64,
    actual: HostArray,
    expected: HostArray,
    tolerance: Tolerance,
    close: bool,
    message: Option<String>,
}

fn dtype(name: &str) -> DType {
    match name {
        "bool" => DType::Bool,
        "u8" => DType::U8,
        "i8" => DType::I8,
        "i16" => DType::I16,
        "i32" => DType::I32,
        "i64" => DType::I64,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        "f64" => DType::F64,
        "c64" => DType::C64,
        "c128" => DType::C128,
        other => panic!("fixture dtype {other}"),
    }
}

fn array(side: &serde_json::Value) -> HostArray {
    let shape: Vec<usize> = side["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let hex = side["hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    HostArray::from_bytes(shape, dtype(side["dtype"].as_str().unwrap()), &bytes).unwrap()
}

fn fixture() -> (String, Vec<Case>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testing/torch_assert_close.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let meta: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let cases = lines
        .map(|line| {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut tolerance = match (c["rtol"].as_f64(), c["atol"].as_f64()) {
                (Some(r), Some(a)) => Tolerance::new(r, a),
                _ => Tolerance::default(),
            };
            if c["equal_nan"].as_bool().unwrap() {
                tolerance = tolerance.equal_nan();
            }
            if !c["check_dtype"].as_bool().unwrap() {
                tolerance = tolerance.any_dtype();
            }
            Case {
                id: c["id"].as_u64().unwrap(),
                actual: array(&c["actual"]),
                expected: array(&c["expected"]),
                tolerance,
                close: c["torch"]["close"].as_bool().unwrap(),
                message: c["torch"]["message"].as_str().map(String::from),
            }
        })
        .collect();
    (meta["torch"].as_str().unwrap().to_string(), cases)
}

/// The same values in a column-major layout (a strided read of `actual`).
fn column_major(a: &HostArray) -> HostArray {
    if a.ndim() < 2 {
        return a.clone();
    }
    a.reversed_axes()
        .unwrap()
        .to_contiguous(ferry::CopyPolicy::Always)
        .unwrap()
        .reversed_axes()
        .unwrap()
}

/// What ferry says of a case, checked against torch: `None` when they agree.
fn disagreement(case: &Case, result: &Result<Comparison, TestingError>) -> Option<String> {
    match (result, case.close, &case.message) {
        (Ok(c), true, _) if c.is_close() => None,
        (Ok(c), false, Some(message)) if !c.is_close() => {
            let report = c.to_string();
            let agrees = if c.dtype().is_complex() {
                complex_report_agrees(message, &report)
            } else {
                report.starts_with(message.as_str())
                    && report[message.len()..]
                        .chars()
                        .next()
                        .is_none_or(|ch| ch == '\n')
            };
            (!agrees).then(|| format!("torch:\n{message}\nferry:\n{report}"))
        }
        (
            Err(TestingError::ShapeMismatch { .. } | TestingError::DtypeMismatch { .. }),
            false,
            Some(m),
        ) if m.starts_with("The values for attribute") => None,
        (Ok(c), close, message) => Some(format!(
            "torch close={close} {message:?}; ferry close={}:\n{c}",
            c.is_close()
        )),
        (Err(e), close, message) => {
            Some(format!("torch close={close} {message:?}; ferry error {e}"))
        }
    }
}

/// For complex dtypes: every line of torch's message, but the differences themselves within a
/// few ulps. PyTorch's CPU kernels take a complex modulus with `hypot` in their scalar loops and
/// `sqrt(re² + im²)` in their vectorised ones (which elements go which way depends on the
/// tensor's length and the CPU's vector width); ferry uses `hypot` throughout.
fn complex_report_agrees(torch: &str, ferry: &str) -> bool {
    let ferry_lines: Vec<&str> = ferry.lines().collect();
    torch.lines().enumerate().all(|(i, theirs)| {
        let Some(&ours) = ferry_lines.get(i) else {
            return false;
        };
        if theirs == ours {
            return true;
        }
        // "Greatest absolute difference: X at index I (up to T allowed)", or the scalar form
        // "Absolute difference: X (up to T allowed)".
        let number = |line: &str| -> Option<(String, f64, String)> {
            let (head, rest) = line.split_once(": ")?;
            let end = rest.find(' ').unwrap_or(rest.len());
            Some((head.into(), rest[..end].parse().ok()?, rest[end..].into()))
        };
        match (number(theirs), number(ours)) {
            (Some((h1, x, t1)), Some((h2, y, t2))) => {
                h1 == h2
                    && t1 == t2
                    && (x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()))
            }
            _ => false,
        }
    })
}

#[test]
fn compare_agrees_with_torch_testing_assert_close_on_every_fixture_pair() {
    let (torch, cases) = fixture();
    assert!(cases.len() >= 2000, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let result = compare(&case.actual, &case.expected, &case.tolerance);
        if let Some(why) = disagreement(case, &result) {
            wrong.push(format!(
                "case {} ({} {:?} vs {} {:?}, {:?}): {why}",
                case.id,
                case.actual.dtype(),
                case.actual.shape(),
                case.expected.dtype(),
                case.expected.shape(),
                case.tolerance
            ));
            continue;
        }
        // The same answer reading `actual` through another layout.
        let strided = compare(&column_major(&case.actual), &case.expected, &case.tolerance);
        // (Compared as reports: NaN differences are never `==`.)
        if let (Ok(a), Ok(b)) = (&result, &strided)
            && a.to_string() != b.to_string()
        {
            wrong.push(format!("case {}: layouts differ:\n{a}\n---\n{b}", case.id));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} pairs disagree with torch {torch}:\n{}",
        wrong.len(),
        cases.len(),
        wrong
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// Every framework this build has, as a tensor made from `host` (on the CPU).
fn frameworks(host: &HostArray) -> Vec<(&'static str, Box<dyn Compared>)> {
    #[allow(unused_mut)]
    let mut out: Vec<(&'static str, Box<dyn Compared>)> =
        vec![("host array", Box::new(host.clone()))];
    #[cfg(feature = "candle")]
    out.push((
        "candle",
        Box::new(<ferry::Candle as Backend>::from_host(host, &ferry::Candle::cpu()).unwrap()),
    ));
    #[cfg(feature = "burn")]
    {
        use burn::tensor::Device;
        #[allow(deprecated)] // Burn 0.22 deprecates NdArray; ferry still supports it
        let ndarray = Device::ndarray();
        for (name, device) in [("burn flex", Device::flex()), ("burn ndarray", ndarray)] {
            out.push((
                name,
                Box::new(<ferry::Burn<2> as Backend>::from_host(host, &device).unwrap()),
            ));
        }
    }
    #[cfg(feature = "tch")]
    out.push((
        "tch",
        Box::new(<ferry::Tch as Backend>::from_host(host, &tch::Device::Cpu).unwrap()),
    ));
    out
}

#[test]
fn every_pair_of_frameworks_agrees_and_a_one_ulp_change_is_found_at_its_index() {
    let values: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
    let mut bumped = values.clone();
    bumped[2 * 6 + 3] = f32::from_bits(bumped[2 * 6 + 3].to_bits() + 1);
    let same = frameworks(&HostArray::from_vec(vec![4, 6], values).unwrap());
    let changed = frameworks(&HostArray::from_vec(vec![4, 6], bumped).unwrap());
    assert!(same.len() >= 2);
    for (a_name, a) in &same {
        for (e_name, e) in &same {
            let c = compare(&a.as_ref(), &e.as_ref(), &Tolerance::exact()).unwrap();
            assert!(c.is_close(), "{a_name} vs {e_name}: {c}");
        }
        for (e_name, e) in &changed {
            let c = compare(&e.as_ref(), &a.as_ref(), &Tolerance::exact()).unwrap();
            assert_eq!(c.mismatches(), 1, "{e_name} (one ulp off) vs {a_name}: {c}");
            assert_eq!(c.greatest_absolute().unwrap().index, [2, 3], "{c}");
            assert_eq!(c.first_mismatches()[0].index, [2, 3]);
            // Within the default f32 tolerance, one ulp is close.
            assert!(
                compare(&e.as_ref(), &a.as_ref(), &Tolerance::default())
                    .unwrap()
                    .is_close()
            );
            if e.origin() != a.origin() {
                let report = c.to_string();
                assert!(
                    report.contains(&e.origin()) && report.contains(&a.origin()),
                    "names both sides: {report}"
                );
            }
        }
    }
}

#[test]
fn bad_input_is_an_error_or_a_report_never_a_panic() {
    let a = HostArray::from_vec(vec![2, 3], vec![0f32; 6]).unwrap();
    let b = HostArray::from_vec(vec![3, 2], vec![0f32; 6]).unwrap();
    let err = compare(&a, &b, &Tolerance::default()).unwrap_err();
    assert!(matches!(err, TestingError::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("[2, 3] != [3, 2]"), "{err}");
    let d = HostArray::from_vec(vec![2, 3], vec![0f64; 6]).unwrap();
    let err = compare(&a, &d, &Tolerance::default()).unwrap_err();
    assert!(matches!(err, TestingError::DtypeMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("any_dtype"),
        "says what to do: {err}"
    );
    assert!(
        compare(&a, &d, &Tolerance::default().any_dtype())
            .unwrap()
            .is_close()
    );
    // Raw dtypes compare byte for byte.
    let fp8 = DType::Raw(ferry::raw_dtypes::FLOAT8_E4M3FN);
    let x = HostArray::from_bytes(vec![4], fp8, &[1, 2, 3, 4]).unwrap();
    let y = HostArray::from_bytes(vec![4], fp8, &[1, 2, 9, 4]).unwrap();
    let c = compare(&x, &y, &Tolerance::default()).unwrap();
    assert_eq!(
        (c.mismatches(), c.first_mismatches()[0].index.clone()),
        (1, vec![2])
    );
    assert!(compare(&x, &x, &Tolerance::default()).unwrap().is_close());
    assert!(matches!(
        compare(
            &x,
            &a.cast::<u8>().unwrap(),
            &Tolerance::default().any_dtype()
        ),
        Err(TestingError::ShapeMismatch { .. } | TestingError::UnsupportedDtype { .. })
    ));
    // Empty and 0-d.
    let empty = HostArray::from_vec(vec![0, 3], Vec::<f32>::new()).unwrap();
    assert!(
        compare(&empty, &empty, &Tolerance::default())
            .unwrap()
            .is_close()
    );
    let one = HostArray::from_vec(vec![], vec![1.0f32]).unwrap();
    let two = HostArray::from_vec(vec![], vec![2.0f32]).unwrap();
    let c = compare(&one, &two, &Tolerance::default()).unwrap();
    assert!(
        c.to_string()
            .starts_with("Scalars are not close!\n\nExpected 2.0 but got 1.0."),
        "{c}"
    );
}

#[test]
#[should_panic(expected = "Tensor-likes are not close!")]
fn assert_close_panics_with_the_report() {
    let a = ferry::ndarray::arr1(&[1.0f32, 2.0, 3.5]);
    ferry::assert_close!(
        a,
        HostArray::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap()
    );
}

#[test]
fn assert_close_takes_tolerances_and_flags() {
    let a = ferry::ndarray::arr1(&[1.0f32, f32::NAN, 3.0]);
    let e = ferry::ndarray::arr1(&[1.001f32, f32::NAN, 3.0]);
    ferry::assert_close!(a, e, rtol = 0.0, atol = 1e-2, equal_nan);
    ferry::assert_equal!(
        ferry::ndarray::arr1(&[1i32, 2]),
        ferry::ndarray::arr1(&[1i64, 2]),
        any_dtype
    );
    let caught = std::panic::catch_unwind(|| ferry::assert_close!(a, e, equal_nan)).unwrap_err();
    let message = caught.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("Mismatched elements: 1 / 3 (33.3%)"),
        "{message}"
    );
}

/// A generic check, run once per framework of this build by `backend_tests!`.
fn round_trip<B: Backend>() -> ferry::Result<()> {
    let host = HostArray::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.])?;
    let t = B::from_host(&host, &B::cpu())?;
    ferry::assert_equal!(B::to_host(&t)?, host);
    Ok(())
}

ferry::backend_tests!(round_trip);

/// Golden files written by PyTorch (`safetensors.torch.save_file`) and NumPy (`np.savez`),
/// checked against every framework; blessing writes a file PyTorch reads back bit for bit and
/// keeps the file's other entries and metadata.
#[cfg(feature = "python")]
#[test]
fn golden_files_from_pytorch_and_numpy_check_every_framework_and_bless_round_trips() {
    use ferry::testing::Golden;
    use pyo3::prelude::*;
    use pyo3::types::PyDict;
    let dir = tempfile::tempdir().unwrap();
    let torch_file = dir.path().join("encoder.safetensors");
    let numpy_file = dir.path().join("encoder.npz");
    crate::python::with_python(|py| {
        let locals = PyDict::new(py);
        locals.set_item("torch_file", torch_file.to_str().unwrap())?;
        locals.set_item("numpy_file", numpy_file.to_str().unwrap())?;
        py.run(
            cr#"
import numpy as np, torch, safetensors.torch
out = torch.arange(24, dtype=torch.float32).reshape(4, 6).sin()
safetensors.torch.save_file({"layer3.out": out, "other": torch.ones(2)}, torch_file, metadata={"model": "encoder"})
np.savez(numpy_file, **{"layer3.out": out.numpy()})
"#,
            Some(&locals),
            None,
        )
    });
    let values: Vec<f32> = (0..24).map(|i| (i as f32).sin()).collect();
    let ours = HostArray::from_vec(vec![4, 6], values).unwrap();
    for path in [&torch_file, &numpy_file] {
        let golden = Golden::open_with(path, false).unwrap();
        for (name, t) in frameworks(&ours) {
            golden
                .check("layer3.out", &t.as_ref())
                .unwrap_or_else(|e| panic!("{name} against {}: {e}", path.display()));
        }
        // A mismatch fails with the report; a missing entry says how to write it.
        let mut off = (0..24).map(|i| (i as f32).sin()).collect::<Vec<_>>();
        off[5] += 0.5;
        let off = HostArray::from_vec(vec![4, 6], off).unwrap();
        let err = golden.check("layer3.out", &off).unwrap_err();
        assert!(matches!(err, TestingError::GoldenMismatch { .. }), "{err}");
        assert!(err.to_string().contains("at index (0, 5)"), "{err}");
        let err = golden.check("layer4.out", &off).unwrap_err();
        assert!(err.to_string().contains("FERRY_BLESS=1"), "{err}");
    }
    // Bless: replace one entry and add one; the others and the metadata stay.
    let blessing = Golden::open_with(&torch_file, true).unwrap();
    // Twice PyTorch's values (exact in f32), so PyTorch can check the bits.
    let theirs = Golden::open_with(&torch_file, false).unwrap();
    let doubled: Vec<f32> = theirs
        .get("layer3.out")
        .unwrap()
        .view::<f32>()
        .unwrap()
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    let doubled = HostArray::from_vec(vec![4, 6], doubled).unwrap();
    blessing.check("layer3.out", &doubled).unwrap();
    blessing
        .check("new", &ferry::ndarray::arr1(&[1.5f64, -0.0]))
        .unwrap();
    crate::python::with_python(|py| {
        let locals = PyDict::new(py);
        locals.set_item("torch_file", torch_file.to_str().unwrap())?;
        py.run(
            cr#"
import torch, safetensors, safetensors.torch
back = safetensors.torch.load_file(torch_file)
assert sorted(back) == ["layer3.out", "new", "other"], sorted(back)
expected = 2 * torch.arange(24, dtype=torch.float32).reshape(4, 6).sin()
assert torch.equal(back["layer3.out"].view(torch.int32), expected.view(torch.int32)), "bit for bit"
assert back["new"].dtype == torch.float64 and back["new"].tolist() == [1.5, -0.0]
assert str(back["new"][1].item()) == "-0.0"
assert torch.equal(back["other"], torch.ones(2))
with safetensors.safe_open(torch_file, "pt") as f:
    assert f.metadata() == {"model": "encoder"}, f.metadata()
"#,
            Some(&locals),
            None,
        )
    });
    Golden::open_with(&torch_file, false)
        .unwrap()
        .check("layer3.out", &doubled)
        .unwrap();
}
