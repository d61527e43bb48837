//! Explicit dtype conversions (`HostArray::cast`): elementwise, with Rust `as` semantics for
//! numbers (saturating float→int; f16 and bf16 through half's `AsPrimitive`), `!= 0` for →bool,
//! and complex→real refused.

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use num_complex::Complex;
use num_traits::AsPrimitive;

use crate::copy::{CopyPolicy, CopyReason, record_copy, try_alloc_uninit};
use crate::{DType, Element, Error, HostArray, Result, dispatch_dtype};

/// The real element types: each converts to every other with `as` semantics through
/// `num_traits::AsPrimitive` (half's `num-traits` feature for f16 and bf16).
trait Real:
    AsPrimitive<u8>
    + AsPrimitive<u16>
    + AsPrimitive<u32>
    + AsPrimitive<u64>
    + AsPrimitive<i8>
    + AsPrimitive<i16>
    + AsPrimitive<i32>
    + AsPrimitive<i64>
    + AsPrimitive<f16>
    + AsPrimitive<bf16>
    + AsPrimitive<f32>
    + AsPrimitive<f64>
{
}

/// An element type `cast` converts from and to.
trait Castable: Element {
    /// `self` as a `D`.
    fn cast<D: Castable>(self) -> D;
    /// A real value as `Self`.
    fn from_real<S: Real>(value: S) -> Self;
    /// A complex value as `Self`; real targets keep `re` (`cast_array` refuses complex→real
    /// before any element is converted).
    fn from_complex<S: Real>(re: S, _im: S) -> Self {
        Self::from_real(re)
    }
}

macro_rules! real {
    ($($t:ty),*) => {$(
        impl Real for $t {}
        impl Castable for $t {
            fn cast<D: Castable>(self) -> D {
                D::from_real(self)
            }
            fn from_real<S: Real>(value: S) -> Self {
                value.as_()
            }
        }
    )*};
}
real!(u8, u16, u32, u64, i8, i16, i32, i64, f16, bf16, f32, f64);

impl Castable for bool {
    fn cast<D: Castable>(self) -> D {
        D::from_real(u8::from(self))
    }
    fn from_real<S: Real>(value: S) -> Self {
        AsPrimitive::<f64>::as_(value) != 0.0
    }
    fn from_complex<S: Real>(re: S, im: S) -> Self {
        Self::from_real(re) || Self::from_real(im)
    }
}

macro_rules! complex {
    ($($t:ty),*) => {$(
        impl Castable for Complex<$t> {
            fn cast<D: Castable>(self) -> D {
                D::from_complex(self.re, self.im)
            }
            fn from_real<S: Real>(value: S) -> Self {
                Self::new(value.as_(), 0.0)
            }
            fn from_complex<S: Real>(re: S, im: S) -> Self {
                Self::new(re.as_(), im.as_())
            }
        }
    )*};
}
complex!(f32, f64);

fn convert<S: Castable, D: Castable>(src: &HostArray) -> Result<HostArray> {
    let aligned_copy;
    let src = if !src.is_empty() && !(src.as_ptr() as usize).is_multiple_of(align_of::<S>()) {
        aligned_copy = src.to_contiguous(CopyPolicy::Always)?;
        &aligned_copy
    } else {
        src
    };
    let n = src.len();
    let too_big = || Error::OutOfMemory {
        bytes: n.saturating_mul(size_of::<D>()),
        shape: src.shape().to_vec(),
        dtype: D::DTYPE,
    };
    if n.checked_mul(size_of::<D>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(too_big());
    }
    let mut values: Vec<D> = try_alloc_uninit(n).map_err(|_| too_big())?;
    if S::DTYPE == DType::Bool {
        // Bools are read as bytes, each checked in the load that converts it: memory exported
        // writable (to Python) can change between a separate check and the read, and a `bool`
        // other than 0 or 1 must never be formed.
        for (position, &byte) in src.byte_view().iter().enumerate() {
            if byte > 1 {
                return Err(Error::InvalidBool {
                    shape: src.shape().to_vec(),
                    position,
                    value: byte,
                });
            }
            values.push((byte == 1).cast::<D>());
        }
    } else {
        values.extend(src.view::<S>()?.iter().map(|&v| v.cast::<D>()));
    }
    let out = ArrayD::from_shape_vec(IxDyn(src.shape()), values).expect("one value per element");
    let record = record_copy((out.len() * size_of::<D>()) as u64, CopyReason::Cast);
    Ok(HostArray::from_array(out).with_copy(record))
}

pub(crate) fn cast_array(src: &HostArray, to: DType) -> Result<HostArray> {
    let unsupported = |hint| Error::UnsupportedCast {
        from: src.dtype(),
        to,
        hint,
    };
    if !src.dtype().is_typed() || !to.is_typed() {
        return Err(unsupported("raw dtypes have no element values to convert"));
    }
    if src.dtype().is_complex() && !to.is_complex() {
        return Err(unsupported(
            "it would drop the imaginary part; take .re or .norm() of a complex view explicitly",
        ));
    }
    dispatch_dtype!(src.dtype(), S => {
        dispatch_dtype!(to, D => convert::<S, D>(src), raw => unreachable!("checked above"))
    }, raw => unreachable!("checked above"))
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};
    use num_complex::{Complex32, Complex64};

    use super::Castable;

    #[test]
    fn elements_convert_like_as() {
        let big = (1i64 << 60) + (1 << 36) + 1;
        assert_eq!(
            big.cast::<f32>(),
            big as f32,
            "rounded once, not through f64"
        );
        assert_eq!(big.cast::<Complex32>(), Complex32::new(big as f32, 0.0));
        assert_eq!(
            (300f32.cast::<u8>(), (-1.5f64).cast::<u8>()),
            (255, 0),
            "saturating"
        );
        assert_eq!(u64::MAX.cast::<i64>(), -1);
        assert_eq!(53_084_179i32.cast::<bf16>(), bf16::from_f32(53_215_232.0));
        assert_eq!(f16::from_f32(2.5).cast::<i8>(), 2);
        assert!(f64::NAN.cast::<bool>() && !(-0.0f32).cast::<bool>());
        assert!(
            Complex64::new(0.0, 1.0).cast::<bool>() && !Complex32::new(0.0, 0.0).cast::<bool>()
        );
        assert_eq!(
            (true.cast::<f64>(), false.cast::<Complex64>()),
            (1.0, Complex64::new(0.0, 0.0))
        );
        assert_eq!(
            Complex64::new(1.5, -2.0).cast::<Complex32>(),
            Complex32::new(1.5, -2.0)
        );
    }
}
