//! The burn side of the suite: burn's own ops (on the Flex CPU backend) and `into_data`
//! read-back, for each tensor kind.

use burn::tensor::{BoolStore, DType as BurnDType, Float, Tensor};
use ferry::burn_adapter::BurnKind;
use ferry::{Burn, HostArray, Result};

use super::{Capabilities, FloatOps, SuiteBackend};

impl<K: BurnKind> SuiteBackend for Burn<2, K> {
    const CAPS: Capabilities = Capabilities {
        negative_strides: true,
        fixed_rank: Some(2),
    };

    fn transpose(t: &Tensor<2, K>) -> Tensor<2, K> {
        t.clone().transpose()
    }

    fn narrow(t: &Tensor<2, K>, axis: usize, start: usize, len: usize) -> Tensor<2, K> {
        t.clone().narrow(axis, start, len)
    }

    fn broadcast_leading(t: &Tensor<2, K>, n: usize) -> Tensor<2, K> {
        let cols = t.dims()[1];
        t.clone().expand([n, cols])
    }

    fn flip(t: &Tensor<2, K>, axis: usize) -> Tensor<2, K> {
        t.clone().flip([axis as isize])
    }

    fn read_back(t: &Tensor<2, K>) -> Result<HostArray> {
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
