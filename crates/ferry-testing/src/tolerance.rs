//! [`Tolerance`]: how close two arrays must be — `torch.testing.assert_close`'s defaults per
//! dtype, or the caller's `rtol`/`atol`, NaN handling and dtype strictness.

use ferry_core::DType;

/// How close `actual` must be to `expected`: elementwise `|a − e| ≤ atol + rtol·|e|`, the rule
/// of `torch.isclose` and `numpy.isclose`.
///
/// [`Tolerance::default()`] takes `rtol` and `atol` from the dtypes
/// ([`Tolerance::defaults_for`], `torch.testing`'s table); [`Tolerance::new`] sets them.
///
/// ```
/// use ferry_testing::Tolerance;
/// let loose = Tolerance::new(1e-3, 1e-4).equal_nan();
/// assert_eq!((loose.rtol(), loose.atol()), (Some(1e-3), Some(1e-4)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    pub(crate) rtol_atol: Option<(f64, f64)>,
    pub(crate) equal_nan: bool,
    pub(crate) any_dtype: bool,
}

impl Tolerance {
    /// Explicit tolerances, for every dtype: `|a − e| ≤ atol + rtol·|e|`. Integers and bools
    /// compare exactly only with `Tolerance::new(0.0, 0.0)` (or the default).
    pub fn new(rtol: f64, atol: f64) -> Tolerance {
        Tolerance {
            rtol_atol: Some((rtol, atol)),
            ..Tolerance::default()
        }
    }

    /// These `rtol` and `atol`, keeping the other settings.
    pub fn with_rtol_atol(mut self, rtol: f64, atol: f64) -> Tolerance {
        self.rtol_atol = Some((rtol, atol));
        self
    }

    /// Exact equality (`rtol = atol = 0`) with NaN equal to NaN: for integers, masks and
    /// indices, and floats that must match bit for bit (`assert_equal!`).
    pub fn exact() -> Tolerance {
        Tolerance::new(0.0, 0.0).equal_nan()
    }

    /// NaN in `actual` matches NaN in `expected` (off by default, as in torch and NumPy).
    pub fn equal_nan(mut self) -> Tolerance {
        self.equal_nan = true;
        self
    }

    /// Arrays of different dtypes compare (torch's `check_dtype=False`): both are promoted to
    /// the type `torch.promote_types` picks (unsigned 16-, 32- and 64-bit integers count as
    /// `i64`, as torch counts them), with the looser default tolerances of the two dtypes.
    pub fn any_dtype(mut self) -> Tolerance {
        self.any_dtype = true;
        self
    }

    /// The relative tolerance set with [`new`](Self::new), or `None` for the dtype's default.
    pub fn rtol(&self) -> Option<f64> {
        self.rtol_atol.map(|(rtol, _)| rtol)
    }

    /// The absolute tolerance set with [`new`](Self::new), or `None` for the dtype's default.
    pub fn atol(&self) -> Option<f64> {
        self.rtol_atol.map(|(_, atol)| atol)
    }

    /// Whether NaN matches NaN.
    pub fn nan_is_equal(&self) -> bool {
        self.equal_nan
    }

    /// Whether arrays of different dtypes compare.
    pub fn allows_any_dtype(&self) -> bool {
        self.any_dtype
    }

    /// `torch.testing`'s default `(rtol, atol)` for a dtype: f16 `(1e-3, 1e-5)`, bf16
    /// `(1.6e-2, 1e-5)`, f32 and complex64 `(1.3e-6, 1e-5)`, f64 and complex128 `(1e-7, 1e-7)`;
    /// integers, bools and raw dtypes `(0, 0)`.
    pub fn defaults_for(dtype: DType) -> (f64, f64) {
        match dtype {
            DType::F16 => (1e-3, 1e-5),
            DType::BF16 => (0.016, 1e-5),
            DType::F32 | DType::C64 => (1.3e-6, 1e-5),
            DType::F64 | DType::C128 => (1e-7, 1e-7),
            _ => (0.0, 0.0),
        }
    }

    /// The `(rtol, atol)` used for a pair of arrays of these dtypes: the explicit ones, or the
    /// looser default of the two (torch's `default_tolerances(actual, expected)`).
    pub fn resolve(&self, actual: DType, expected: DType) -> (f64, f64) {
        self.rtol_atol.unwrap_or_else(|| {
            let (r1, a1) = Tolerance::defaults_for(actual);
            let (r2, a2) = Tolerance::defaults_for(expected);
            (r1.max(r2), a1.max(a2))
        })
    }
}

/// The dtype two arrays compare in with [`Tolerance::any_dtype`]: `torch.promote_types`, with
/// u16/u32/u64 counted as i64 first (as `torch.testing` does). `None` where one is raw.
pub fn promote(a: DType, b: DType) -> Option<DType> {
    use DType::*;
    let widen = |d: DType| match d {
        U16 | U32 | U64 => I64,
        other => other,
    };
    let (a, b) = (widen(a), widen(b));
    if a == b {
        return a.is_typed().then_some(a);
    }
    /// Category (bool < integer < float < complex) and, for ints, (signed, bits).
    fn category(d: DType) -> Option<u8> {
        Some(match d {
            Bool => 0,
            U8 | I8 | I16 | I32 | I64 => 1,
            F16 | BF16 | F32 | F64 => 2,
            C64 | C128 => 3,
            _ => return None,
        })
    }
    let (ca, cb) = (category(a)?, category(b)?);
    if ca != cb {
        let (low, high) = if ca < cb { (a, b) } else { (b, a) };
        return Some(match (low, high) {
            (_, C64) if low == F64 => C128,
            (_, high) => high,
        });
    }
    Some(match ca {
        1 => {
            let bits = |d: DType| match d {
                U8 | I8 => 8,
                I16 => 16,
                I32 => 32,
                _ => 64,
            };
            // u8 with a signed type: the signed type if wider, else the next wider one.
            let (u, s) = match (a, b) {
                (U8, s) | (s, U8) => (true, s),
                _ => (false, a),
            };
            if u {
                match s {
                    I8 => I16,
                    other => other,
                }
            } else if bits(a) >= bits(b) {
                a
            } else {
                b
            }
        }
        2 => match (a, b) {
            (F16, BF16) | (BF16, F16) => F32,
            _ => {
                let rank = |d: DType| match d {
                    F16 | BF16 => 0,
                    F32 => 1,
                    _ => 2,
                };
                if rank(a) >= rank(b) { a } else { b }
            }
        },
        _ => C128,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn promotion_follows_torch() {
        let cases = [
            (Bool, I8, I8),
            (U8, I8, I16),
            (U8, I32, I32),
            (U16, I8, I64),
            (I8, I64, I64),
            (I32, F16, F16),
            (F16, BF16, F32),
            (BF16, F64, F64),
            (F64, C64, C128),
            (F32, C64, C64),
            (C64, C128, C128),
            (Bool, C64, C64),
        ];
        for (a, b, want) in cases {
            assert_eq!(promote(a, b), Some(want), "{a} {b}");
            assert_eq!(promote(b, a), Some(want), "{b} {a}");
        }
    }

    #[test]
    fn defaults_are_the_looser_of_the_two() {
        assert_eq!(Tolerance::default().resolve(F16, F64), (1e-3, 1e-5));
        assert_eq!(Tolerance::default().resolve(I32, F32), (1.3e-6, 1e-5));
        assert_eq!(Tolerance::new(0.1, 0.2).resolve(F16, F16), (0.1, 0.2));
    }
}
