//! Imports from Python over DLPack: any object that speaks it (NumPy, PyTorch, JAX, CuPy, a
//! bare capsule), asked the way the specification says (`capsule.rs`), with PyTorch's tensors
//! and exports copied at once (`torch.rs`), and `copy=` honoured. ferry's own class is not
//! known here: a `ferry.HostArray` is taken as it is before it gets this far (`class.rs`).

use ferry_core::{CopyPolicy, DlpackTensor, HostArray};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;

use crate::capsule::{request_capsule, request_host_copy, take_capsule};
use crate::error::to_py_err;
use crate::raw;
use crate::torch::{Torch, made_by_pytorch};

/// Imports any object that speaks DLPack (NumPy, PyTorch, JAX, CuPy, ferry itself): asks with
/// `max_version=(1, 3)`, `dl_device=None` and `copy` and falls back step by step when the
/// producer raises `TypeError`; a device array is asked again with `dl_device=(kDLCPU, 0)` for a
/// host copy. A PyTorch tensor goes through [`Torch::import`], which adds what PyTorch's export
/// leaves out.
#[inline]
pub(crate) fn import_dlpack(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
    let tensor = if raw::is_capsule(obj) {
        // A bare capsule (what `__dlpack__` returned, or `torch.utils.dlpack.to_dlpack`).
        take_capsule(obj)?
    } else if let Some(torch) = Torch::of(obj)? {
        return torch.import(obj, copy);
    } else {
        request_host_tensor(obj, copy)?
    };
    if tensor.device().is_host_readable() && made_by_pytorch(&tensor) {
        // A PyTorch export that came some other way (a bare capsule, a wrapper): its memory is
        // copied at once, as a tensor's own import is.
        if copy == Some(false) {
            return Err(PyBufferError::new_err(
                "copy=False, but ferry never shares memory PyTorch exported (PyTorch may free or change it under an importer): pass copy=None",
            ));
        }
        return tensor
            .into_host()
            .and_then(|array| array.snapshot())
            .map_err(to_py_err);
    }
    let copied = tensor.is_copied();
    let array = tensor.into_host().map_err(to_py_err)?;
    finish_copy(array, copied, copy)
}

/// A tensor the CPU can read from `obj.__dlpack__`: asked for as it is first, with
/// `dl_device=None` (what NumPy's `from_dlpack` does; PyTorch's `__dlpack__` costs half a
/// microsecond more when handed a device to check), and, when that tensor lives on a device,
/// released and asked for again with `dl_device=(kDLCPU, 0)`, which makes a DLPack 1.0
/// producer copy it to the host.
/// `copy=True` is passed on only with `dl_device` (a host array is copied by
/// [`finish_copy`], so a device array is not copied on its device first, for nothing).
#[inline]
fn request_host_tensor(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<DlpackTensor> {
    let tensor = take_capsule(&request_capsule(obj, copy.filter(|&c| !c))?)?;
    if tensor.device().is_host_readable() {
        return Ok(tensor);
    }
    request_host_copy(obj, copy, tensor)
}

/// Honours `copy=True` when the producer did not copy already, and refuses a producer's copy
/// that `copy=False` forbade.
#[inline]
fn finish_copy(array: HostArray, copied: bool, copy: Option<bool>) -> PyResult<HostArray> {
    match copy {
        None => Ok(array),
        Some(copy) => copy_as_asked(array, copied, copy),
    }
}

/// [`finish_copy`] when `copy` was given (out of the default import's hot path).
#[cold]
#[inline(never)]
fn copy_as_asked(array: HostArray, copied: bool, copy: bool) -> PyResult<HostArray> {
    if !copy && copied {
        return Err(PyBufferError::new_err(format!(
            "copy=False, but the producer copied the array of shape {:?}, dtype {}",
            array.shape(),
            array.dtype()
        )));
    }
    if copy && !copied {
        return array.to_contiguous(CopyPolicy::Always).map_err(to_py_err);
    }
    Ok(array)
}
