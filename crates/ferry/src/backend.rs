//! The generic interface: [`ToHost`] for every enabled framework's tensor type, and one marker
//! type per framework ([`Backend`]) for code that creates tensors generically.

use ferry_core::{CopyPolicy, DType, DlpackTensor, HostArray, Result};

/// A tensor ferry can carry to the host.
pub trait ToHost {
    /// A host array over the tensor: zero-copy for host memory, one copy of the viewed span
    /// from a device.
    fn to_host(&self) -> Result<HostArray> {
        self.to_host_with(CopyPolicy::IfNeeded)
    }

    /// [`to_host`](Self::to_host) with an explicit copy policy.
    fn to_host_with(&self, policy: CopyPolicy) -> Result<HostArray>;

    /// Exports the tensor over DLPack (sharing memory, on its device).
    fn to_dlpack(&self) -> Result<DlpackTensor>;
}

/// [`ToHost::to_host`] as a function.
pub fn to_host<T: ToHost + ?Sized>(tensor: &T) -> Result<HostArray> {
    tensor.to_host()
}

/// One framework: its tensor and device types and the ways into it.
pub trait Backend: 'static {
    /// The framework's name, as used in messages.
    const NAME: &'static str;
    /// The framework's tensor type.
    type Tensor: ToHost;
    /// The framework's device handle.
    type Device: Clone + std::fmt::Debug;

    /// The framework's CPU device.
    fn cpu() -> Self::Device;

    /// The dtypes the framework can hold, in ferry's terms.
    fn dtypes() -> &'static [DType];

    /// A tensor on `device` with the array's values (one copy, unless the framework can share
    /// or move the memory).
    fn from_host(array: &HostArray, device: &Self::Device) -> Result<Self::Tensor>;

    /// Like [`from_host`](Self::from_host), moving the buffer in when the framework can.
    fn into_tensor(array: HostArray, device: &Self::Device) -> Result<Self::Tensor> {
        Self::from_host(&array, device)
    }

    /// Imports a DLPack tensor onto `device`.
    fn from_dlpack(tensor: DlpackTensor, device: &Self::Device) -> Result<Self::Tensor>;
}

/// Moves a tensor from one framework to another over DLPack: no host hop where both sides can
/// share or copy on the device; otherwise one copy, recorded.
pub fn convert<Src: Backend, Dst: Backend>(
    tensor: &Src::Tensor,
    device: &Dst::Device,
) -> Result<Dst::Tensor> {
    Dst::from_dlpack(tensor.to_dlpack()?, device)
}

#[cfg(feature = "candle")]
mod candle {
    use super::*;

    /// Marker for the Candle backend (`candle_core::Tensor`, `candle_core::Device`).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Candle;

    impl ToHost for candle_core::Tensor {
        fn to_host_with(&self, policy: CopyPolicy) -> Result<HostArray> {
            ferry_candle::to_host_with(self, policy)
        }

        fn to_dlpack(&self) -> Result<DlpackTensor> {
            ferry_candle::to_dlpack(self)
        }
    }

    impl Backend for Candle {
        const NAME: &'static str = ferry_candle::BACKEND;
        type Tensor = candle_core::Tensor;
        type Device = candle_core::Device;

        fn cpu() -> Self::Device {
            candle_core::Device::Cpu
        }

        fn dtypes() -> &'static [DType] {
            &[
                DType::U8,
                DType::U32,
                DType::I16,
                DType::I32,
                DType::I64,
                DType::BF16,
                DType::F16,
                DType::F32,
                DType::F64,
            ]
        }

        fn from_host(array: &HostArray, device: &Self::Device) -> Result<Self::Tensor> {
            ferry_candle::from_host(array, device)
        }

        fn into_tensor(array: HostArray, device: &Self::Device) -> Result<Self::Tensor> {
            ferry_candle::into_tensor(array, device)
        }

        fn from_dlpack(tensor: DlpackTensor, device: &Self::Device) -> Result<Self::Tensor> {
            ferry_candle::from_dlpack(tensor, device)
        }
    }
}

#[cfg(feature = "candle")]
pub use candle::Candle;

#[cfg(feature = "burn")]
mod burn_backend {
    use std::marker::PhantomData;

    use burn::tensor::{Device, Float, Tensor};
    use ferry_burn::BurnKind;

    use super::*;

    /// Marker for the Burn backend: `Burn<D, K>` stands for `burn::tensor::Tensor<D, K>` (rank
    /// `D`, kind `Float`, `Int` or `Bool`) on a `burn::tensor::Device`. Its CPU device is Flex.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Burn<const D: usize = 2, K = Float>(PhantomData<K>);

    impl<const D: usize, K: BurnKind> ToHost for Tensor<D, K> {
        fn to_host_with(&self, policy: CopyPolicy) -> Result<HostArray> {
            ferry_burn::to_host_with(self, policy)
        }

        fn to_dlpack(&self) -> Result<DlpackTensor> {
            ferry_burn::to_dlpack(self)
        }
    }

    impl<const D: usize, K: BurnKind> Backend for Burn<D, K> {
        const NAME: &'static str = ferry_burn::BACKEND;
        type Tensor = Tensor<D, K>;
        type Device = Device;

        fn cpu() -> Device {
            Device::flex()
        }

        fn dtypes() -> &'static [DType] {
            K::DTYPES
        }

        fn from_host(array: &HostArray, device: &Device) -> Result<Tensor<D, K>> {
            ferry_burn::from_host(array, device)
        }

        fn into_tensor(array: HostArray, device: &Device) -> Result<Tensor<D, K>> {
            ferry_burn::into_tensor(array, device)
        }

        fn from_dlpack(tensor: DlpackTensor, device: &Device) -> Result<Tensor<D, K>> {
            ferry_burn::from_dlpack(tensor, device)
        }
    }
}

#[cfg(feature = "burn")]
pub use burn_backend::Burn;

#[cfg(feature = "tch")]
mod tch_backend {
    use super::*;

    /// Marker for the tch (libtorch) backend (`tch::Tensor`, `tch::Device`).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Tch;

    impl ToHost for tch::Tensor {
        fn to_host_with(&self, policy: CopyPolicy) -> Result<HostArray> {
            ferry_tch::to_host_with(self, policy)
        }

        fn to_dlpack(&self) -> Result<DlpackTensor> {
            ferry_tch::to_dlpack(self)
        }
    }

    impl Backend for Tch {
        const NAME: &'static str = ferry_tch::BACKEND;
        type Tensor = tch::Tensor;
        type Device = tch::Device;

        fn cpu() -> tch::Device {
            tch::Device::Cpu
        }

        fn dtypes() -> &'static [DType] {
            &[
                DType::Bool,
                DType::U8,
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
            ]
        }

        fn from_host(array: &HostArray, device: &tch::Device) -> Result<tch::Tensor> {
            ferry_tch::from_host(array, *device)
        }

        fn from_dlpack(tensor: DlpackTensor, device: &tch::Device) -> Result<tch::Tensor> {
            ferry_tch::from_dlpack(tensor, *device)
        }
    }
}

#[cfg(feature = "tch")]
pub use tch_backend::Tch;
