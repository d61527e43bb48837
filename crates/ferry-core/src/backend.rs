//! [`Backend`]: the one trait every framework adapter implements (on a marker type of its own,
//! such as `ferry_candle::Candle`), and the one place a [`CopyPolicy`] is applied.

use std::fmt::Debug;

use crate::{CopyPolicy, DType, DlpackTensor, HostArray, Result};

/// One framework: its tensor and device types, the ways out of it and the ways into it.
///
/// Adapters implement the two reads — [`view`](Self::view) (zero-copy or a
/// [`NeedsCopy`](crate::Error::NeedsCopy) error) and [`to_host`](Self::to_host) (the view, or
/// one recorded copy when the memory is not host memory) — and [`to_host_with`](Self::to_host_with)
/// applies every [`CopyPolicy`] on top of them, the same way for every framework.
pub trait Backend: 'static {
    /// The framework's name, as used in messages.
    const NAME: &'static str;
    /// The dtypes the framework's tensors can hold, in ferry's terms.
    const DTYPES: &'static [DType];
    /// The framework's tensor type.
    type Tensor;
    /// The framework's device handle.
    type Device: Clone + Debug;

    /// The framework's CPU device.
    fn cpu() -> Self::Device;

    /// A zero-copy host array over the tensor's memory, or [`Error::NeedsCopy`] when there is
    /// none (device memory, or a layout the framework must resolve first).
    ///
    /// [`Error::NeedsCopy`]: crate::Error::NeedsCopy
    fn view(tensor: &Self::Tensor) -> Result<HostArray>;

    /// The [`view`](Self::view) where there is one, else one copy of the viewed span to the
    /// host (recorded in the array's copy log).
    fn to_host(tensor: &Self::Tensor) -> Result<HostArray>;

    /// [`to_host`](Self::to_host) under `policy`: `Never` is [`view`](Self::view); `IfNeeded`
    /// is [`to_host`](Self::to_host); `Always` returns memory ferry owns and may write — the
    /// device copy when one was made, else a fresh row-major copy of the view.
    fn to_host_with(tensor: &Self::Tensor, policy: CopyPolicy) -> Result<HostArray> {
        match policy {
            CopyPolicy::Never => Self::view(tensor),
            CopyPolicy::IfNeeded => Self::to_host(tensor),
            CopyPolicy::Always => {
                let host = Self::to_host(tensor)?;
                if host.copies() > 0 && host.is_writable() {
                    Ok(host)
                } else {
                    host.to_contiguous(CopyPolicy::Always)
                }
            }
        }
    }

    /// Exports the tensor over DLPack (sharing its memory, on its device).
    fn to_dlpack(tensor: &Self::Tensor) -> Result<DlpackTensor>;

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
