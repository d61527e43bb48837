//! The generic interface: [`ToHost`] for every enabled framework's tensor type (its methods go
//! through the framework's [`Backend`], where the copy policy is applied once for all), and
//! [`convert`] between frameworks.

use ferry_core::ndarray::ArrayD;
use ferry_core::{Backend, CopyPolicy, DlpackTensor, Element, Error, HostArray, Result};

/// A tensor ferry can carry to the host: a framework tensor whose [`Backend`] is enabled.
pub trait ToHost: Sized {
    /// The framework the tensor belongs to.
    type Backend: Backend<Tensor = Self>;

    /// A host array over the tensor: zero-copy for host memory, one copy of the viewed span
    /// from a device.
    fn to_host(&self) -> Result<HostArray> {
        Self::Backend::to_host(self)
    }

    /// [`to_host`](Self::to_host) with an explicit copy policy (see
    /// [`Backend::to_host_with`]).
    fn to_host_with(&self, policy: CopyPolicy) -> Result<HostArray> {
        Self::Backend::to_host_with(self, policy)
    }

    /// An owned ndarray of the tensor's values (one copy), like `t.numpy().copy()`: for one-line
    /// chains such as `t.to_array::<f32>()?.column(0)`. For a zero-copy view keep the host
    /// array in a variable first: `let host = t.to_host()?; let v = host.view::<f32>()?;`.
    fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        self.to_host()?.into_array::<T>()
    }

    /// Exports the tensor over DLPack (sharing memory, on its device).
    fn to_dlpack(&self) -> Result<DlpackTensor> {
        Self::Backend::to_dlpack(self)
    }
}

/// [`ToHost::to_host`] as a function.
pub fn to_host<T: ToHost>(tensor: &T) -> Result<HostArray> {
    tensor.to_host()
}

/// Moves a tensor from one framework to another over DLPack: no host hop where both sides can
/// share or copy on the device; otherwise one copy, recorded. The source framework is the
/// tensor's own: `ferry::convert::<Burn<3>>(&candle_tensor, &Burn::cpu())` (Burn's rank is part
/// of its tensor type; `Burn` alone is `Burn<2, Float>`).
///
/// The result is the framework's own tensor, which carries no copy log: a copy the conversion
/// made (into candle's storage, say) is counted in the thread's [`copy_totals`](crate::copy_totals):
///
/// ```
/// # #[cfg(all(feature = "candle", feature = "burn"))] {
/// use ferry::Backend;
/// let host = ferry::HostArray::from_vec(vec![2, 3], vec![1f32; 6])?;
/// let burn_tensor = <ferry::Burn>::from_host(&host, &ferry::Burn::cpu())?;
/// let before = ferry::copy_totals();
/// let c = ferry::convert::<ferry::Candle>(&burn_tensor, &candle_core::Device::Cpu)?;
/// let copied = ferry::copy_totals().since(before);
/// assert_eq!((copied.copies, copied.bytes), (1, 24)); // into candle's own storage
/// # }
/// # Ok::<(), ferry::Error>(())
/// ```
///
/// A dtype the target cannot hold is refused with [`Error::UnsupportedDtype`]; the way out is
/// an explicit cast on the host: `Dst::from_host(&t.to_host()?.cast::<f32>()?, &device)`.
pub fn convert<Dst: Backend>(tensor: &impl ToHost, device: &Dst::Device) -> Result<Dst::Tensor> {
    Dst::from_dlpack(tensor.to_dlpack()?, device).map_err(|e| match e {
        Error::UnsupportedDtype {
            backend,
            dtype,
            hint,
        } => Error::UnsupportedDtype {
            backend,
            dtype,
            hint: format!(
                "{hint}; to convert anyway, cast on the host: \
                 Dst::from_host(&tensor.to_host()?.cast::<T>()?, &device)"
            )
            .into(),
        },
        other => other,
    })
}

#[cfg(feature = "candle")]
impl ToHost for candle_core::Tensor {
    type Backend = ferry_candle::Candle;
}

#[cfg(feature = "burn")]
impl<const D: usize, K: ferry_burn::BurnKind> ToHost for burn::tensor::Tensor<D, K> {
    type Backend = ferry_burn::Burn<D, K>;
}

#[cfg(feature = "tch")]
impl ToHost for tch::Tensor {
    type Backend = ferry_tch::Tch;
}
