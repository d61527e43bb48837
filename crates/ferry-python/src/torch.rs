//! PyTorch tensors that `ferry.from_dlpack` imports: what ferry adds to PyTorch's DLPack export
//! so that the import is sound and correct, and PyTorch's DLPack 1.3 exchange table, used in
//! place of `Tensor.__dlpack__` where it gives the same tensor.
//!
//! - **Storage.** PyTorch's export keeps the source *tensor* alive, not its storage: after
//!   `t.set_(other)` the old storage is freed, and a growing `t.resize_(n)` reallocates it, while
//!   the importer still reads the old address (NumPy's `from_dlpack(t)` then reads freed memory).
//!   ferry's import holds a reference to the storage itself (`t.untyped_storage()`) and makes
//!   that storage non-resizable, as `t.numpy()` does, so neither call can free or move what the
//!   import reads: `set_` changes only the source tensor, growing `resize_` raises. The
//!   storage is taken before the export and checked after it to hold every byte the import
//!   reads, so a swap in between (Python code runs there) is refused, not missed. (One
//!   operation is beyond any reference: `share_memory_()` moves a storage's memory into shared
//!   memory in place and frees the old buffer; README tells users to share before importing.)
//! - **Negative bit.** A tensor with its negative bit set (`t.conj().imag`, `torch._neg_view`)
//!   is exported with its values un-negated; ferry refuses it with `BufferError` (PyTorch's
//!   `__dlpack__` refuses the conjugate bit the same way) instead of importing wrong values.
//! - **Exchange table.** `torch.Tensor.__dlpack_c_exchange_api__` (PyTorch ≥ 2.10, or 2.9 with
//!   tvm-ffi's add-on loaded) exports a tensor through one C call, without the Python
//!   `__dlpack__` (≈ 90% of an import's time). The table skips checks `__dlpack__` makes, so
//!   ferry uses it only for a plain `torch.Tensor` (no subclass, no `__torch_function__` mode)
//!   that needs no gradient and has no conjugate bit, with `copy` not given, and only for a
//!   tensor the table puts in CPU memory (a device tensor needs `__dlpack__`'s stream
//!   handling); anything else, and any failure of the table, goes through `__dlpack__`, which
//!   raises PyTorch's own errors.

use std::ffi::{CStr, c_int};
use std::mem::ManuallyDrop;
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, Ordering};

use ferry_core::{Device, DlpackTensor, HostArray};
use pyo3::exceptions::{PyAttributeError, PyBufferError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyDict, PyType};
use pyo3::{ffi, intern};

use crate::capsule::{
    call_method0, finish_copy, interpreter_symbol, request_capsule, request_host_copy, take_capsule,
};
use crate::exchange::{DLPackExchangeAPI, DLPackExchangeAPIHeader};
use crate::to_py_err;

/// The name DLPack 1.3 gives the exchange table's capsule.
const TABLE_CAPSULE: &CStr = c"dlpack_exchange_api";

/// Python that ferry runs once, when it first meets an imported `torch`.
const HELPERS: &CStr = c"
import torch

def make_non_resizable(storage):
    # PyTorch has no setter for the flag, but Tensor.numpy() clears it on the storage its array
    # views (tensor_to_numpy): view the whole storage as bytes, through NumPy, and drop the view.
    torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage).numpy()
    if storage.resizable():
        raise RuntimeError('the storage is still resizable after Tensor.numpy()')
";

/// What ferry looked up, once, in an imported `torch`.
pub(crate) struct Torch {
    /// `torch.Tensor`.
    tensor: Py<PyType>,
    /// `torch._C._has_torch_function_unary`: whether an operation on a tensor goes to a
    /// `__torch_function__` override first (a subclass's, or an active mode's).
    has_torch_function_unary: Py<PyAny>,
    /// [`HELPERS`]' `make_non_resizable(storage)`.
    make_non_resizable: Py<PyAny>,
    /// `len(sys.modules)` when `torch.Tensor` was last seen without an exchange table, else -1.
    /// A type gains the table when a module is imported (tvm-ffi's add-on sets it on PyTorch
    /// 2.9), so a miss is looked up again only once the set of imported modules has changed;
    /// a table that is there is looked up on every import (a cheap hit).
    table_missing_at: AtomicIsize,
}

/// CPython's `PyGILState_Check` (1 when the calling thread holds the GIL), looked up once at
/// run time: every CPython 3 exports it, but outside the stable ABI, which the abi3 wheel links
/// against. `None` where the interpreter does not export it.
fn gil_state_check() -> Option<unsafe extern "C" fn() -> c_int> {
    // The address as a `usize`: a raw pointer is not `Sync`, and `drop` may run on any thread.
    static CHECK: OnceLock<usize> = OnceLock::new();
    let symbol = *CHECK.get_or_init(|| {
        interpreter_symbol(c"PyGILState_Check").map_or(0, |symbol| symbol as usize)
    });
    // SAFETY: the symbol, where CPython exports it, is `int PyGILState_Check(void)`.
    (symbol != 0)
        .then(|| unsafe { std::mem::transmute::<usize, unsafe extern "C" fn() -> c_int>(symbol) })
}

/// The reference to a PyTorch storage that an imported array holds (see the module's notes).
struct TorchStorage(ManuallyDrop<Py<PyAny>>);

impl Drop for TorchStorage {
    /// Releases the storage at once where this thread holds the GIL (a Python object's
    /// deallocation, a consumer's deleter), so that its memory goes when the last view of it
    /// does; elsewhere pyo3 defers the release until a thread next enters Python through it.
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let storage = unsafe { ManuallyDrop::take(&mut self.0) };
        // SAFETY: PyGILState_Check only reads the interpreter's thread state (a pyo3 module
        // lives in the main interpreter, where the check is enabled).
        if gil_state_check().is_some_and(|check| unsafe { check() } == 1) {
            // SAFETY: this thread holds the GIL; the reference is ours to release.
            unsafe { ffi::Py_DECREF(storage.into_ptr()) };
        } else {
            drop(storage);
        }
    }
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
        // SAFETY: both are live type objects (`obj`'s own type, and `torch.Tensor`, which
        // `torch` holds); `PyType_IsSubtype` only reads their MROs and runs no Python code.
        let is_tensor = unsafe {
            ffi::PyType_IsSubtype(ffi::Py_TYPE(obj.as_ptr()), torch.tensor.as_ptr().cast()) != 0
        };
        Ok(is_tensor.then_some(torch))
    }

    /// The handles, made on first use once `torch` is in `sys.modules` with its `Tensor`
    /// class; `None` before that (nothing is imported here: an object can only be a tensor once
    /// its user imported `torch`).
    #[inline(never)]
    fn load(py: Python<'_>) -> PyResult<Option<&'static Torch>> {
        // SAFETY: the GIL is held; the result is a borrowed reference to the interpreter's
        // `sys.modules` dict, alive as long as the interpreter.
        let modules = unsafe { Borrowed::from_ptr(py, ffi::PyImport_GetModuleDict()) };
        let Some(torch) = modules.cast::<PyDict>()?.get_item(intern!(py, "torch"))? else {
            return Ok(None);
        };
        // `torch` partly imported (a module of its own importing ferry) has no `Tensor` yet.
        let Ok(tensor) = torch.getattr(intern!(py, "Tensor")) else {
            return Ok(None);
        };
        TORCH
            .get_or_try_init(py, || {
                let helpers = PyModule::from_code(py, HELPERS, c"ferry_torch.py", c"ferry._torch")?;
                Ok::<_, PyErr>(Torch {
                    tensor: tensor.cast_into::<PyType>()?.unbind(),
                    has_torch_function_unary: torch
                        .getattr(intern!(py, "_C"))?
                        .getattr(intern!(py, "_has_torch_function_unary"))?
                        .unbind(),
                    make_non_resizable: helpers
                        .getattr(intern!(py, "make_non_resizable"))?
                        .unbind(),
                    table_missing_at: AtomicIsize::new(-1),
                })
            })
            .map(Some)
    }

    /// Imports PyTorch tensor `obj` (see the module's notes): through the exchange table where
    /// it gives what `__dlpack__` would, else through `__dlpack__`. The tensor's storage is
    /// taken before the export, so nothing run in between (`__dlpack__` is Python code; another
    /// thread may run inside it) can free it; after the export it is made non-resizable and
    /// checked to hold every byte the array reads, so the array is never read outside what it
    /// holds.
    pub(crate) fn import(&self, obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
        let py = obj.py();
        if call_method0(obj, intern!(py, "is_neg"))?.is_truthy()? {
            return Err(negative_bit(obj));
        }
        let plain = obj.get_type().is(self.tensor.bind(py))
            && !self
                .has_torch_function_unary
                .bind(py)
                .call1((obj,))?
                .is_truthy()?;
        // A tensor without storage (sparse) has its export refused below, in PyTorch's words.
        let storage = call_method0(obj, intern!(py, "untyped_storage")).ok();
        let exchanged = if plain && copy.is_none() {
            self.export_through_table(obj)?
        } else {
            None
        };
        let tensor = match exchanged {
            Some(tensor) => tensor,
            None => take_capsule(&request_capsule(obj, copy.filter(|&c| !c))?)?,
        };
        if !tensor.device().is_host_readable() {
            // A device tensor: the host copy PyTorch makes of it is nobody else's.
            let host = request_host_copy(obj, copy, tensor)?;
            let copied = host.is_copied();
            return finish_copy(host.into_host().map_err(to_py_err)?, copied, copy);
        }
        let copied = tensor.is_copied();
        let array = tensor.into_host().map_err(to_py_err)?;
        if copied {
            // Memory PyTorch copied for this export, not the storage.
            return finish_copy(array, copied, copy);
        }
        let Some(storage) = storage else {
            return Err(no_storage(obj));
        };
        // Non-resizable first (even for a copy, made below: a finaliser run by any allocation
        // could otherwise grow the storage before the copy reads it), so that its memory stays
        // where the check finds it.
        self.make_non_resizable(obj, &storage)?;
        // Python code may have run since `storage` was taken: `__dlpack__` is Python, another
        // thread may run inside it, a collection (any allocation, `untyped_storage()`'s own
        // included) may run a finaliser, and a subclass or mode may answer `untyped_storage()`.
        // Any of them could have swapped the tensor's storage, so the export is checked to lie
        // in the one held.
        check_storage_holds(obj, &storage, &array)?;
        if copy == Some(true) {
            // ferry's copy, made now, from the held storage.
            return finish_copy(array, copied, copy);
        }
        finish_copy(
            array.with_guard(TorchStorage(ManuallyDrop::new(storage.unbind()))),
            copied,
            copy,
        )
    }

    /// Makes `storage`, which `obj` views, non-resizable where it is not already.
    fn make_non_resizable(
        &self,
        obj: &Bound<'_, PyAny>,
        storage: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = obj.py();
        let resizable = |storage| call_method0(storage, intern!(py, "resizable"))?.is_truthy();
        if resizable(storage)? {
            // `t.numpy()` clears the flag on its way (PyTorch's `tensor_to_numpy`), and is the
            // cheapest way to: its array is dropped at once. A dtype NumPy lacks (bf16, fp8)
            // goes through the helper, which views the storage as bytes; so does a storage
            // `t` no longer views.
            let through_numpy = call_method0(obj, intern!(py, "numpy")).is_ok();
            if !through_numpy || resizable(storage)? {
                self.make_non_resizable
                    .bind(py)
                    .call1((storage,))
                    .map_err(|e| not_made_non_resizable(obj, &e))?;
            }
        }
        Ok(())
    }

    /// PyTorch's exchange table's export of `obj`, a plain tensor: `None` where the table is
    /// missing, would skip a check `__dlpack__` makes (gradient, conjugate bit), fails, or puts
    /// the tensor on a device (all of which `__dlpack__` then handles).
    #[inline]
    fn export_through_table(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<DlpackTensor>> {
        let py = obj.py();
        let Some(capsule) = self.table(py)? else {
            return Ok(None);
        };
        if obj.getattr(intern!(py, "requires_grad"))?.is_truthy()?
            || call_method0(obj, intern!(py, "is_conj"))?.is_truthy()?
        {
            return Ok(None);
        }
        // SAFETY: a live capsule; GetPointer checks its name and returns NULL (with an
        // exception set) for another.
        let table = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), TABLE_CAPSULE.as_ptr()) };
        if table.is_null() {
            PyErr::take(py);
            return Ok(None);
        }
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
        // `from_versioned`, which reads its layout, not its data); `import` reads none of its
        // memory before it has made the storage it holds non-resizable and checked that the
        // export lies in it; PyTorch's deleter may run on any thread.
        let tensor = unsafe { DlpackTensor::from_versioned(managed) }.map_err(to_py_err)?;
        Ok((tensor.device().device_type == Device::CPU_TYPE).then_some(tensor))
    }

    /// The capsule `torch.Tensor.__dlpack_c_exchange_api__`, when there is one.
    #[inline]
    fn table<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyCapsule>>> {
        // SAFETY: the GIL is held; `sys.modules` is a live dict.
        let modules = unsafe { ffi::PyDict_Size(ffi::PyImport_GetModuleDict()) };
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

/// That `storage` holds every byte of `array`, so that holding it keeps `array`'s memory: the
/// storage was taken before the export, and `untyped_storage()` of a subclass or under a
/// `__torch_function__` mode is answered by Python code.
#[inline]
fn check_storage_holds(
    obj: &Bound<'_, PyAny>,
    storage: &Bound<'_, PyAny>,
    array: &HostArray,
) -> PyResult<()> {
    let py = obj.py();
    let (first, len) = array.byte_span();
    if len == 0 {
        return Ok(());
    }
    let start: usize = call_method0(storage, intern!(py, "data_ptr"))?.extract()?;
    let nbytes: usize = call_method0(storage, intern!(py, "nbytes"))?.extract()?;
    let first = first as usize;
    let inside = first >= start
        && start
            .checked_add(nbytes)
            .zip(first.checked_add(len))
            .is_some_and(|(end, last)| last <= end);
    if inside {
        return Ok(());
    }
    Err(outside_storage(obj, first, len, start, nbytes))
}

/// The name of `obj`'s type, for an error message (empty if even that fails).
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The error for an export outside the storage ferry holds.
#[cold]
#[inline(never)]
fn outside_storage(
    obj: &Bound<'_, PyAny>,
    first: usize,
    len: usize,
    start: usize,
    nbytes: usize,
) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "the {kind} exported memory at {first:#x} ({len} bytes) that its untyped_storage() ({nbytes} bytes at {start:#x}) does not hold, so ferry cannot keep it alive; import a copy of it as a plain tensor instead: ferry.from_dlpack(t.as_subclass(torch.Tensor).clone())"
    ))
}

/// The error for a tensor exported from memory that `untyped_storage()` does not give.
#[cold]
#[inline(never)]
fn no_storage(obj: &Bound<'_, PyAny>) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "the {kind} has no untyped_storage() that ferry can hold to keep its memory alive; import a copy of it as a plain tensor instead: ferry.from_dlpack(t.as_subclass(torch.Tensor).clone())"
    ))
}

/// The error for a tensor whose storage ferry could not make non-resizable (`error` says why).
#[cold]
#[inline(never)]
fn not_made_non_resizable(obj: &Bound<'_, PyAny>, error: &PyErr) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "ferry could not make the storage of the {kind} non-resizable ({error}), so t.resize_() could free it under the import; PyTorch clears that flag only through Tensor.numpy(), so NumPy must be importable"
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
