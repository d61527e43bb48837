//! How each dtype's elements compare: `torch.isclose` in the dtype's own arithmetic (f16 and
//! bf16 compute in f32 and round each step back, as PyTorch's CPU kernels do; integers
//! subtract with wrap-around, as PyTorch's integer tensors do), and the differences
//! `torch.testing`'s report states for a mismatch.

use ferry_core::half::{bf16, f16};
use ferry_core::num_complex::Complex;

use crate::input::ViewElement;
use crate::repr::Value;

/// The tolerances of one comparison, converted once into the arithmetic of the dtype.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tol<M> {
    rtol: M,
    atol: M,
    equal_nan: bool,
    /// `rtol == atol == 0`: `torch.isclose` is then `==` (plus NaN with `equal_nan`).
    exact: bool,
}

/// One dtype's comparison rules.
pub(crate) trait Kind: Send + Sync + 'static {
    /// The element type.
    type T: ViewElement + Copy + Send + Sync;
    /// The arithmetic tolerances are applied in (`torch`'s "opmath" type).
    type M: Copy + Send + Sync;

    /// The tolerances in this dtype's arithmetic.
    fn tol(rtol: f64, atol: f64, equal_nan: bool) -> Tol<Self::M>;

    /// `torch.isclose(a, e)` for one pair.
    fn close(a: Self::T, e: Self::T, tol: Tol<Self::M>) -> bool;

    /// `(|a − e|, |a − e| / |e|)` as `torch.testing`'s report computes them for a tensor, in
    /// the dtype's arithmetic (integers in i64, their relative difference in f32).
    fn diffs(a: Self::T, e: Self::T) -> (Value, Value);

    /// The same for a 0-d tensor, which torch compares as Python numbers (`t.item()`): exact
    /// integers, f64 floats, and an infinite relative difference where `e == 0`.
    fn scalar_diffs(a: Self::T, e: Self::T) -> (Value, Value);

    /// What a matched element contributes to the report's maxima (torch zeroes them).
    fn zero() -> Value;

    /// The element as reported.
    fn value(x: Self::T) -> Value;

    /// `(|a − e|, |a − e| / |e|)` in f64 for the whole-array maxima (NaN where undefined).
    fn spread(a: Self::T, e: Self::T) -> (f64, f64);

    /// One contiguous block of at most 64 pairs: `bad[i]` set to 1 for each pair `i` that is
    /// not close (0 for the others), and how many those are, with the greatest `|a − e|` and
    /// `|a − e| / |e|` (where `e ≠ 0`; NaN pairs left out). The fast path of a comparison: a
    /// tight loop the compiler vectorises; only the pairs marked are looked at one by one.
    #[inline(always)]
    fn block(
        a: &[Self::T],
        e: &[Self::T],
        tol: Tol<Self::M>,
        bad: &mut [u8; crate::compare::BLOCK],
    ) -> (usize, f64, f64) {
        debug_assert!(a.len() <= bad.len() && a.len() == e.len());
        let (mut count, mut max_abs, mut max_rel) = (0usize, 0f64, 0f64);
        for ((&x, &y), flag) in a.iter().zip(e).zip(bad.iter_mut()) {
            *flag = u8::from(!Self::close(x, y, tol));
            count += usize::from(*flag);
            let (abs, rel) = Self::spread(x, y);
            max_abs = max_abs.max(abs);
            max_rel = max_rel.max(rel);
        }
        (count, max_abs, max_rel)
    }

    /// Whether the element is NaN (either part, for complex numbers).
    fn is_nan(x: Self::T) -> bool;

    /// Whether the element is ±inf (either part) and not NaN.
    fn is_inf(x: Self::T) -> bool;
}

fn tol<M>(rtol: M, atol: M, equal_nan: bool, exact: bool) -> Tol<M> {
    Tol {
        rtol,
        atol,
        equal_nan,
        exact,
    }
}

/// f64 spread of two real values.
#[inline(always)]
fn real_spread(a: f64, e: f64) -> (f64, f64) {
    let abs = (a - e).abs();
    (abs, relative(abs, e.abs()))
}

/// `abs / magnitude`, NaN where the magnitude is 0 (left out of the maxima).
#[inline(always)]
fn relative(abs: f64, magnitude: f64) -> f64 {
    if magnitude == 0.0 {
        f64::NAN
    } else {
        abs / magnitude
    }
}

/// Python's `abs(a - e)` and `inf if e == 0 else abs / abs(e)` for floats.
fn python_float_diffs(a: f64, e: f64) -> (Value, Value) {
    let abs = (a - e).abs();
    let rel = if e == 0.0 {
        f64::INFINITY
    } else {
        abs / e.abs()
    };
    (Value::Float(abs), Value::Float(rel))
}

/// The same for Python ints.
fn python_int_diffs(a: i128, e: i128) -> (Value, Value) {
    let abs = (a - e).abs();
    let rel = if e == 0 {
        f64::INFINITY
    } else {
        abs as f64 / e.abs() as f64
    };
    (Value::Int(abs), Value::Float(rel))
}

/// Floats: `$to` widens to the arithmetic type `$m`, `$round` rounds a result back to `$t`.
macro_rules! float_kind {
    ($name:ident, $t:ty, $m:ty, $bits:ty, $to:expr, $round:expr) => {
        pub(crate) struct $name;

        impl Kind for $name {
            type T = $t;
            type M = $m;

            fn tol(rtol: f64, atol: f64, equal_nan: bool) -> Tol<$m> {
                // PyTorch multiplies by a scalar in the arithmetic type (`rtol` stays f32 for
                // f16 and bf16) but adds one as a tensor of the dtype (`atol` is rounded to it).
                let round: fn($m) -> $m = $round;
                tol(
                    rtol as $m,
                    round(atol as $m),
                    equal_nan,
                    rtol == 0.0 && atol == 0.0,
                )
            }

            #[inline(always)]
            fn close(a: $t, e: $t, t: Tol<$m>) -> bool {
                let to: fn($t) -> $m = $to;
                let round: fn($m) -> $m = $round;
                let (a, e) = (to(a), to(e));
                let equal = a == e;
                let nans = t.equal_nan & a.is_nan() & e.is_nan();
                if t.exact {
                    return equal | nans;
                }
                // torch.isclose: atol + |rtol * e| against |a - e|, each step in the tensor's
                // dtype.
                let allowed = round(t.atol + round(t.rtol * e).abs());
                let error = round(a - e).abs();
                equal | nans | (error.is_finite() & (error <= allowed))
            }

            fn diffs(a: $t, e: $t) -> (Value, Value) {
                let to: fn($t) -> $m = $to;
                let round: fn($m) -> $m = $round;
                let abs = round(to(a) - to(e)).abs();
                let rel = round(abs / to(e).abs());
                (Value::Float(abs as f64), Value::Float(rel as f64))
            }

            fn scalar_diffs(a: $t, e: $t) -> (Value, Value) {
                let to: fn($t) -> $m = $to;
                python_float_diffs(to(a) as f64, to(e) as f64)
            }

            fn zero() -> Value {
                Value::Float(0.0)
            }

            fn value(x: $t) -> Value {
                let to: fn($t) -> $m = $to;
                Value::Float(to(x) as f64)
            }

            #[inline(always)]
            fn spread(a: $t, e: $t) -> (f64, f64) {
                // In the arithmetic type, as `block` computes them.
                let to: fn($t) -> $m = $to;
                let (a, e) = (to(a), to(e));
                let abs = (a - e).abs();
                let magnitude = e.abs();
                let rel = if magnitude == 0.0 {
                    f64::NAN
                } else {
                    (abs / magnitude) as f64
                };
                (abs as f64, rel)
            }

            #[inline(always)]
            fn block(
                a: &[$t],
                e: &[$t],
                t: Tol<$m>,
                bad: &mut [u8; crate::compare::BLOCK],
            ) -> (usize, f64, f64) {
                debug_assert!(a.len() <= bad.len() && a.len() == e.len());
                let to: fn($t) -> $m = $to;
                let round: fn($m) -> $m = $round;
                // Two tight loops over the block (in cache), each of which vectorises: the
                // verdicts, `close` written out with the exact and NaN cases hoisted, then the
                // maxima, over bit patterns (monotonic for non-negative floats; a NaN counts
                // as 0): a float max reduction does not vectorise without fast-math, an integer
                // one does.
                let mut count = 0u32; // u32 lanes vectorise wider than usize ones
                macro_rules! verdicts {
                    ($exact:expr, $nans:expr) => {
                        for ((&x, &y), flag) in a.iter().zip(e).zip(bad.iter_mut()) {
                            let (x, y) = (to(x), to(y));
                            let equal = x == y;
                            let nans = $nans && (x.is_nan() & y.is_nan());
                            let close = if $exact {
                                equal | nans
                            } else {
                                let allowed = round(t.atol + round(t.rtol * y).abs());
                                let error = round(x - y).abs();
                                equal | nans | (error.is_finite() & (error <= allowed))
                            };
                            *flag = u8::from(!close);
                            count += u32::from(!close);
                        }
                    };
                }
                match (t.exact, t.equal_nan) {
                    (true, true) => verdicts!(true, true),
                    (true, false) => verdicts!(true, false),
                    (false, true) => verdicts!(false, true),
                    (false, false) => verdicts!(false, false),
                }
                let (mut max_abs, mut max_rel) = (0 as $bits, 0 as $bits);
                for (&x, &y) in a.iter().zip(e) {
                    let (x, y) = (to(x), to(y));
                    let abs = (x - y).abs();
                    let magnitude = y.abs();
                    let rel = abs / magnitude;
                    // Signed: bit patterns of non-negative floats fit (SSE2 compares signed
                    // integers only).
                    let abs_bits = if abs == abs {
                        abs.to_bits() as $bits
                    } else {
                        0
                    };
                    let rel_bits = if magnitude != 0.0 && rel == rel {
                        rel.to_bits() as $bits
                    } else {
                        0
                    };
                    max_abs = max_abs.max(abs_bits);
                    max_rel = max_rel.max(rel_bits);
                }
                (
                    count as usize,
                    <$m>::from_bits(max_abs as _) as f64,
                    <$m>::from_bits(max_rel as _) as f64,
                )
            }

            fn is_nan(x: $t) -> bool {
                let to: fn($t) -> $m = $to;
                to(x).is_nan()
            }

            fn is_inf(x: $t) -> bool {
                let to: fn($t) -> $m = $to;
                to(x).is_infinite()
            }
        }
    };
}

float_kind!(F16, f16, f32, i32, f16::to_f32, |x| f16::from_f32(x)
    .to_f32());
float_kind!(BF16, bf16, f32, i32, bf16::to_f32, |x| bf16::from_f32(x)
    .to_f32());
float_kind!(F32, f32, f32, i32, |x| x, |x| x);
float_kind!(F64, f64, f64, i64, |x| x, |x| x);

/// Integers: exact unless tolerances are given, then torch's rule in f32 (the default float
/// dtype, which `torch.isclose` casts integers to).
macro_rules! int_kind {
    ($name:ident, $t:ty) => {
        pub(crate) struct $name;

        impl Kind for $name {
            type T = $t;
            type M = f32;

            fn tol(rtol: f64, atol: f64, equal_nan: bool) -> Tol<f32> {
                tol(
                    rtol as f32,
                    atol as f32,
                    equal_nan,
                    rtol == 0.0 && atol == 0.0,
                )
            }

            #[inline(always)]
            fn close(a: $t, e: $t, t: Tol<f32>) -> bool {
                let equal = a == e;
                if t.exact {
                    return equal;
                }
                // torch.isclose casts integers to the default float dtype (f32) first.
                let (a, e) = (a as f32, e as f32);
                let allowed = t.atol + (t.rtol * e).abs();
                equal | ((a - e).abs() <= allowed)
            }

            fn diffs(a: $t, e: $t) -> (Value, Value) {
                // torch.testing widens integers to i64 before subtracting.
                let (a, e) = (a as i64, e as i64);
                let abs = a.wrapping_sub(e).wrapping_abs();
                let rel = abs as f32 / e.wrapping_abs() as f32;
                (Value::Int(i128::from(abs)), Value::Float(f64::from(rel)))
            }

            fn scalar_diffs(a: $t, e: $t) -> (Value, Value) {
                python_int_diffs(a as i128, e as i128)
            }

            fn zero() -> Value {
                Value::Int(0)
            }

            fn value(x: $t) -> Value {
                Value::Int(x as i128)
            }

            #[inline(always)]
            fn spread(a: $t, e: $t) -> (f64, f64) {
                let abs = (a as i128 - e as i128).unsigned_abs() as f64;
                (abs, relative(abs, (e as i128).unsigned_abs() as f64))
            }

            fn is_nan(_: $t) -> bool {
                false
            }

            fn is_inf(_: $t) -> bool {
                false
            }
        }
    };
}

int_kind!(I8, i8);
int_kind!(I16, i16);
int_kind!(I32, i32);
int_kind!(I64, i64);
int_kind!(U8, u8);
int_kind!(U16, u16);
int_kind!(U32, u32);
int_kind!(U64, u64);

/// Bools: `==`, or with tolerances torch's rule over 0.0 and 1.0 in f32.
pub(crate) struct Bool;

impl Kind for Bool {
    type T = bool;
    type M = f32;

    fn tol(rtol: f64, atol: f64, equal_nan: bool) -> Tol<f32> {
        tol(
            rtol as f32,
            atol as f32,
            equal_nan,
            rtol == 0.0 && atol == 0.0,
        )
    }

    #[inline(always)]
    fn close(a: bool, e: bool, t: Tol<f32>) -> bool {
        if t.exact || a == e {
            return a == e;
        }
        let (a, e) = (f32::from(u8::from(a)), f32::from(u8::from(e)));
        (a - e).abs() <= t.atol + (t.rtol * e).abs()
    }

    fn diffs(a: bool, e: bool) -> (Value, Value) {
        I64::diffs(i64::from(a), i64::from(e))
    }

    fn scalar_diffs(a: bool, e: bool) -> (Value, Value) {
        python_int_diffs(i128::from(a), i128::from(e))
    }

    fn zero() -> Value {
        Value::Int(0)
    }

    fn value(x: bool) -> Value {
        Value::Bool(x)
    }

    fn spread(a: bool, e: bool) -> (f64, f64) {
        real_spread(f64::from(u8::from(a)), f64::from(u8::from(e)))
    }

    fn is_nan(_: bool) -> bool {
        false
    }

    fn is_inf(_: bool) -> bool {
        false
    }
}

/// The modulus, `hypot(re, im)` in the parts' precision. PyTorch's CPU kernels compute it
/// with `hypot` in their scalar loops and `sqrt(re² + im²)` in their vectorised ones, which
/// can differ in the last place, so a reported complex difference may differ from torch's by
/// an ulp or two.
macro_rules! modulus {
    ($z:expr) => {{
        let z = $z;
        z.re.hypot(z.im)
    }};
}

/// Complex numbers: by the modulus of the difference; `rtol · e` is a complex product with
/// `rtol + 0i`, as PyTorch multiplies a complex tensor by a real scalar.
macro_rules! complex_kind {
    ($name:ident, $p:ty) => {
        pub(crate) struct $name;

        impl Kind for $name {
            type T = Complex<$p>;
            type M = $p;

            fn tol(rtol: f64, atol: f64, equal_nan: bool) -> Tol<$p> {
                tol(
                    rtol as $p,
                    atol as $p,
                    equal_nan,
                    rtol == 0.0 && atol == 0.0,
                )
            }

            #[inline(always)]
            fn close(a: Complex<$p>, e: Complex<$p>, t: Tol<$p>) -> bool {
                let equal = (a.re == e.re) & (a.im == e.im);
                let nans = t.equal_nan & Self::is_nan(a) & Self::is_nan(e);
                if t.exact {
                    return equal | nans;
                }
                let scaled = Complex::new(e.re * t.rtol - e.im * 0.0, e.re * 0.0 + e.im * t.rtol);
                let allowed = t.atol + modulus!(scaled);
                let error = modulus!(a - e);
                equal | nans | (error.is_finite() & (error <= allowed))
            }

            fn diffs(a: Complex<$p>, e: Complex<$p>) -> (Value, Value) {
                let abs = modulus!(a - e);
                let rel = abs / modulus!(e);
                (Value::Float(abs as f64), Value::Float(rel as f64))
            }

            fn scalar_diffs(a: Complex<$p>, e: Complex<$p>) -> (Value, Value) {
                let (ar, ai, er, ei) = (a.re as f64, a.im as f64, e.re as f64, e.im as f64);
                let abs = (ar - er).hypot(ai - ei);
                let rel = if er == 0.0 && ei == 0.0 {
                    f64::INFINITY
                } else {
                    abs / er.hypot(ei)
                };
                (Value::Float(abs), Value::Float(rel))
            }

            fn zero() -> Value {
                Value::Float(0.0)
            }

            fn value(x: Complex<$p>) -> Value {
                Value::Complex(x.re as f64, x.im as f64)
            }

            #[inline(always)]
            fn spread(a: Complex<$p>, e: Complex<$p>) -> (f64, f64) {
                let d = a - e;
                let abs = (d.re as f64).hypot(d.im as f64);
                (abs, relative(abs, (e.re as f64).hypot(e.im as f64)))
            }

            fn is_nan(x: Complex<$p>) -> bool {
                x.re.is_nan() | x.im.is_nan()
            }

            fn is_inf(x: Complex<$p>) -> bool {
                !Self::is_nan(x) & (x.re.is_infinite() | x.im.is_infinite())
            }
        }
    };
}

complex_kind!(C64, f32);
complex_kind!(C128, f64);
