//! The three burn tensor kinds (`Float`, `Int`, `Bool`) as one sealed trait: which dtypes each
//! holds and how to wrap a CPU-backend primitive as that kind.

#![allow(deprecated)]

use burn::backend::flex::FlexTensor;
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::{BackendTensor, Flex, NdArray};
use burn::tensor::{Bool, Float, Int};
use ferry_core::DType;

mod sealed {
    pub trait Sealed {}
    impl Sealed for burn::tensor::Float {}
    impl Sealed for burn::tensor::Int {}
    impl Sealed for burn::tensor::Bool {}
}

/// A burn tensor kind ferry can read and create.
pub trait BurnKind: burn::tensor::kind::Transaction + sealed::Sealed + 'static {
    /// The ferry dtypes this kind holds.
    const DTYPES: &'static [DType];
    /// What to do when a dtype does not fit this kind.
    const HINT: &'static str;

    /// Whether this kind holds `dtype`.
    fn accepts(dtype: DType) -> bool {
        Self::DTYPES.contains(&dtype)
    }

    /// Wraps a Flex primitive as this kind.
    fn wrap_flex(primitive: FlexTensor) -> BackendTensor<Flex>;

    /// Wraps an NdArray primitive as this kind.
    fn wrap_ndarray(primitive: NdArrayTensor) -> BackendTensor<NdArray>;
}

/// `impl BurnKind` for a burn kind: its dtypes, its refusal hint and its `BackendTensor`
/// variant.
macro_rules! burn_kind {
    ($kind:ident, $variant:ident, [$($dtype:ident),+], $hint:expr) => {
        impl BurnKind for $kind {
            const DTYPES: &'static [DType] = &[$(DType::$dtype),+];
            const HINT: &'static str = $hint;

            fn wrap_flex(primitive: FlexTensor) -> BackendTensor<Flex> {
                BackendTensor::$variant(primitive)
            }

            fn wrap_ndarray(primitive: NdArrayTensor) -> BackendTensor<NdArray> {
                BackendTensor::$variant(primitive)
            }
        }
    };
}

burn_kind!(
    Float,
    Float,
    [F32, F64, F16, BF16],
    "a Burn Float tensor cannot hold it (Float holds f16, bf16, f32 or f64): use Tensor<D, Int> or Tensor<D, Bool>, or cast"
);
burn_kind!(
    Int,
    Int,
    [I64, I32, I16, I8, U64, U32, U16, U8],
    "a Burn Int tensor cannot hold it (Int holds i8..i64 and u8..u64): use Tensor<D, Float> or Tensor<D, Bool>, or cast"
);
burn_kind!(
    Bool,
    Bool,
    [Bool],
    "a Burn Bool tensor cannot hold it (Bool holds bool): use Tensor<D, Int> or Tensor<D, Float>, or cast"
);
