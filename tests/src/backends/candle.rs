//! The candle side of the suite: candle's own ops and `to_vec1` read-back.

use candle_core::{DType as CandleDType, Tensor};
use ferry::{Candle, HostArray, Result};

use super::{Capabilities, FloatOps, SuiteBackend};

fn ok<T>(r: candle_core::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("candle op failed: {e}"))
}

fn read<T: candle_core::WithDType + ferry::Element>(t: &Tensor) -> Result<HostArray> {
    let flat = ok(ok(t.flatten_all()).to_vec1::<T>());
    HostArray::from_vec(t.dims().to_vec(), flat)
}

impl SuiteBackend for Candle {
    const CAPS: Capabilities = Capabilities {
        negative_strides: false,
        fixed_rank: None,
    };

    fn transpose(t: &Tensor) -> Tensor {
        ok(t.t())
    }

    fn narrow(t: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
        ok(t.narrow(axis, start, len))
    }

    fn broadcast_leading(t: &Tensor, n: usize) -> Tensor {
        let mut dims = t.dims().to_vec();
        dims[0] = n;
        ok(t.broadcast_as(dims))
    }

    fn flip(t: &Tensor, axis: usize) -> Tensor {
        // candle has no negative strides and no flip op: its reversed gather copies.
        let n = t.dim(axis).unwrap() as u32;
        let reversed: Vec<u32> = (0..n).rev().collect();
        let index = Tensor::new(reversed.as_slice(), t.device()).unwrap();
        t.index_select(&index, axis).unwrap()
    }

    fn read_back(t: &Tensor) -> Result<HostArray> {
        match t.dtype() {
            CandleDType::U8 => read::<u8>(t),
            CandleDType::U32 => read::<u32>(t),
            CandleDType::I16 => read::<i16>(t),
            CandleDType::I32 => read::<i32>(t),
            CandleDType::I64 => read::<i64>(t),
            CandleDType::BF16 => read::<ferry::half::bf16>(t),
            CandleDType::F16 => read::<ferry::half::f16>(t),
            CandleDType::F32 => read::<f32>(t),
            CandleDType::F64 => read::<f64>(t),
            other => panic!("no typed read-back for candle {other:?}"),
        }
    }
}

impl FloatOps for Candle {
    fn sum_axis(t: &Tensor, axis: usize) -> HostArray {
        ferry::to_host(&ok(t.sum(axis))).unwrap()
    }

    fn matmul(a: &Tensor, b: &Tensor) -> HostArray {
        ferry::to_host(&ok(a.matmul(b))).unwrap()
    }
}
