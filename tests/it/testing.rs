//! `ferry::testing` against `torch.testing.assert_close` itself (a committed fixture of pairs
//! and torch's answers, `tests/testing/make_torch_fixture.py`), across frameworks, with golden
//! files, and on bad input.

use ferry::testing::{Comparison, Error as TestingError, Tolerance, compare};
use ferry::{DType, HostArray};

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
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testing/torch_assert_close.jsonl");
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
                    && report[message.len()..].chars().next().is_none_or(|ch| ch == '\n')
            };
            (!agrees).then(|| format!("torch:\n{message}\nferry:\n{report}"))
        }
        (Err(TestingError::ShapeMismatch { .. } | TestingError::DtypeMismatch { .. }), false, Some(m))
            if m.starts_with("The values for attribute") =>
        {
            None
        }
        (Ok(c), close, message) => Some(format!(
            "torch close={close} {message:?}; ferry close={}:\n{c}",
            c.is_close()
        )),
        (Err(e), close, message) => Some(format!("torch close={close} {message:?}; ferry error {e}")),
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
                h1 == h2 && t1 == t2 && (x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()))
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
        wrong.iter().take(8).cloned().collect::<Vec<_>>().join("\n\n")
    );
}
