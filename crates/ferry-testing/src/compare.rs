//! [`compare`] and its [`Comparison`]: one pass over two host arrays of any layouts (no copy of
//! either when both are host memory of one dtype), split over threads for large arrays, with
//! `torch.testing.assert_close`'s verdict, statistics and wording.

use std::fmt;

use ferry_core::ndarray::{ArrayView1, ArrayViewD, Axis, Slice};
use ferry_core::{CopyPolicy, DType, HostArray};

use crate::input::{Compared, Values, ViewElement};
use crate::kind::{self, Kind, Tol};
use crate::repr::{self, Value};
use crate::tolerance::{Tolerance, promote};
use crate::{Error, Result};

/// Mismatches listed in a report.
const SHOWN: usize = 5;
/// Elements per block of the fast path (one bit each in its mask of pairs not close).
pub(crate) const BLOCK: usize = 1024;
/// Arrays with at least this many elements are compared on several threads.
const PARALLEL_MIN: usize = 1 << 18;
/// What a bare host array is called in a report.
pub(crate) const HOST_ARRAY: &str = "host array";

/// The greatest difference of one kind and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Greatest {
    /// The difference (as `torch.testing` computes it: in the compared dtype).
    pub value: Value,
    /// Its index in the arrays' logical shape.
    pub index: Vec<usize>,
}

/// One mismatched element.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Its index in the arrays' logical shape.
    pub index: Vec<usize>,
    /// `actual`'s element.
    pub actual: Value,
    /// `expected`'s element.
    pub expected: Value,
}

/// The outcome of comparing two arrays: the verdict and what a person needs to see when it
/// fails. Its `Display` is the report (`torch.testing.assert_close`'s wording, then the first
/// mismatches, NaN and infinity counts, and both sides' origins and dtypes when they differ).
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    shape: Vec<usize>,
    actual: (DType, String),
    expected: (DType, String),
    dtype: DType,
    rtol: f64,
    atol: f64,
    equal_nan: bool,
    elements: usize,
    mismatches: usize,
    nan_mismatches: usize,
    inf_mismatches: usize,
    greatest_absolute: Option<Greatest>,
    greatest_relative: Option<Greatest>,
    first: Vec<Mismatch>,
    max_abs_diff: f64,
    max_rel_diff: f64,
}

impl Comparison {
    /// Whether every element is within tolerance.
    pub fn is_close(&self) -> bool {
        self.mismatches == 0
    }

    /// How many elements are not within tolerance.
    pub fn mismatches(&self) -> usize {
        self.mismatches
    }

    /// How many elements were compared.
    pub fn elements(&self) -> usize {
        self.elements
    }

    /// The share of mismatched elements, 0 to 1 (0 for empty arrays).
    pub fn mismatch_share(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.mismatches as f64 / self.elements as f64
        }
    }

    /// Mismatches where either side is NaN.
    pub fn nan_mismatches(&self) -> usize {
        self.nan_mismatches
    }

    /// Mismatches where either side is ±inf (and neither is NaN).
    pub fn inf_mismatches(&self) -> usize {
        self.inf_mismatches
    }

    /// The greatest absolute difference among the mismatches, as `torch.testing` reports it
    /// (`None` when every element is close).
    pub fn greatest_absolute(&self) -> Option<&Greatest> {
        self.greatest_absolute.as_ref()
    }

    /// The greatest relative difference `|a − e| / |e|` among the mismatches (`None` when
    /// every element is close).
    pub fn greatest_relative(&self) -> Option<&Greatest> {
        self.greatest_relative.as_ref()
    }

    /// The greatest `|a − e|` over every element, close or not, in f64 (NaN pairs left out):
    /// the number for a table of how far two runs are apart.
    pub fn max_abs_diff(&self) -> f64 {
        self.max_abs_diff
    }

    /// The greatest `|a − e| / |e|` over every element with `e ≠ 0`, in f64 (NaN pairs left
    /// out).
    pub fn max_rel_diff(&self) -> f64 {
        self.max_rel_diff
    }

    /// The first mismatches in row-major order (at most five).
    pub fn first_mismatches(&self) -> &[Mismatch] {
        &self.first
    }

    /// The `(rtol, atol)` used.
    pub fn tolerances(&self) -> (f64, f64) {
        (self.rtol, self.atol)
    }

    /// The arrays' shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype the elements were compared in (the promoted one with
    /// [`Tolerance::any_dtype`]).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `actual`'s dtype and origin (a framework's name, "host array", a golden file entry).
    pub fn actual(&self) -> (DType, &str) {
        (self.actual.0, &self.actual.1)
    }

    /// `expected`'s dtype and origin.
    pub fn expected(&self) -> (DType, &str) {
        (self.expected.0, &self.expected.1)
    }

    /// Names `actual` and `expected` in the report (the facade's generic `compare` passes the
    /// frameworks' names).
    pub fn with_origins(mut self, actual: impl Into<String>, expected: impl Into<String>) -> Self {
        self.actual.1 = actual.into();
        self.expected.1 = expected.into();
        self
    }

    /// Whether the tolerances are zero: torch then says "equal" instead of "close".
    fn is_equality(&self) -> bool {
        self.rtol == 0.0 && self.atol == 0.0
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.shape.is_empty() {
            "Scalars"
        } else {
            "Tensor-likes"
        };
        let relation = if self.is_equality() { "equal" } else { "close" };
        if self.is_close() {
            write!(
                f,
                "{what} are {relation} ({} elements of shape {:?}, {}",
                self.elements, self.shape, self.dtype
            )?;
            if !self.is_equality() {
                write!(
                    f,
                    "; rtol {}, atol {}",
                    repr::float(self.rtol),
                    repr::float(self.atol)
                )?;
            }
            write!(
                f,
                "; max abs diff {}, max rel diff {})",
                repr::float(self.max_abs_diff),
                repr::float(self.max_rel_diff)
            )?;
            return self.write_origins(f);
        }
        writeln!(f, "{what} are not {relation}!")?;
        writeln!(f)?;
        let tolerance = |tol: f64| {
            if self.is_equality() {
                String::new()
            } else {
                format!(" (up to {} allowed)", repr::float(tol))
            }
        };
        let (abs, rel) = (
            self.greatest_absolute.as_ref(),
            self.greatest_relative.as_ref(),
        );
        if self.shape.is_empty() {
            if let Some(m) = self.first.first() {
                writeln!(f, "Expected {} but got {}.", m.expected, m.actual)?;
            }
            if let (Some(abs), Some(rel)) = (abs, rel) {
                writeln!(
                    f,
                    "Absolute difference: {}{}",
                    abs.value,
                    tolerance(self.atol)
                )?;
                write!(
                    f,
                    "Relative difference: {}{}",
                    rel.value,
                    tolerance(self.rtol)
                )?;
            }
        } else {
            write!(
                f,
                "Mismatched elements: {} / {} ({})",
                self.mismatches,
                self.elements,
                repr::percent(self.mismatches, self.elements)
            )?;
            for (kind, greatest, tol) in
                [("absolute", abs, self.atol), ("relative", rel, self.rtol)]
            {
                if let Some(g) = greatest {
                    write!(
                        f,
                        "\nGreatest {kind} difference: {} at index {}{}",
                        g.value,
                        repr::index(&g.index),
                        tolerance(tol)
                    )?;
                }
            }
            writeln!(f)?;
            writeln!(f)?;
            write!(f, "First mismatches (index: actual vs expected):")?;
            for m in &self.first {
                write!(
                    f,
                    "\n  {}: {} vs {}",
                    repr::index(&m.index),
                    m.actual,
                    m.expected
                )?;
            }
            if self.mismatches > self.first.len() {
                write!(f, "\n  … and {} more", self.mismatches - self.first.len())?;
            }
        }
        if self.nan_mismatches + self.inf_mismatches > 0 {
            write!(
                f,
                "\nOf the mismatches, {} have NaN on one side or both{} and {} ±inf",
                self.nan_mismatches,
                if self.equal_nan {
                    ""
                } else {
                    " (NaN never equals NaN without equal_nan)"
                },
                self.inf_mismatches
            )?;
        }
        self.write_origins(f)
    }
}

impl Comparison {
    /// The origins and dtypes line, where the two sides differ in either.
    fn write_origins(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((ad, ao), (ed, eo)) = (&self.actual, &self.expected);
        if ad != ed || ao != eo {
            write!(f, "\nactual: {ao}, {ad}; expected: {eo}, {ed}")?;
            if ad != ed {
                write!(f, "; compared as {}", self.dtype)?;
            }
        }
        Ok(())
    }
}

/// Compares two arrays elementwise: `|a − e| ≤ atol + rtol·|e|`, exactly as
/// `torch.testing.assert_close` decides (see [`Tolerance`] for the defaults and the options).
/// Either side is anything [`Compared`]: a host array, an ndarray array, or (with the framework
/// features) a candle, Burn or tch tensor.
///
/// Both sides are read where they are, in any layout (strided, transposed, broadcast), in one
/// pass; a device tensor is copied to the host once (recorded). A shape mismatch or (without
/// [`Tolerance::any_dtype`]) a dtype mismatch is an [`Error`]; values that are not close are a
/// [`Comparison`] whose [`is_close`](Comparison::is_close) is false.
///
/// ```
/// use ferry_core::HostArray;
/// use ferry_testing::{Tolerance, compare};
///
/// let expected = HostArray::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0])?;
/// let actual = HostArray::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.5, 4.0])?;
/// let c = compare(&actual, &expected, &Tolerance::default())?;
/// assert!(!c.is_close());
/// assert_eq!(c.greatest_absolute().unwrap().index, [1, 0]);
/// assert!(c.to_string().contains("Greatest absolute difference: 0.5 at index (1, 0)"));
/// # Ok::<(), ferry_testing::Error>(())
/// ```
pub fn compare(
    actual: &impl Compared,
    expected: &impl Compared,
    tolerance: &Tolerance,
) -> Result<Comparison> {
    compare_values(
        actual.values()?,
        &actual.origin(),
        expected.values()?,
        &expected.origin(),
        tolerance,
    )
}

/// [`compare`] of values already taken, each side's origin named for the report and errors.
pub fn compare_values(
    actual: Values<'_>,
    actual_origin: &str,
    expected: Values<'_>,
    expected_origin: &str,
    tolerance: &Tolerance,
) -> Result<Comparison> {
    let (actual_dtype, expected_dtype) = (actual.dtype(), expected.dtype());
    if actual.shape() != expected.shape() {
        return Err(Error::ShapeMismatch {
            actual: actual.shape().to_vec(),
            expected: expected.shape().to_vec(),
            actual_origin: format!("{actual_origin}, {actual_dtype}"),
            expected_origin: format!("{expected_origin}, {expected_dtype}"),
        });
    }
    let shape = actual.shape().to_vec();
    let dtype = if actual_dtype == expected_dtype {
        actual_dtype
    } else if tolerance.any_dtype {
        promote(actual_dtype, expected_dtype).ok_or(Error::UnsupportedDtype {
            dtype: if actual_dtype.is_typed() {
                expected_dtype
            } else {
                actual_dtype
            },
            why: "a raw dtype compares only with the same raw dtype, byte for byte",
        })?
    } else {
        return Err(Error::DtypeMismatch {
            actual: actual_dtype,
            expected: expected_dtype,
            actual_origin: actual_origin.into(),
            expected_origin: expected_origin.into(),
        });
    };
    let (rtol, atol) = tolerance.resolve(actual_dtype, expected_dtype);
    let (a, e) = (cast(actual, dtype)?, cast(expected, dtype)?);
    let equal_nan = tolerance.equal_nan;
    let partial = match dtype {
        DType::Bool => run::<kind::Bool>(&a, &e, rtol, atol, equal_nan)?,
        DType::U8 => run::<kind::U8>(&a, &e, rtol, atol, equal_nan)?,
        DType::U16 => run::<kind::U16>(&a, &e, rtol, atol, equal_nan)?,
        DType::U32 => run::<kind::U32>(&a, &e, rtol, atol, equal_nan)?,
        DType::U64 => run::<kind::U64>(&a, &e, rtol, atol, equal_nan)?,
        DType::I8 => run::<kind::I8>(&a, &e, rtol, atol, equal_nan)?,
        DType::I16 => run::<kind::I16>(&a, &e, rtol, atol, equal_nan)?,
        DType::I32 => run::<kind::I32>(&a, &e, rtol, atol, equal_nan)?,
        DType::I64 => run::<kind::I64>(&a, &e, rtol, atol, equal_nan)?,
        DType::F16 => run::<kind::F16>(&a, &e, rtol, atol, equal_nan)?,
        DType::BF16 => run::<kind::BF16>(&a, &e, rtol, atol, equal_nan)?,
        DType::F32 => run::<kind::F32>(&a, &e, rtol, atol, equal_nan)?,
        DType::F64 => run::<kind::F64>(&a, &e, rtol, atol, equal_nan)?,
        DType::C64 => run::<kind::C64>(&a, &e, rtol, atol, equal_nan)?,
        DType::C128 => run::<kind::C128>(&a, &e, rtol, atol, equal_nan)?,
        _ => match (&a, &e) {
            (Values::Host(a), Values::Host(e)) => run_bytes(a, e)?,
            _ => unreachable!("ndarray views are always of a typed dtype"),
        },
    };
    let at = |found: Option<(Value, usize)>| {
        found.map(|(value, flat)| Greatest {
            value,
            index: unravel(flat, &shape),
        })
    };
    let mismatches = partial.mismatches;
    let (greatest_absolute, greatest_relative) = if mismatches == 0 {
        (None, None)
    } else {
        (
            at(partial.with_matched_zero(partial.abs)),
            at(partial.with_matched_zero(partial.rel)),
        )
    };
    let first = partial
        .first
        .into_iter()
        .map(|(flat, actual, expected)| Mismatch {
            index: unravel(flat, &shape),
            actual,
            expected,
        })
        .collect();
    Ok(Comparison {
        elements: shape.iter().product(),
        shape,
        actual: (actual_dtype, actual_origin.into()),
        expected: (expected_dtype, expected_origin.into()),
        dtype,
        rtol,
        atol,
        equal_nan,
        mismatches,
        nan_mismatches: partial.nan,
        inf_mismatches: partial.inf,
        greatest_absolute,
        greatest_relative,
        first,
        max_abs_diff: partial.max_abs,
        max_rel_diff: partial.max_rel,
    })
}

/// `values` in `dtype` (unchanged when already of it; else one recorded cast copy).
fn cast(values: Values<'_>, dtype: DType) -> Result<Values<'_>> {
    if values.dtype() == dtype {
        return Ok(values);
    }
    let host = match values {
        Values::Host(h) => h,
        Values::View(v) => v.to_host(),
    };
    Ok(Values::Host(host.cast_to(dtype)?))
}

/// A typed view of `values`, which hold `T`.
fn typed<'a, T: ViewElement>(values: &'a Values<'_>) -> Result<ArrayViewD<'a, T>> {
    match values {
        Values::Host(h) => Ok(h.view::<T>()?),
        Values::View(v) => Ok(T::from_any(v).expect("the dtype was checked").reborrow()),
    }
}

/// A flat row-major index as a multi-index of `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &len) in index.iter_mut().zip(shape).rev() {
        if len > 0 {
            *slot = flat % len;
            flat /= len;
        }
    }
    index
}

/// What one part of the arrays contributed.
#[derive(Debug, Default)]
struct Partial {
    mismatches: usize,
    nan: usize,
    inf: usize,
    /// The first element within tolerance (torch zeroes those, so its 0 competes for the
    /// maxima).
    first_match: Option<usize>,
    abs: Option<(Value, usize)>,
    rel: Option<(Value, usize)>,
    first: Vec<(usize, Value, Value)>,
    max_abs: f64,
    max_rel: f64,
    /// The zero a matched element contributes, in the dtype's terms.
    zero: Option<Value>,
}

/// Keeps `(value, index)` in `slot` if greater by `torch.max`'s rule (NaN above all, the
/// first index on ties: elements arrive in row-major order).
fn keep_greater(slot: &mut Option<(Value, usize)>, value: Value, index: usize) {
    match slot {
        Some((current, _)) if !value.greater_than(*current) => {}
        _ => *slot = Some((value, index)),
    }
}

impl Partial {
    /// `self` then `later` (a part further on in row-major order).
    fn merge(mut self, later: Partial) -> Partial {
        self.mismatches += later.mismatches;
        self.nan += later.nan;
        self.inf += later.inf;
        self.first_match = self.first_match.or(later.first_match);
        for (slot, other) in [(&mut self.abs, later.abs), (&mut self.rel, later.rel)] {
            if let Some((value, index)) = other {
                keep_greater(slot, value, index);
            }
        }
        let room = SHOWN - self.first.len();
        self.first.extend(later.first.into_iter().take(room));
        self.max_abs = self.max_abs.max(later.max_abs);
        self.max_rel = self.max_rel.max(later.max_rel);
        self.zero = self.zero.or(later.zero);
        self
    }

    /// The maximum torch reports: over the mismatches and the zeros of the matched elements.
    fn with_matched_zero(&self, found: Option<(Value, usize)>) -> Option<(Value, usize)> {
        let (Some(first_match), Some(zero)) = (self.first_match, self.zero) else {
            return found;
        };
        match found {
            None => Some((zero, first_match)),
            Some((value, index)) => {
                let zero_wins =
                    zero.greater_than(value) || (!value.greater_than(zero) && first_match < index);
                Some(if zero_wins {
                    (zero, first_match)
                } else {
                    (value, index)
                })
            }
        }
    }
}

/// Compares two arrays of kind `K`'s dtype.
fn run<K: Kind>(
    a: &Values<'_>,
    e: &Values<'_>,
    rtol: f64,
    atol: f64,
    equal_nan: bool,
) -> Result<Partial> {
    let (va, ve) = (typed::<K::T>(a)?, typed::<K::T>(e)?);
    let tol = K::tol(rtol, atol, equal_nan);
    let zero_d = va.ndim() == 0;
    let first = (va.first().copied(), ve.first().copied());
    let mut partial = scan::<K>(va, ve, tol);
    partial.zero = Some(K::zero());
    if let (true, (Some(x), Some(y))) = (zero_d && partial.mismatches > 0, first) {
        // torch compares a 0-d pair as Python numbers (`t.item()`).
        let (abs, rel) = K::scalar_diffs(x, y);
        partial.abs = Some((abs, 0));
        partial.rel = Some((rel, 0));
        partial.first_match = None;
    }
    Ok(partial)
}

/// Splits the arrays along their first axis over threads when they are large.
fn scan<K: Kind>(a: ArrayViewD<'_, K::T>, e: ArrayViewD<'_, K::T>, tol: Tol<K::M>) -> Partial {
    let n = a.len();
    let rows = a.shape().first().copied().unwrap_or(1);
    let threads = if n >= PARALLEL_MIN && rows >= 2 {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8)
            .min(rows)
    } else {
        1
    };
    if threads <= 1 {
        return scan_part::<K>(a, e, 0, tol);
    }
    let per_row = n / rows;
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let (r0, r1) = (rows * t / threads, rows * (t + 1) / threads);
                let part_a = a.slice_axis(Axis(0), Slice::from(r0..r1));
                let part_e = e.slice_axis(Axis(0), Slice::from(r0..r1));
                s.spawn(move || scan_part::<K>(part_a, part_e, r0 * per_row, tol))
            })
            .collect();
        parts
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .reduce(Partial::merge)
            .unwrap_or_default()
    })
}

/// One part, row by row in row-major order; `base` is its first element's flat index.
fn scan_part<K: Kind>(
    a: ArrayViewD<'_, K::T>,
    e: ArrayViewD<'_, K::T>,
    base: usize,
    tol: Tol<K::M>,
) -> Partial {
    let mut p = Partial {
        max_abs: 0.0,
        max_rel: 0.0,
        ..Partial::default()
    };
    let (a, e) = if a.ndim() == 0 {
        (a.insert_axis(Axis(0)), e.insert_axis(Axis(0)))
    } else {
        (a, e)
    };
    let row_len = a.shape().last().copied().unwrap_or(1);
    if row_len == 0 {
        return p;
    }
    for (r, (ra, re)) in a.rows().into_iter().zip(e.rows()).enumerate() {
        scan_row::<K>(ra, re, base + r * row_len, tol, &mut p);
    }
    p
}

/// One row: blocks of contiguous elements are checked in a tight loop that marks the pairs not
/// close, which alone are then looked at one by one.
fn scan_row<K: Kind>(
    a: ArrayView1<'_, K::T>,
    e: ArrayView1<'_, K::T>,
    base: usize,
    tol: Tol<K::M>,
    p: &mut Partial,
) {
    if let (Some(a), Some(e)) = (a.as_slice(), e.as_slice()) {
        let mut bad = [0u8; BLOCK];
        for (b, (block_a, block_e)) in a.chunks(BLOCK).zip(e.chunks(BLOCK)).enumerate() {
            let (count, max_abs, max_rel) = K::block(block_a, block_e, tol, &mut bad);
            p.max_abs = p.max_abs.max(max_abs);
            p.max_rel = p.max_rel.max(max_rel);
            let start = base + b * BLOCK;
            let flags = &bad[..block_a.len()];
            if p.first_match.is_none()
                && let Some(i) = flags.iter().position(|&f| f == 0)
            {
                p.first_match = Some(start + i);
            }
            if count > 0 {
                // Eight flags a word: a block with a few mismatches skips its close pairs
                // eight at a time.
                for (w, word) in flags.chunks(8).enumerate() {
                    let mut bytes = [0u8; 8];
                    bytes[..word.len()].copy_from_slice(word);
                    let mut set = u64::from_le_bytes(bytes);
                    while set != 0 {
                        let i = w * 8 + (set.trailing_zeros() / 8) as usize;
                        record::<K>(block_a[i], block_e[i], start + i, p);
                        set &= set - 1; // a flag is 0 or 1: its lowest set bit is all of it
                    }
                }
            }
        }
    } else {
        for (i, (&x, &y)) in a.iter().zip(e.iter()).enumerate() {
            visit::<K>(x, y, base + i, tol, p);
            let (abs, rel) = K::spread(x, y);
            p.max_abs = p.max_abs.max(abs);
            p.max_rel = p.max_rel.max(rel);
        }
    }
}

/// One element of a strided row.
#[inline]
fn visit<K: Kind>(x: K::T, y: K::T, index: usize, tol: Tol<K::M>, p: &mut Partial) {
    if K::close(x, y, tol) {
        if p.first_match.is_none() {
            p.first_match = Some(index);
        }
        return;
    }
    record::<K>(x, y, index, p);
}

/// One pair that is not close.
#[inline(never)]
fn record<K: Kind>(x: K::T, y: K::T, index: usize, p: &mut Partial) {
    p.mismatches += 1;
    if K::is_nan(x) || K::is_nan(y) {
        p.nan += 1;
    } else if K::is_inf(x) || K::is_inf(y) {
        p.inf += 1;
    }
    let (abs, rel) = K::diffs(x, y);
    keep_greater(&mut p.abs, abs, index);
    keep_greater(&mut p.rel, rel, index);
    if p.first.len() < SHOWN {
        p.first.push((index, K::value(x), K::value(y)));
    }
}

/// Raw dtypes: element by element, byte for byte (one row-major copy of a strided side).
fn run_bytes(a: &HostArray, e: &HostArray) -> Result<Partial> {
    let dtype = a.dtype();
    let Some(size) = dtype.size_in_bytes().filter(|&s| s <= 16) else {
        return Err(Error::UnsupportedDtype {
            dtype,
            why: "packed sub-byte elements (or elements over 16 bytes) are not compared elementwise; unpack or cast them first",
        });
    };
    let (a, e) = (
        a.to_contiguous(CopyPolicy::IfNeeded)?,
        e.to_contiguous(CopyPolicy::IfNeeded)?,
    );
    let (ab, eb) = (
        a.as_bytes().unwrap_or_default(),
        e.as_bytes().unwrap_or_default(),
    );
    let bits = |chunk: &[u8]| {
        let mut wide = [0u8; 16];
        wide[..chunk.len()].copy_from_slice(chunk);
        Value::Bits(u128::from_le_bytes(wide))
    };
    let mut p = Partial::default();
    for (i, (x, y)) in ab.chunks(size).zip(eb.chunks(size)).enumerate() {
        if x == y {
            p.first_match.get_or_insert(i);
            continue;
        }
        p.mismatches += 1;
        if p.first.len() < SHOWN {
            p.first.push((i, bits(x), bits(y)));
        }
    }
    Ok(p)
}
