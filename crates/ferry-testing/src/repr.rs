//! Numbers written the way Python's `repr` writes them, so a report reads like
//! `torch.testing.assert_close`'s: `1e-05`, `0.5`, `1.2999999523162842`, `(1+2j)`, `(1, 2)`.

use std::fmt::Write;

/// A value in a report: an element, a difference or a tolerance, with the Python type
/// `torch.testing` reports it as.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A `bool` element (`True`, `False`).
    Bool(bool),
    /// An integer element or difference (Python `int`).
    Int(i128),
    /// A floating-point element or difference (Python `float`: the exact value, as `f64`).
    Float(f64),
    /// A complex element (Python `complex`): real and imaginary parts.
    Complex(f64, f64),
    /// A raw dtype's element: its bytes, little-endian (written in hex).
    Bits(u128),
}

impl Value {
    /// The value as `f64` (the real part of a complex one): for sorting and for tests.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Int(i) => i as f64,
            Value::Float(f) | Value::Complex(f, _) => f,
            Value::Bits(b) => b as f64,
        }
    }

    /// Whether `self` is greater than `other` by `torch.max`'s rule: NaN above everything.
    pub(crate) fn greater_than(self, other: Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a > b,
            _ => {
                let (a, b) = (self.as_f64(), other.as_f64());
                if a.is_nan() { !b.is_nan() } else { a > b }
            }
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&float(x)),
            Value::Complex(re, im) => f.write_str(&complex(re, im)),
            Value::Bits(b) => write!(f, "{b:#x}"),
        }
    }
}

/// Python's `repr(float)`: the shortest digits that read back to `x`, in fixed notation for
/// decimal exponents from -4 to 16 (always with a fractional part) and in `d.ddde±XX` otherwise.
pub fn float(x: f64) -> String {
    float_with(x, true)
}

/// `repr` of one part of a complex number: as [`float`], without a `.0` for whole numbers.
fn float_with(x: f64, add_dot_zero: bool) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        let zero = if add_dot_zero { "0.0" } else { "0" };
        return if x.is_sign_negative() {
            format!("-{zero}")
        } else {
            zero.into()
        };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Python's repr does, but may
    // break a tie between two such strings the other way: the same number of digits, rounded
    // correctly (half to even, as Python's repr does), settles it.
    let shortest = format!("{:e}", x.abs());
    let digits = shortest
        .split_once('e')
        .map_or(1, |(m, _)| m.replace('.', "").len());
    let scientific = format!("{:.*e}", digits - 1, x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Python's `decpt`: the value is 0.DIGITS × 10^decpt.
    let point = exponent + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if !(-4 < point && point <= 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            if add_dot_zero {
                out.push_str(".0");
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Python's `repr(complex(re, im))`: `1j`, `(1+2j)`, `(-0-1j)`, `(nan+infj)`.
pub fn complex(re: f64, im: f64) -> String {
    let imag = float_with(im, false);
    if re == 0.0 && re.is_sign_positive() {
        return format!("{imag}j");
    }
    let sign = if im.is_sign_negative() && !im.is_nan() {
        ""
    } else {
        "+"
    };
    format!("({}{sign}{imag}j)", float_with(re, false))
}

/// Python's `repr` of a tuple of ints: `()`, `(3,)`, `(1, 2)`.
pub fn index(index: &[usize]) -> String {
    match index {
        [] => "()".into(),
        [only] => format!("({only},)"),
        _ => {
            let parts: Vec<String> = index.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Python's `f"{part / whole:.1%}"`.
pub fn percent(part: usize, whole: usize) -> String {
    let share = part as f64 / whole as f64;
    format!("{:.1}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        let cases: [(f64, &str); 17] = [
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (1.3e-6, "1.3e-06"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (100.0, "100.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (f64::from(1.3f32), "1.2999999523162842"),
            // A tie between two 17-digit strings: Python rounds half to even.
            (
                f64::from(ferry_core::half::f16::from_bits(0x15f1)),
                "0.0014505386352539062",
            ),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(float(x), want, "{x:?}");
        }
    }

    #[test]
    fn complex_and_tuples_read_as_python_writes_them() {
        assert_eq!(complex(1.0, 2.0), "(1+2j)");
        assert_eq!(complex(0.0, 1.0), "1j");
        assert_eq!(complex(-0.0, -1.0), "(-0-1j)");
        assert_eq!(complex(1.5, f64::NAN), "(1.5+nanj)");
        assert_eq!(complex(f64::INFINITY, -0.0), "(inf-0j)");
        assert_eq!(index(&[]), "()");
        assert_eq!(index(&[3]), "(3,)");
        assert_eq!(index(&[1, 2]), "(1, 2)");
        assert_eq!(percent(3, 100), "3.0%");
        assert_eq!(percent(1, 3), "33.3%");
    }
}
