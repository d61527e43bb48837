//! [`Compared`]: what `compare`, `assert_close!` and golden files take — host arrays, ndarray
//! arrays of any storage, and (with the framework features) candle, Burn and tch tensors — and
//! how each is read without a copy where its memory is on the host.

use ferry_core::half::{bf16, f16};
use ferry_core::ndarray::{ArrayBase, ArrayViewD, Data, Dimension};
use ferry_core::num_complex::Complex;
use ferry_core::{DType, Element, HostArray};

use crate::Result;
use crate::compare::HOST_ARRAY;

/// Values one side of a comparison: read in place where possible.
#[derive(Debug)]
#[non_exhaustive]
pub enum Values<'a> {
    /// A host array (a framework tensor's view or host copy, a file's array).
    Host(HostArray),
    /// A borrowed ndarray view.
    View(AnyView<'a>),
}

/// A typed ndarray view of any dtype ferry compares.
#[derive(Debug)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum AnyView<'a> {
    Bool(ArrayViewD<'a, bool>),
    U8(ArrayViewD<'a, u8>),
    U16(ArrayViewD<'a, u16>),
    U32(ArrayViewD<'a, u32>),
    U64(ArrayViewD<'a, u64>),
    I8(ArrayViewD<'a, i8>),
    I16(ArrayViewD<'a, i16>),
    I32(ArrayViewD<'a, i32>),
    I64(ArrayViewD<'a, i64>),
    F16(ArrayViewD<'a, f16>),
    BF16(ArrayViewD<'a, bf16>),
    F32(ArrayViewD<'a, f32>),
    F64(ArrayViewD<'a, f64>),
    C64(ArrayViewD<'a, Complex<f32>>),
    C128(ArrayViewD<'a, Complex<f64>>),
}

/// An element type with an [`AnyView`] variant (every typed ferry dtype).
pub trait ViewElement: Element + Sized {
    /// The view as an [`AnyView`].
    fn any_view(view: ArrayViewD<'_, Self>) -> AnyView<'_>;

    /// The view in `any`, if it holds this type.
    fn from_any<'a>(any: &AnyView<'a>) -> Option<ArrayViewD<'a, Self>>;
}

macro_rules! view_element {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl ViewElement for $t {
            fn any_view(view: ArrayViewD<'_, Self>) -> AnyView<'_> {
                AnyView::$v(view)
            }

            fn from_any<'a>(any: &AnyView<'a>) -> Option<ArrayViewD<'a, Self>> {
                match any {
                    AnyView::$v(v) => Some(v.clone()),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        })*

        impl AnyView<'_> {
            /// The view's shape.
            pub fn shape(&self) -> &[usize] {
                match self {
                    $(AnyView::$v(v) => v.shape(),)*
                }
            }

            /// The view's dtype.
            pub fn dtype(&self) -> DType {
                match self {
                    $(AnyView::$v(_) => <$t as Element>::DTYPE,)*
                }
            }

            /// A host array of the same values (one row-major copy): for casts.
            pub fn to_host(&self) -> HostArray {
                match self {
                    $(AnyView::$v(v) => HostArray::from_array(v.to_owned()),)*
                }
            }
        }
    };
}

view_element!(
    bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f16 => F16, bf16 => BF16, f32 => F32, f64 => F64,
    Complex<f32> => C64, Complex<f64> => C128,
);

impl Values<'_> {
    /// The shape of the values.
    pub fn shape(&self) -> &[usize] {
        match self {
            Values::Host(h) => h.shape(),
            Values::View(v) => v.shape(),
        }
    }

    /// Their dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Values::Host(h) => h.dtype(),
            Values::View(v) => v.dtype(),
        }
    }
}

/// Anything `compare`, `assert_close!` and [`Golden::check`](crate::Golden::check) take:
/// its values (read in place where they are on the host) and a name for reports.
pub trait Compared {
    /// The values: a view where they are host memory, else one host copy (recorded in the
    /// array's copy log).
    fn values(&self) -> Result<Values<'_>>;

    /// Where they come from, for reports: the framework's name, `"host array"`, `"ndarray"`.
    fn origin(&self) -> String;
}

impl<C: Compared + ?Sized> Compared for &C {
    fn values(&self) -> Result<Values<'_>> {
        (**self).values()
    }

    fn origin(&self) -> String {
        (**self).origin()
    }
}

impl Compared for HostArray {
    fn values(&self) -> Result<Values<'_>> {
        Ok(Values::Host(self.clone()))
    }

    fn origin(&self) -> String {
        HOST_ARRAY.into()
    }
}

impl<S, D> Compared for ArrayBase<S, D>
where
    S: Data,
    S::Elem: ViewElement,
    D: Dimension,
{
    fn values(&self) -> Result<Values<'_>> {
        Ok(Values::View(S::Elem::any_view(self.view().into_dyn())))
    }

    fn origin(&self) -> String {
        "ndarray".into()
    }
}

/// A framework's tensors: through its [`Backend`](ferry_core::Backend)'s `to_host`.
macro_rules! framework {
    ($feature:literal, $backend:ty, [$($generics:tt)*], $tensor:ty) => {
        #[cfg(feature = $feature)]
        impl<$($generics)*> Compared for $tensor {
            fn values(&self) -> Result<Values<'_>> {
                Ok(Values::Host(<$backend as ferry_core::Backend>::to_host(self)?))
            }

            fn origin(&self) -> String {
                <$backend as ferry_core::Backend>::NAME.into()
            }
        }
    };
}

framework!("candle", ferry_candle::Candle, [], candle_core::Tensor);
framework!(
    "burn",
    ferry_burn::Burn<D, K>,
    [const D: usize, K: ferry_burn::BurnKind],
    burn::tensor::Tensor<D, K>
);
framework!("tch", ferry_tch::Tch, [], tch::Tensor);
