//! Element types: the runtime [`DType`] tag, DLPack dtype descriptors, and the [`Element`] trait
//! that ties a Rust type to its tag for typed access.

use std::fmt;

use half::{bf16, f16};
use num_complex::{Complex32, Complex64};

/// A DLPack data-type descriptor kept as raw integers, so unknown codes are representable and
/// never undefined behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DTypeDesc {
    /// DLPack type code (`kDLInt` = 0, `kDLUInt` = 1, `kDLFloat` = 2, `kDLBfloat` = 4, ...).
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Vector lanes; 1 for scalars.
    pub lanes: u16,
}

impl DTypeDesc {
    /// DLPack `kDLInt`.
    pub const INT: u8 = 0;
    /// DLPack `kDLUInt`.
    pub const UINT: u8 = 1;
    /// DLPack `kDLFloat`.
    pub const FLOAT: u8 = 2;
    /// DLPack `kDLOpaqueHandle`.
    pub const OPAQUE_HANDLE: u8 = 3;
    /// DLPack `kDLBfloat`.
    pub const BFLOAT: u8 = 4;
    /// DLPack `kDLComplex`.
    pub const COMPLEX: u8 = 5;
    /// DLPack `kDLBool`.
    pub const BOOL: u8 = 6;

    /// Total bits of one element (`bits * lanes`).
    #[inline]
    pub fn total_bits(self) -> u32 {
        u32::from(self.bits) * u32::from(self.lanes)
    }
}

impl fmt::Display for DTypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = DType::from_desc(*self);
        if dtype.is_typed() {
            return fmt::Display::fmt(&dtype, f);
        }
        let name = match self.code {
            0 => "int",
            1 => "uint",
            2 => "float",
            3 => "opaque",
            4 => "bfloat",
            5 => "complex",
            6 => "bool",
            7..=14 => "float8",
            15 | 16 => "float6",
            17 => "float4",
            18 => "bcomplex",
            _ => "code",
        };
        write!(f, "{name} (code {}, {} bits", self.code, self.bits)?;
        if self.lanes != 1 {
            write!(f, ", {} lanes", self.lanes)?;
        }
        write!(f, ")")
    }
}

/// A DLPack dtype that ferry has no typed variant for (fp8/fp6/fp4, vector lanes, opaque
/// handles): the payload of [`DType::Raw`]. It can only be made from a descriptor that no named
/// [`DType`] stands for, so `DType::Raw` of `f32`'s descriptor cannot exist and two equal
/// dtypes are always the same variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawDType(DTypeDesc);

impl RawDType {
    /// The raw dtype of `desc`, or `None` when a named [`DType`] stands for it (use
    /// [`DType::from_desc`], which picks the right variant).
    pub fn new(desc: DTypeDesc) -> Option<RawDType> {
        match DType::from_desc(desc) {
            DType::Raw(raw) => Some(raw),
            _ => None,
        }
    }

    /// The DLPack descriptor.
    pub fn desc(self) -> DTypeDesc {
        self.0
    }
}

impl std::ops::Deref for RawDType {
    type Target = DTypeDesc;

    fn deref(&self) -> &DTypeDesc {
        &self.0
    }
}

impl fmt::Display for RawDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The raw (untyped) dtypes frameworks use: fp8, fp6 and fp4, by their DLPack names.
pub mod raw_dtypes {
    use super::{DTypeDesc, RawDType};

    // No named dtype has these descriptors (codes 7..=17, or complex of 32 bits), so they are
    // valid raw dtypes.
    const fn desc(code: u8, bits: u8) -> RawDType {
        RawDType(DTypeDesc {
            code,
            bits,
            lanes: 1,
        })
    }

    /// `kDLComplex` of 32 bits: two f16 (torch's `complex32`, `ComplexHalf`)
    pub const COMPLEX32: RawDType = desc(5, 32);
    /// `kDLFloat8_e3m4`
    pub const FLOAT8_E3M4: RawDType = desc(7, 8);
    /// `kDLFloat8_e4m3`
    pub const FLOAT8_E4M3: RawDType = desc(8, 8);
    /// `kDLFloat8_e4m3b11fnuz`
    pub const FLOAT8_E4M3B11FNUZ: RawDType = desc(9, 8);
    /// `kDLFloat8_e4m3fn` (OCP e4m3, no infinities; candle's and torch's `float8_e4m3fn`)
    pub const FLOAT8_E4M3FN: RawDType = desc(10, 8);
    /// `kDLFloat8_e4m3fnuz`
    pub const FLOAT8_E4M3FNUZ: RawDType = desc(11, 8);
    /// `kDLFloat8_e5m2`
    pub const FLOAT8_E5M2: RawDType = desc(12, 8);
    /// `kDLFloat8_e5m2fnuz`
    pub const FLOAT8_E5M2FNUZ: RawDType = desc(13, 8);
    /// `kDLFloat8_e8m0fnu`
    pub const FLOAT8_E8M0FNU: RawDType = desc(14, 8);
    /// `kDLFloat6_e2m3fn`, packed
    pub const FLOAT6_E2M3FN: RawDType = desc(15, 6);
    /// `kDLFloat6_e3m2fn`, packed
    pub const FLOAT6_E3M2FN: RawDType = desc(16, 6);
    /// `kDLFloat4_e2m1fn`, packed
    pub const FLOAT4_E2M1FN: RawDType = desc(17, 4);
}

/// The element type of a [`HostArray`](crate::HostArray).
///
/// Every variant but [`DType::Raw`] has a Rust type ([`Element`]) and can be viewed typed.
/// `Raw` carries any other DLPack dtype (fp8/fp6/fp4, vector lanes, opaque handles) as bytes
/// with its descriptor: it can be exported, imported and copied, never viewed typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `bool`, one byte per element holding 0 or 1.
    Bool,
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// IEEE half precision ([`half::f16`]).
    F16,
    /// bfloat16 ([`half::bf16`]).
    BF16,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// Two `f32`s ([`num_complex::Complex32`]).
    C64,
    /// Two `f64`s ([`num_complex::Complex64`]).
    C128,
    /// A DLPack dtype with no typed view in ferry, kept with its descriptor (never one a named
    /// variant stands for: see [`RawDType`]).
    Raw(RawDType),
}

impl DType {
    /// Every dtype that has a typed view, in a fixed order (handy for tests).
    pub const TYPED: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::C64,
        DType::C128,
    ];

    /// The DLPack descriptor of this dtype.
    #[inline]
    pub fn desc(self) -> DTypeDesc {
        let (code, bits) = match self {
            DType::Bool => (DTypeDesc::BOOL, 8),
            DType::U8 => (DTypeDesc::UINT, 8),
            DType::U16 => (DTypeDesc::UINT, 16),
            DType::U32 => (DTypeDesc::UINT, 32),
            DType::U64 => (DTypeDesc::UINT, 64),
            DType::I8 => (DTypeDesc::INT, 8),
            DType::I16 => (DTypeDesc::INT, 16),
            DType::I32 => (DTypeDesc::INT, 32),
            DType::I64 => (DTypeDesc::INT, 64),
            DType::F16 => (DTypeDesc::FLOAT, 16),
            DType::BF16 => (DTypeDesc::BFLOAT, 16),
            DType::F32 => (DTypeDesc::FLOAT, 32),
            DType::F64 => (DTypeDesc::FLOAT, 64),
            DType::C64 => (DTypeDesc::COMPLEX, 64),
            DType::C128 => (DTypeDesc::COMPLEX, 128),
            DType::Raw(d) => return d.desc(),
        };
        DTypeDesc {
            code,
            bits,
            lanes: 1,
        }
    }

    /// The dtype a DLPack descriptor names: a typed variant when ferry has one, else `Raw`.
    #[inline]
    pub fn from_desc(desc: DTypeDesc) -> DType {
        if desc.lanes != 1 {
            return DType::Raw(RawDType(desc));
        }
        match (desc.code, desc.bits) {
            (DTypeDesc::BOOL, 8) => DType::Bool,
            (DTypeDesc::UINT, 8) => DType::U8,
            (DTypeDesc::UINT, 16) => DType::U16,
            (DTypeDesc::UINT, 32) => DType::U32,
            (DTypeDesc::UINT, 64) => DType::U64,
            (DTypeDesc::INT, 8) => DType::I8,
            (DTypeDesc::INT, 16) => DType::I16,
            (DTypeDesc::INT, 32) => DType::I32,
            (DTypeDesc::INT, 64) => DType::I64,
            (DTypeDesc::FLOAT, 16) => DType::F16,
            (DTypeDesc::BFLOAT, 16) => DType::BF16,
            (DTypeDesc::FLOAT, 32) => DType::F32,
            (DTypeDesc::FLOAT, 64) => DType::F64,
            (DTypeDesc::COMPLEX, 64) => DType::C64,
            (DTypeDesc::COMPLEX, 128) => DType::C128,
            _ => DType::Raw(RawDType(desc)),
        }
    }

    /// Bytes per element, or `None` for packed sub-byte dtypes (fp4, fp6) whose elements do
    /// not start on byte boundaries.
    #[inline]
    pub fn size_in_bytes(self) -> Option<usize> {
        let bits = self.desc().total_bits();
        (bits > 0 && bits.is_multiple_of(8)).then_some(bits as usize / 8)
    }

    /// Whether this dtype has a Rust element type (everything but [`DType::Raw`]).
    pub fn is_typed(self) -> bool {
        !matches!(self, DType::Raw(_))
    }

    /// Whether this is a complex dtype.
    pub fn is_complex(self) -> bool {
        matches!(self, DType::C64 | DType::C128)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
            DType::Raw(d) => return write!(f, "raw {d}"),
        };
        f.write_str(name)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that a [`HostArray`](crate::HostArray) can be viewed as.
///
/// Sealed: implemented for the element types of [`DType`]'s typed variants only.
///
/// # Safety
///
/// Implementors promise that `DTYPE.size_in_bytes() == Some(size_of::<Self>())` and that every
/// bit pattern of that size is a valid value, except where [`Element::NEEDS_VALIDATION`] is true
/// (then [`Element::is_valid_byte`] says which single bytes are valid).
pub unsafe trait Element:
    Copy + Send + Sync + fmt::Debug + PartialEq + 'static + sealed::Sealed
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Whether some bit patterns are invalid (only `bool`).
    const NEEDS_VALIDATION: bool = false;
    /// For one-byte types that need validation: whether `byte` is a valid value.
    fn is_valid_byte(byte: u8) -> bool {
        let _ = byte;
        true
    }
    /// For one-byte types that need validation: the value of a byte that
    /// [`is_valid_byte`](Element::is_valid_byte) accepted.
    #[doc(hidden)]
    fn from_valid_byte(byte: u8) -> Self {
        let _ = byte;
        unreachable!("only types that need validation are made from bytes")
    }
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        // SAFETY: the sizes match DType::size_in_bytes for $d, and every bit pattern of these
        // plain numeric types is a valid value.
        unsafe impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
    )*};
}

element!(
    u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f16 => F16, bf16 => BF16, f32 => F32, f64 => F64,
    Complex32 => C64, Complex64 => C128,
);

impl sealed::Sealed for bool {}
// SAFETY: bool is one byte, matching DType::Bool; only 0 and 1 are valid, which
// NEEDS_VALIDATION makes every typed access check before a `&bool` is formed.
unsafe impl Element for bool {
    const DTYPE: DType = DType::Bool;
    const NEEDS_VALIDATION: bool = true;
    fn is_valid_byte(byte: u8) -> bool {
        byte <= 1
    }
    fn from_valid_byte(byte: u8) -> bool {
        byte == 1
    }
}

/// Calls `$body` with the type alias `$T` bound to the Rust type of a typed `DType`; evaluates
/// `$raw` for [`DType::Raw`].
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch_dtype {
    ($dtype:expr, $T:ident => $body:expr, raw => $raw:expr) => {
        $crate::__dispatch_typed!($dtype, $T, $body, $raw;
            Bool: bool, U8: u8, U16: u16, U32: u32, U64: u64,
            I8: i8, I16: i16, I32: i32, I64: i64,
            F16: $crate::half::f16, BF16: $crate::half::bf16, F32: f32, F64: f64,
            C64: $crate::num_complex::Complex32, C128: $crate::num_complex::Complex64)
    };
}

/// The `match` behind [`dispatch_dtype!`]: one arm per (variant, Rust type) pair.
#[macro_export]
#[doc(hidden)]
macro_rules! __dispatch_typed {
    ($dtype:expr, $T:ident, $body:expr, $raw:expr; $($variant:ident: $ty:ty),+) => {
        match $dtype {
            $($crate::DType::$variant => {
                type $T = $ty;
                $body
            })+
            $crate::DType::Raw(_) => $raw,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_round_trips_for_every_typed_dtype() {
        for dt in DType::TYPED {
            assert_eq!(DType::from_desc(dt.desc()), dt);
            let size = dispatch_dtype!(dt, T => std::mem::size_of::<T>(), raw => 0);
            assert_eq!(dt.size_in_bytes(), Some(size), "{dt}");
        }
    }

    #[test]
    fn unknown_descriptors_stay_raw() {
        let raw = |desc| RawDType::new(desc).expect("no named dtype");
        let fp8 = DTypeDesc {
            code: 10,
            bits: 8,
            lanes: 1,
        };
        assert_eq!(DType::from_desc(fp8), DType::Raw(raw(fp8)));
        assert_eq!(DType::Raw(raw(fp8)).size_in_bytes(), Some(1));
        let fp4 = DTypeDesc {
            code: 17,
            bits: 4,
            lanes: 1,
        };
        assert_eq!(DType::Raw(raw(fp4)).size_in_bytes(), None);
        let f32x4 = DTypeDesc {
            code: 2,
            bits: 32,
            lanes: 4,
        };
        assert_eq!(DType::from_desc(f32x4), DType::Raw(raw(f32x4)));
        assert_eq!(DType::Raw(raw(f32x4)).size_in_bytes(), Some(16));
        assert_eq!(
            DType::Raw(raw(fp8)).to_string(),
            "raw float8 (code 10, 8 bits)"
        );
    }

    #[test]
    fn named_descriptors_cannot_be_raw() {
        for dt in DType::TYPED {
            assert_eq!(RawDType::new(dt.desc()), None, "{dt}");
        }
        assert_eq!(raw_dtypes::COMPLEX32.desc().total_bits(), 32);
        assert!(RawDType::new(raw_dtypes::COMPLEX32.desc()).is_some());
    }
}
