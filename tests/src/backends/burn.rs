//! The burn side of the suite: burn's own ops (on the Flex CPU backend) and `into_data`
//! read-back, for each tensor kind.

use burn::tensor::{BoolStore, DType as BurnDType, Float, Tensor};
use ferry::burn_adapter::BurnKind;
use ferry::{Burn, HostArray, Result};

use super::{Capabilities, FloatOps, SuiteBackend};

impl<const D: usize, K: BurnKind> SuiteBackend for Burn<D, K> {
    const CAPS: Capabilities = Capabilities {
        negative_strides: true,
        fixed_rank: Some(D),
    };

    fn transpose(t: &Tensor<D, K>) -> Tensor<D, K> {
        t.clone().transpose()
    }

    fn narrow(t: &Tensor<D, K>, axis: usize, start: usize, len: usize) -> Tensor<D, K> {
        t.clone().narrow(axis, start, len)
    }

    fn broadcast_leading(t: &Tensor<D, K>, n: usize) -> Tensor<D, K> {
        let mut dims = t.dims();
        dims[0] = n;
        t.clone().expand(dims)
    }

    fn flip(t: &Tensor<D, K>, axis: usize) -> Tensor<D, K> {
        t.clone().flip([axis as isize])
    }

    fn read_back(t: &Tensor<D, K>) -> Result<HostArray> {
        let data = t.clone().into_data();
        let shape = data.shape().to_vec();
        let dtype = data.dtype();
        let bytes = data.into_bytes();
        let dtype = match dtype {
            BurnDType::Bool(BoolStore::U32) => {
                panic!("u32 bools are not produced by the Flex backend")
            }
            other => ferry::burn_adapter::ferry_dtype(other).expect("not quantized"),
        };
        HostArray::from_bytes(shape, dtype, &bytes)
    }
}

impl FloatOps for Burn<2, Float> {
    fn sum_axis(t: &Tensor<2, Float>, axis: usize) -> HostArray {
        ferry::to_host(&t.clone().sum_dim(axis)).unwrap()
    }

    fn matmul(a: &Tensor<2, Float>, b: &Tensor<2, Float>) -> HostArray {
        ferry::to_host(&a.clone().matmul(b.clone())).unwrap()
    }
}
