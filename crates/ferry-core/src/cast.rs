//! Explicit dtype conversions (`HostArray::cast`): elementwise, with Rust `as` semantics for
//! numbers (saturating float→int), `!= 0` for →bool, and complex→real refused.

use half::{bf16, f16};
use ndarray::ArrayD;
use num_complex::{Complex32, Complex64};

use crate::copy::{CopyPolicy, CopyReason, record_copy, try_alloc_uninit};
use crate::{DType, Element, Error, HostArray, Result, dispatch_dtype};

/// A value wide enough to carry any typed element exactly (integers) or as `f64` (floats).
#[derive(Clone, Copy)]
enum Wide {
    Int(i128),
    Float(f64),
    Complex(f64, f64),
}

trait Castable: Element {
    fn to_wide(self) -> Wide;
    fn from_wide(w: Wide) -> Self;
}

fn as_f64(w: Wide) -> f64 {
    match w {
        Wide::Int(i) => i as f64,
        Wide::Float(f) | Wide::Complex(f, _) => f,
    }
}

macro_rules! castable_int {
    ($($t:ty),*) => {$(
        impl Castable for $t {
            fn to_wide(self) -> Wide { Wide::Int(self as i128) }
            fn from_wide(w: Wide) -> Self {
                match w {
                    Wide::Int(i) => i as $t,
                    Wide::Float(f) | Wide::Complex(f, _) => f as $t,
                }
            }
        }
    )*};
}
castable_int!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! castable_float {
    ($($t:ty: $from:expr, $to:expr);*) => {$(
        impl Castable for $t {
            fn to_wide(self) -> Wide { Wide::Float($to(self)) }
            fn from_wide(w: Wide) -> Self { $from(as_f64(w)) }
        }
    )*};
}
castable_float!(
    f32: |v: f64| v as f32, |v: f32| f64::from(v);
    f64: |v: f64| v, |v: f64| v;
    f16: f16::from_f64, f16::to_f64;
    bf16: bf16::from_f64, bf16::to_f64
);

impl Castable for bool {
    fn to_wide(self) -> Wide {
        Wide::Int(i128::from(self))
    }
    fn from_wide(w: Wide) -> Self {
        match w {
            Wide::Int(i) => i != 0,
            Wide::Float(f) => f != 0.0,
            Wide::Complex(re, im) => re != 0.0 || im != 0.0,
        }
    }
}

impl Castable for Complex32 {
    fn to_wide(self) -> Wide {
        Wide::Complex(f64::from(self.re), f64::from(self.im))
    }
    fn from_wide(w: Wide) -> Self {
        match w {
            Wide::Complex(re, im) => Complex32::new(re as f32, im as f32),
            other => Complex32::new(as_f64(other) as f32, 0.0),
        }
    }
}

impl Castable for Complex64 {
    fn to_wide(self) -> Wide {
        Wide::Complex(self.re, self.im)
    }
    fn from_wide(w: Wide) -> Self {
        match w {
            Wide::Complex(re, im) => Complex64::new(re, im),
            other => Complex64::new(as_f64(other), 0.0),
        }
    }
}

fn convert<S: Castable, D: Castable>(src: &HostArray) -> Result<HostArray> {
    let aligned_copy;
    let src = if !src.is_empty() && !(src.as_ptr() as usize).is_multiple_of(align_of::<S>()) {
        aligned_copy = src.to_contiguous(CopyPolicy::Always)?;
        &aligned_copy
    } else {
        src
    };
    let view = src.view::<S>()?;
    let n = view.len();
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
    values.extend(view.iter().map(|&v| D::from_wide(v.to_wide())));
    let out = ArrayD::from_shape_vec(view.raw_dim(), values).expect("one value per element");
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
