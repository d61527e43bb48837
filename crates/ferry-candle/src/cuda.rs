//! CUDA paths of the candle adapter: placeholders that return typed errors when the crate is
//! built without `cuda`, so the public API is the same either way.
#![cfg_attr(feature = "cuda", allow(unused))]

use candle_core::{CudaStorage, Device as CandleDevice, Layout, Tensor};
use ferry_core::{DType, DlpackTensor, Error, HostArray, Result};

const NOT_COMPILED: Error = Error::NotCompiled {
    capability: "candle CUDA tensors",
    hint: "build ferry-candle with feature `cuda` (needs nvcc to build, a CUDA machine to run)",
};

pub(crate) fn to_host(
    _storage: &CudaStorage,
    _layout: &Layout,
    _dtype: DType,
) -> Result<HostArray> {
    Err(NOT_COMPILED)
}

pub(crate) fn to_dlpack(
    _tensor: &Tensor,
    _storage: &CudaStorage,
    _layout: &Layout,
    _dtype: DType,
) -> Result<DlpackTensor> {
    Err(NOT_COMPILED)
}

pub(crate) fn from_dlpack(tensor: DlpackTensor, _device: &CandleDevice) -> Result<Tensor> {
    if tensor.device().is_cuda() {
        return Err(NOT_COMPILED);
    }
    Err(Error::NotHostMemory {
        device: tensor.device(),
        shape: tensor.shape().to_vec(),
        dtype: tensor.dtype(),
    })
}
