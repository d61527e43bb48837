//! PyTorch tensors that `ferry.from_dlpack` imports: what ferry adds to PyTorch's DLPack export
//! so that the import is sound and correct, and PyTorch's DLPack 1.3 exchange table, used in
//! place of the export's Python function where it gives the same tensor.
//!
//! - **A copy, made at once.** PyTorch's export keeps the source *tensor* alive, not its memory
//!   or its values: after `t.set_(other)` the old storage is freed, a growing `t.resize_(n)` or
//!   `t.share_memory_()` moves the bytes, and `t.fill_(x)` changes them, under any importer
//!   (NumPy's `from_dlpack(t)` then reads freed memory). Nothing PyTorch offers from Python
//!   keeps those bytes for an importer without also changing what the tensor's other aliases
//!   see (a copy-on-write clone moves the bytes away from `t.numpy()` and
//!   `torch.from_dlpack(t)` views at the tensor's next write, and frees them under those views
//!   with the clone), so the import is a copy (`CopyReason::Snapshot`), made while the GIL is
//!   held and before any Python code runs after the export: no Python code can have freed or
//!   changed the memory in between (another thread inside a PyTorch call that released the
//!   GIL, such as `set_`, races the copy as it would race `t.clone()`). `copy=False` is refused with `BufferError`. A device tensor comes
//!   as the host copy PyTorch makes of it, which nothing else holds.
//! - **PyTorch's own export.** A plain tensor (exactly `torch.Tensor`, no `__torch_function__`
//!   or `__torch_dispatch__` mode, no gradient, no conjugate bit — what `Tensor.__dlpack__`
//!   checks) is exported through `torch.Tensor.__dlpack_c_exchange_api__` (PyTorch ≥ 2.10, or
//!   2.9 with tvm-ffi's add-on loaded) or `torch._C._to_dlpack_versioned`, C functions, so no
//!   Python code runs between the export and the copy. Anything else goes through its
//!   `__dlpack__` (PyTorch's own errors, a subclass's or a mode's answer) with `copy=True`, so
//!   PyTorch copies before any Python code can free the memory, and ferry copies again where
//!   the answer may not be PyTorch's.
//! - **Whoever hands it over.** A DLPack tensor that PyTorch made but that reaches ferry some
//!   other way (a bare capsule from `torch.utils.dlpack.to_dlpack(t)`, a wrapper's
//!   `__dlpack__`) is recognised by its deleter, which lives in libtorch, and copied at once
//!   too ([`made_by_pytorch`]).
//! - **Negative bit.** A tensor with its negative bit set (`t.conj().imag`, `torch._neg_view`)
//!   is exported with its values un-negated; ferry refuses it with `BufferError` (PyTorch's
//!   `__dlpack__` refuses the conjugate bit the same way) instead of importing wrong values.

use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use ferry_core::{Device, DlpackTensor, HostArray};
use pyo3::exceptions::{PyAttributeError, PyBufferError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyDict, PyType};

use crate::capsule::{call_method0, request_capsule, request_host_copy, take_capsule};
use crate::error::to_py_err;
use crate::exchange::{DLPackExchangeAPI, DLPackExchangeAPIHeader};
use crate::raw;

/// The name DLPack 1.3 gives the exchange table's capsule.
const TABLE_CAPSULE: &CStr = c"dlpack_exchange_api";

/// What ferry looked up, once, in an imported `torch`.
pub(crate) struct Torch {
    /// `torch.Tensor`.
    tensor: Py<PyType>,
    /// `torch._C._has_torch_function_unary`: whether an operation on a tensor goes to a
    /// `__torch_function__` override first (a subclass's, or an active mode's).
    has_torch_function_unary: Py<PyAny>,
    /// `torch._C._len_torch_dispatch_stack` (how many `__torch_dispatch__` modes are active,
    /// any of which answers for every operator) and `torch._C._to_dlpack_versioned(tensor)`
    /// (the export `Tensor.__dlpack__` makes after its checks, a C function), where this
    /// PyTorch has both; without them every tensor goes through `__dlpack__`.
    c_export: Option<(Py<PyAny>, Py<PyAny>)>,
    /// `len(sys.modules)` when `torch.Tensor` was last seen without an exchange table, else -1.
    /// A type gains the table when a module is imported (tvm-ffi's add-on sets it on PyTorch
    /// 2.9), so a miss is looked up again only once the set of imported modules has changed;
    /// a table that is there is looked up on every import (a cheap hit).
    table_missing_at: AtomicIsize,
}

static TORCH: PyOnceLock<Torch> = PyOnceLock::new();

impl Torch {
    /// `torch`'s handles when `obj` is a PyTorch tensor (an instance of `torch.Tensor`, or of a
    /// subclass); `None` for anything else, or while `torch` is not imported.
    #[inline]
    pub(crate) fn of(obj: &Bound<'_, PyAny>) -> PyResult<Option<&'static Torch>> {
        let py = obj.py();
        let torch = match TORCH.get(py) {
            Some(torch) => torch,
            None => match Self::load(py)? {
                Some(torch) => torch,
                None => return Ok(None),
            },
        };
        // By the MRO: no Python code runs (`torch.Tensor` is held by `torch`).
        let is_tensor = raw::is_instance_by_mro(obj, torch.tensor.bind(py));
        Ok(is_tensor.then_some(torch))
    }

    /// The handles, made on first use once `torch` is in `sys.modules` with its `Tensor`
    /// class; `None` before that (nothing is imported here: an object can only be a tensor once
    /// its user imported `torch`; a tensor met while `torch` is missing from `sys.modules` is
    /// still recognised by its export's deleter, [`made_by_pytorch`]).
    #[inline(never)]
    fn load(py: Python<'_>) -> PyResult<Option<&'static Torch>> {
        let modules = raw::sys_modules(py);
        let Some(torch) = modules.cast::<PyDict>()?.get_item(intern!(py, "torch"))? else {
            return Ok(None);
        };
        // `torch` partly imported (a module of its own importing ferry) has no `Tensor` yet.
        let Ok(tensor) = torch.getattr(intern!(py, "Tensor")) else {
            return Ok(None);
        };
        TORCH
            .get_or_try_init(py, || {
                let c = torch.getattr(intern!(py, "_C"))?;
                let get = |name| c.getattr(name).map(Bound::unbind).ok();
                let c_export = get(intern!(py, "_len_torch_dispatch_stack"))
                    .zip(get(intern!(py, "_to_dlpack_versioned")));
                Ok::<_, PyErr>(Torch {
                    tensor: tensor.cast_into::<PyType>()?.unbind(),
                    has_torch_function_unary: c
                        .getattr(intern!(py, "_has_torch_function_unary"))?
                        .unbind(),
                    c_export,
                    table_missing_at: AtomicIsize::new(-1),
                })
            })
            .map(Some)
    }

    /// Imports PyTorch tensor `obj` (see the module's notes): a copy of a plain tensor's C
    /// export, made at once, else a copy through its `__dlpack__`.
    pub(crate) fn import(&self, obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
        let py = obj.py();
        if call_method0(obj, intern!(py, "is_neg"))?.is_truthy()? {
            return Err(negative_bit(obj));
        }
        if copy == Some(false) {
            return Err(never_shared(obj));
        }
        match self.plain_export(obj)? {
            Some(tensor) => copy_export(obj, tensor),
            None => self.import_through_dunder(obj),
        }
    }

    /// The C export of `obj` where it is a plain tensor: exactly `torch.Tensor`, with no
    /// `__torch_function__` or `__torch_dispatch__` mode active (either could answer for it),
    /// that needs no gradient and has no conjugate bit (which `__dlpack__` refuses, in
    /// PyTorch's words) — PyTorch's exchange table's export, else `_to_dlpack_versioned`'s.
    /// `None` for any other tensor, or where the C export refuses it (a sparse tensor).
    #[inline]
    fn plain_export(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<DlpackTensor>> {
        let py = obj.py();
        let Some((dispatch_modes, to_dlpack_versioned)) = &self.c_export else {
            return Ok(None);
        };
        let plain = obj.get_type().is(self.tensor.bind(py))
            && !self
                .has_torch_function_unary
                .bind(py)
                .call1((obj,))?
                .is_truthy()?
            && dispatch_modes.bind(py).call0()?.extract::<usize>()? == 0
            && !obj.getattr(intern!(py, "requires_grad"))?.is_truthy()?
            && !call_method0(obj, intern!(py, "is_conj"))?.is_truthy()?;
        if !plain {
            return Ok(None);
        }
        if let Some(tensor) = self.export_through_table(obj)? {
            return Ok(Some(tensor));
        }
        match to_dlpack_versioned.bind(py).call1((obj,)) {
            Ok(capsule) => take_capsule(&capsule).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Imports a tensor that is not plain (a subclass, a mode, a gradient, a conjugate bit) or
    /// that PyTorch's C export refused, through its `__dlpack__` (which a subclass or mode may
    /// answer, and which raises PyTorch's own errors), asking for a copy: PyTorch copies before
    /// its `__dlpack__` returns, while the tensor still holds its memory. The answer is copied
    /// again by ferry before any Python code can run, since code other than PyTorch's may have
    /// answered without copying.
    #[cold]
    #[inline(never)]
    fn import_through_dunder(&self, obj: &Bound<'_, PyAny>) -> PyResult<HostArray> {
        let tensor = take_capsule(&request_capsule(obj, Some(true))?)?;
        if !tensor.device().is_host_readable() {
            let host = request_host_copy(obj, Some(true), tensor)?;
            return copy_export(obj, host);
        }
        if tensor.is_copied() {
            return tensor.into_host().map_err(to_py_err);
        }
        tensor
            .into_host()
            .and_then(|array| array.snapshot())
            .map_err(to_py_err)
    }

    /// PyTorch's exchange table's export of `obj`, a plain tensor (see
    /// [`plain_export`](Self::plain_export)): `None` where the table is missing, fails, or puts
    /// the tensor on a device (all of which the caller then handles).
    #[inline]
    fn export_through_table(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<DlpackTensor>> {
        let py = obj.py();
        let Some(capsule) = self.table(py)? else {
            return Ok(None);
        };
        // Checked to be a capsule of that name (a table); the error for another is dropped.
        let Ok(table) = raw::capsule_pointer(capsule.as_any(), TABLE_CAPSULE) else {
            return Ok(None);
        };
        // SAFETY: a `"dlpack_exchange_api"` capsule holds a `DLPackExchangeAPI` table that
        // outlives the process's consumers (DLPack 1.3), and `capsule` is held across its use.
        let Some(export) = (unsafe { version_1_3(table.cast()) })
            .and_then(|api| api.managed_tensor_from_py_object_no_sync)
        else {
            return Ok(None);
        };
        let mut managed = null_mut();
        // SAFETY: the GIL is held; `obj` is a live instance of exactly the type the table was
        // found on (DLPack's condition); the function writes one owned managed tensor to
        // `managed` and returns 0, or returns -1 with a Python exception set.
        let status = unsafe { export(obj.as_ptr().cast(), &mut managed) };
        drop(capsule);
        if status != 0 || managed.is_null() {
            // `__dlpack__`, asked next, says what is wrong in PyTorch's own words.
            PyErr::take(py);
            return Ok(None);
        }
        // SAFETY: the table handed over an owned `DLManagedTensorVersioned` (checked by
        // `from_versioned`, which reads its layout, not its data); `import` copies its memory
        // before any Python code can run (PyTorch's export keeps the tensor, not its memory);
        // PyTorch's deleter may run on any thread.
        let tensor = unsafe { DlpackTensor::from_versioned(managed) }.map_err(to_py_err)?;
        Ok((tensor.device().device_type == Device::CPU_TYPE).then_some(tensor))
    }

    /// The capsule `torch.Tensor.__dlpack_c_exchange_api__`, when there is one.
    #[inline]
    fn table<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyCapsule>>> {
        let modules = raw::module_count(py);
        if self.table_missing_at.load(Ordering::Relaxed) == modules {
            return Ok(None);
        }
        match self
            .tensor
            .bind(py)
            .getattr(intern!(py, "__dlpack_c_exchange_api__"))
        {
            Ok(table) => Ok(table.cast_into::<PyCapsule>().ok()),
            Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
                self.table_missing_at.store(modules, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The table of DLPack major version 1, minor ≥ 3 (the layout ferry knows) in the chain that
/// starts at `header`, following `prev_api` from a newer major version; `None` if there is none.
///
/// # Safety
///
/// `header` points at a live `DLPackExchangeAPIHeader`, each `prev_api` in its chain at another
/// or NULL, and a header of version 1.3 or later 1.x starts a `DLPackExchangeAPI`, all alive for
/// `'a`.
unsafe fn version_1_3<'a>(
    mut header: *const DLPackExchangeAPIHeader,
) -> Option<&'a DLPackExchangeAPI> {
    while !header.is_null() {
        // SAFETY: per the contract, a live header.
        let version = unsafe { &(*header).version };
        if version.major == 1 {
            // SAFETY: per the contract, a 1.x header of minor ≥ 3 starts a whole table.
            return (version.minor >= 3).then(|| unsafe { &*header.cast::<DLPackExchangeAPI>() });
        }
        if version.major < 1 {
            return None;
        }
        // SAFETY: per the contract.
        header = unsafe { (*header).prev_api };
    }
    None
}

/// The import of `tensor`, PyTorch's export of `obj`, made before any Python code has run since
/// (see the module's notes): a copy of host memory, the host copy PyTorch makes of a device
/// tensor as it is.
fn copy_export(obj: &Bound<'_, PyAny>, tensor: DlpackTensor) -> PyResult<HostArray> {
    if !tensor.device().is_host_readable() {
        // The host copy `__dlpack__(dl_device=(kDLCPU, 0))` makes is nobody else's.
        let host = request_host_copy(obj, None, tensor)?;
        return host.into_host().map_err(to_py_err);
    }
    tensor
        .into_host()
        .and_then(|array| array.snapshot())
        .map_err(to_py_err)
}

/// Whether libtorch made `tensor` (its deleter lives in a `libtorch*` library): PyTorch's
/// export keeps a tensor alive but not its memory, so such a tensor is copied on import
/// whichever way it reached ferry. Only the outermost deleter is seen: a producer that re-wraps
/// PyTorch's export in a managed tensor of its own (tvm-ffi) is ARCHITECTURE.md's trust
/// boundary. Looked up with `dladdr` once per deleter, then cached (a deleter is a
/// function of a loaded library, which stays at its address).
pub(crate) fn made_by_pytorch(tensor: &DlpackTensor) -> bool {
    /// Deleters seen, each with its answer in the lowest bit (addresses are aligned).
    static SEEN: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
    let deleter = tensor.deleter_address();
    if deleter == 0 {
        return false;
    }
    for slot in &SEEN {
        let seen = slot.load(Ordering::Relaxed);
        if seen & !1 == deleter {
            return seen & 1 == 1;
        }
    }
    let answer = in_libtorch(deleter);
    if let Some(slot) = SEEN.iter().find(|slot| slot.load(Ordering::Relaxed) == 0) {
        let _ = slot.compare_exchange(
            0,
            deleter | usize::from(answer),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    answer
}

/// Whether the function at `address` (a live tensor's deleter) belongs to a library whose file
/// name starts with `libtorch` (libtorch_cpu, libtorch_cuda, libtorch_python).
fn in_libtorch(address: usize) -> bool {
    raw::in_library_named(address, b"libtorch")
}

/// The name of `obj`'s type, for an error message (empty if even that fails).
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The error for `copy=False`: PyTorch's memory is never shared.
#[cold]
#[inline(never)]
fn never_shared(obj: &Bound<'_, PyAny>) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "copy=False, but ferry never shares a {kind}'s memory: PyTorch may free or change it under an importer (set_, resize_, share_memory_, in-place writes), so an import is a copy; pass copy=None"
    ))
}

/// The error for a tensor with its negative bit set.
#[cold]
#[inline(never)]
fn negative_bit(obj: &Bound<'_, PyAny>) -> PyErr {
    let shape = obj
        .getattr("shape")
        .and_then(|s| s.str().map(|s| s.to_string()))
        .unwrap_or_default();
    PyBufferError::new_err(format!(
        "the tensor of shape {shape} has its negative bit set (a lazy negation, as t.conj().imag makes): DLPack would carry its values un-negated; call t.resolve_neg() first"
    ))
}
