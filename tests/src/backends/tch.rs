//! The tch side of the suite: libtorch's own ops and `copy_data_u8` read-back.

use ferry::{HostArray, Result, Tch};
use tch::Tensor;

use super::{Capabilities, FloatOps, SuiteBackend};

impl SuiteBackend for Tch {
    const CAPS: Capabilities = Capabilities {
        negative_strides: false,
        fixed_rank: None,
    };

    fn transpose(t: &Tensor) -> Tensor {
        t.transpose(-2, -1)
    }

    fn narrow(t: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
        t.narrow(axis as i64, start as i64, len as i64)
    }

    fn broadcast_leading(t: &Tensor, n: usize) -> Tensor {
        let mut size = t.size();
        size[0] = n as i64;
        t.expand(size, false)
    }

    fn flip(t: &Tensor, axis: usize) -> Tensor {
        t.flip([axis as i64]) // libtorch has no negative strides: its flip copies
    }

    fn read_back(t: &Tensor) -> Result<HostArray> {
        let c = t.contiguous();
        let numel = c.numel();
        let dtype =
            ferry::tch_adapter::ferry_dtype(ferry::tch_adapter::scalar_type(&c)).expect("typed");
        let mut bytes = vec![0u8; numel * dtype.size_in_bytes().unwrap()];
        c.f_copy_data_u8(&mut bytes, numel).unwrap();
        HostArray::from_bytes(
            t.size().iter().map(|&d| d as usize).collect(),
            dtype,
            &bytes,
        )
    }
}

impl FloatOps for Tch {
    fn sum_axis(t: &Tensor, axis: usize) -> HostArray {
        ferry::to_host(&t.sum_dim_intlist([axis as i64].as_slice(), false, tch::Kind::Float))
            .unwrap()
    }

    fn matmul(a: &Tensor, b: &Tensor) -> HostArray {
        ferry::to_host(&a.matmul(b)).unwrap()
    }
}
