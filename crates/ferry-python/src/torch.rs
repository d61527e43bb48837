//! PyTorch tensors that `ferry.from_dlpack` imports: what ferry adds to PyTorch's DLPack export
//! so that the import is sound and correct, and PyTorch's DLPack 1.3 exchange table, used in
//! place of the export's Python function where it gives the same tensor.
//!
//! - **Snapshot.** PyTorch's export keeps the source *tensor* alive, not its storage or its
//!   values: after `t.set_(other)` the old storage is freed, a growing `t.resize_(n)` or
//!   `t.share_memory_()` moves the bytes, and `t.fill_(x)` changes them, all under the importer
//!   (NumPy's `from_dlpack(t)` then reads freed memory). A view of memory someone else can
//!   write is a snapshot: ferry's import of a plain tensor holds a copy-on-write clone of the
//!   tensor's storage (`torch._lazy_clone`), read-only. The two share the bytes until the
//!   tensor is written, resized, shared or exported again, when PyTorch first copies them for
//!   the tensor, once; the import keeps the bytes and the values it had. The clone is made
//!   after the export and checked to hold every byte the import reads (another thread may
//!   swap the tensor's storage in between, while PyTorch runs without the GIL).
//! - **Copies.** Where no snapshot can be shared — memory PyTorch did not allocate itself
//!   (`torch.from_numpy`, a DLPack import, shared or pinned memory), a subclass, a
//!   `__torch_function__` or `__torch_dispatch__` mode (which could answer for the tensor), or
//!   `copy=True` — the import is a copy, made by PyTorch's export (`copy=True`) and, where the
//!   export's code is not PyTorch's own, copied again by ferry before any Python code can run.
//!   `copy=False` is refused there with `BufferError`.
//! - **Negative bit.** A tensor with its negative bit set (`t.conj().imag`, `torch._neg_view`)
//!   is exported with its values un-negated; ferry refuses it with `BufferError` (PyTorch's
//!   `__dlpack__` refuses the conjugate bit the same way) instead of importing wrong values.
//! - **Exchange table.** `torch.Tensor.__dlpack_c_exchange_api__` (PyTorch ≥ 2.10, or 2.9 with
//!   tvm-ffi's add-on loaded) exports a tensor through one C call; without it,
//!   `torch._C._to_dlpack_versioned` (what `Tensor.__dlpack__` calls after its checks) does.
//!   Either is used only for a plain tensor (exactly `torch.Tensor`, no mode) that needs no
//!   gradient and has no conjugate bit — the checks `__dlpack__` makes — and only where it puts
//!   the tensor in CPU memory (a device tensor needs `__dlpack__`'s stream handling); anything
//!   else goes through `__dlpack__`, which raises PyTorch's own errors.

use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicIsize, Ordering};

use ferry_core::{CopyPolicy, CopyReason, Device, DlpackTensor, HostArray, record_copy};
use pyo3::exceptions::{PyAttributeError, PyBufferError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCapsule, PyDict, PyType};
use pyo3::{ffi, intern};

use crate::capsule::{call_method0, finish_copy, request_capsule, request_host_copy, take_capsule};
use crate::exchange::{DLPackExchangeAPI, DLPackExchangeAPIHeader};
use crate::gil::PyReference;
use crate::to_py_err;

/// The name DLPack 1.3 gives the exchange table's capsule.
const TABLE_CAPSULE: &CStr = c"dlpack_exchange_api";

/// What ferry looked up, once, in an imported `torch`.
pub(crate) struct Torch {
    /// `torch.Tensor`.
    tensor: Py<PyType>,
    /// `torch._C._has_torch_function_unary`: whether an operation on a tensor goes to a
    /// `__torch_function__` override first (a subclass's, or an active mode's).
    has_torch_function_unary: Py<PyAny>,
    /// What a snapshot needs, where this PyTorch has it all (2.1 and later); without it every
    /// import is a copy.
    snapshots: Option<Snapshots>,
    /// `len(sys.modules)` when `torch.Tensor` was last seen without an exchange table, else -1.
    /// A type gains the table when a module is imported (tvm-ffi's add-on sets it on PyTorch
    /// 2.9), so a miss is looked up again only once the set of imported modules has changed;
    /// a table that is there is looked up on every import (a cheap hit).
    table_missing_at: AtomicIsize,
}

/// The functions of `torch` a snapshot is made with.
struct Snapshots {
    /// `torch._C._len_torch_dispatch_stack`: how many `__torch_dispatch__` modes are active
    /// (any of them answers for every operator, `_lazy_clone` included).
    dispatch_modes: Py<PyAny>,
    /// `torch._lazy_clone`: a tensor over a copy-on-write clone of another's storage.
    lazy_clone: Py<PyAny>,
    /// `torch._C._data_address`: a tensor's storage's first byte, read without materialising a
    /// copy-on-write storage (`data_ptr()` would copy it).
    data_address: Py<PyAny>,
    /// `torch._C._to_dlpack_versioned(tensor, *, dl_device=None, copy=None)`: the export
    /// `Tensor.__dlpack__` makes after its checks, a C function.
    to_dlpack_versioned: Py<PyAny>,
}

static TORCH: PyOnceLock<Torch> = PyOnceLock::new();

/// What [`Torch::snapshot`] made of a plain tensor.
enum Snapshot {
    /// The import: a snapshot, or the host copy PyTorch made of a device tensor.
    Taken(HostArray),
    /// The tensor's memory is not PyTorch's own (`torch.from_numpy`, a DLPack import, shared
    /// or pinned memory), which `_lazy_clone` cannot share copy-on-write.
    NotCopyOnWrite,
    /// PyTorch's C export refused the tensor (a layout DLPack has no words for).
    NotExported,
}

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
                let c = torch.getattr(intern!(py, "_C"))?;
                let get =
                    |module: &Bound<'_, PyAny>, name| module.getattr(name).map(Bound::unbind).ok();
                let snapshots = (|| {
                    Some(Snapshots {
                        dispatch_modes: get(&c, intern!(py, "_len_torch_dispatch_stack"))?,
                        lazy_clone: get(&torch, intern!(py, "_lazy_clone"))?,
                        data_address: get(&c, intern!(py, "_data_address"))?,
                        to_dlpack_versioned: get(&c, intern!(py, "_to_dlpack_versioned"))?,
                    })
                })();
                Ok::<_, PyErr>(Torch {
                    tensor: tensor.cast_into::<PyType>()?.unbind(),
                    has_torch_function_unary: c
                        .getattr(intern!(py, "_has_torch_function_unary"))?
                        .unbind(),
                    snapshots,
                    table_missing_at: AtomicIsize::new(-1),
                })
            })
            .map(Some)
    }

    /// Imports PyTorch tensor `obj` (see the module's notes): a snapshot of a plain tensor,
    /// else a copy.
    pub(crate) fn import(&self, obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
        let py = obj.py();
        if call_method0(obj, intern!(py, "is_neg"))?.is_truthy()? {
            return Err(negative_bit(obj));
        }
        if let Some(snapshots) = self.plain(obj)? {
            if copy == Some(true) {
                return snapshots.copy_plain(obj, CopyReason::Forced);
            }
            match self.snapshot(snapshots, obj, copy)? {
                Snapshot::Taken(array) => return Ok(array),
                Snapshot::NotCopyOnWrite if copy == Some(false) => return Err(no_snapshot(obj)),
                // Memory PyTorch did not allocate: PyTorch's own copy of it.
                Snapshot::NotCopyOnWrite => {
                    return snapshots.copy_plain(obj, CopyReason::Snapshot);
                }
                // Not exported (a sparse tensor): `__dlpack__` says why, in PyTorch's words.
                Snapshot::NotExported => {}
            }
        }
        self.import_copy(obj, copy)
    }

    /// The snapshot functions, where `obj` is a plain tensor: exactly `torch.Tensor`, with no
    /// `__torch_function__` or `__torch_dispatch__` mode active (which could answer for it),
    /// that needs no gradient and has no conjugate bit (which `__dlpack__` refuses, in
    /// PyTorch's words); `None` otherwise.
    #[inline]
    fn plain(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<&Snapshots>> {
        let py = obj.py();
        let Some(snapshots) = &self.snapshots else {
            return Ok(None);
        };
        let plain = obj.get_type().is(self.tensor.bind(py))
            && !self
                .has_torch_function_unary
                .bind(py)
                .call1((obj,))?
                .is_truthy()?
            && snapshots
                .dispatch_modes
                .bind(py)
                .call0()?
                .extract::<usize>()?
                == 0
            && !obj.getattr(intern!(py, "requires_grad"))?.is_truthy()?
            && !call_method0(obj, intern!(py, "is_conj"))?.is_truthy()?;
        Ok(plain.then_some(snapshots))
    }

    /// The snapshot of plain tensor `obj`: its export (the exchange table's, else
    /// `_to_dlpack_versioned`'s), read-only and holding a copy-on-write clone of the storage it
    /// lies in. A device tensor comes as the host copy PyTorch makes of it.
    #[inline]
    fn snapshot(
        &self,
        snapshots: &Snapshots,
        obj: &Bound<'_, PyAny>,
        copy: Option<bool>,
    ) -> PyResult<Snapshot> {
        let py = obj.py();
        let tensor = match self.export_through_table(obj)? {
            Some(tensor) => tensor,
            None => match snapshots.to_dlpack_versioned.bind(py).call1((obj,)) {
                Ok(capsule) => take_capsule(&capsule)?,
                Err(_) => return Ok(Snapshot::NotExported),
            },
        };
        if !tensor.device().is_host_readable() {
            // A device tensor: the host copy PyTorch makes of it is nobody else's.
            let host = request_host_copy(obj, copy, tensor)?;
            let copied = host.is_copied();
            let array = finish_copy(host.into_host().map_err(to_py_err)?, copied, copy)?;
            return Ok(Snapshot::Taken(array));
        }
        // After the export, which reads the tensor's data pointer: a mutable one, which first
        // copies a storage an earlier snapshot still shares (PyTorch treats an export as a
        // write). `_lazy_clone` raises where the storage's memory is not PyTorch's own.
        let clone = match snapshots.lazy_clone.bind(py).call1((obj,)) {
            Ok(clone) => clone,
            Err(e) if e.is_instance_of::<PyRuntimeError>(py) => {
                return Ok(Snapshot::NotCopyOnWrite);
            }
            Err(e) => return Err(e),
        };
        if !clone.get_type().is(self.tensor.bind(py)) {
            return Err(PyBufferError::new_err(format!(
                "torch._lazy_clone returned a {}, not a tensor; ferry cannot hold a snapshot of it",
                type_name(&clone)
            )));
        }
        // Read-only: the bytes are PyTorch's tensor's too until it writes them.
        let array = tensor.into_host().map_err(to_py_err)?.into_read_only();
        // PyTorch releases the GIL inside `_lazy_clone`: another thread may have swapped the
        // tensor's storage since the export. The clone is of the storage the export lies in, or
        // refused.
        snapshots.check_holds(obj, &clone, &array)?;
        Ok(Snapshot::Taken(
            array.with_guard(PyReference::new(clone.unbind())),
        ))
    }

    /// Imports a tensor that is not plain (a subclass, a mode, a gradient, a conjugate bit) or
    /// that the caller asked to copy: through its `__dlpack__` (which a subclass or mode may
    /// answer, and which raises PyTorch's own errors), asking for a copy; the array is then
    /// copied again by ferry before any Python code can run, since code other than PyTorch's
    /// may have answered without copying. `copy=False` is refused: no snapshot can be shared.
    #[cold]
    #[inline(never)]
    fn import_copy(&self, obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
        let tensor = take_capsule(&request_capsule(obj, Some(true))?)?;
        let tensor = if tensor.device().is_host_readable() {
            tensor
        } else {
            request_host_copy(obj, Some(true), tensor)?
        };
        if copy == Some(false) {
            return Err(no_snapshot(obj));
        }
        let copied = tensor.is_copied();
        let array = tensor.into_host().map_err(to_py_err)?;
        if copied {
            return Ok(array);
        }
        array.to_contiguous(CopyPolicy::Always).map_err(to_py_err)
    }

    /// PyTorch's exchange table's export of `obj`, a plain tensor ([`is_plain`](Self::is_plain)):
    /// `None` where the table is missing, fails, or puts the tensor on a device (all of which
    /// the caller then handles).
    #[inline]
    fn export_through_table(&self, obj: &Bound<'_, PyAny>) -> PyResult<Option<DlpackTensor>> {
        let py = obj.py();
        let Some(capsule) = self.table(py)? else {
            return Ok(None);
        };
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
        // `from_versioned`, which reads its layout, not its data); `snapshot` reads none of its
        // memory before it holds a copy-on-write clone checked to hold the export; PyTorch's
        // deleter may run on any thread.
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

impl Snapshots {
    /// A copy of plain tensor `obj` (asked for, or of memory that cannot be shared
    /// copy-on-write): PyTorch's export with `copy=True`, a C function, so the copy is nobody
    /// else's.
    #[cold]
    #[inline(never)]
    fn copy_plain(&self, obj: &Bound<'_, PyAny>, reason: CopyReason) -> PyResult<HostArray> {
        let py = obj.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "copy"), true)?;
        let capsule = self
            .to_dlpack_versioned
            .bind(py)
            .call((obj,), Some(&kwargs))?;
        let array = take_capsule(&capsule)?.into_host().map_err(to_py_err)?;
        // PyTorch never sets IS_COPIED; the memory is the copy its export made, held by the
        // export alone, and the array is its only holder.
        let record = record_copy(array.nbytes() as u64, reason);
        Ok(array.with_copy(record))
    }

    /// That `clone`'s storage holds every byte of `array` (made from the export of `obj`), so
    /// that holding the clone keeps the array's memory: PyTorch released the GIL while it made
    /// the clone, and the tensor's storage may have been swapped in between.
    #[inline]
    fn check_holds(
        &self,
        obj: &Bound<'_, PyAny>,
        clone: &Bound<'_, PyAny>,
        array: &HostArray,
    ) -> PyResult<()> {
        let py = obj.py();
        let (first, len) = array.byte_span();
        if len == 0 {
            return Ok(());
        }
        let start: usize = self.data_address.bind(py).call1((clone,))?.extract()?;
        let storage = call_method0(clone, intern!(py, "untyped_storage"))?;
        let nbytes: usize = call_method0(&storage, intern!(py, "nbytes"))?.extract()?;
        let first = first as usize;
        let inside = first >= start
            && start
                .checked_add(nbytes)
                .zip(first.checked_add(len))
                .is_some_and(|(end, last)| last <= end);
        if inside {
            return Ok(());
        }
        Err(storage_swapped(obj, first, len, start, nbytes))
    }
}

/// The name of `obj`'s type, for an error message (empty if even that fails).
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The error for an export that the snapshot made after it does not hold.
#[cold]
#[inline(never)]
fn storage_swapped(
    obj: &Bound<'_, PyAny>,
    first: usize,
    len: usize,
    start: usize,
    nbytes: usize,
) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "the {kind} exported memory at {first:#x} ({len} bytes), but its storage was replaced before ferry could take a snapshot of it ({nbytes} bytes at {start:#x}): another thread changed the tensor during the import; import it again once nothing else changes it"
    ))
}

/// The error for `copy=False` where no snapshot can be shared.
#[cold]
#[inline(never)]
fn no_snapshot(obj: &Bound<'_, PyAny>) -> PyErr {
    let kind = type_name(obj);
    PyBufferError::new_err(format!(
        "copy=False, but ferry shares a PyTorch tensor's memory only as a copy-on-write snapshot of a plain torch.Tensor whose storage PyTorch allocated, and this {kind} is not one (a subclass, an active __torch_function__ or __torch_dispatch__ mode, or memory from torch.from_numpy, a DLPack import, shared or pinned memory): import a copy (copy=None)"
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
