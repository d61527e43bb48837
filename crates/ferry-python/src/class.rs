//! The Python hand-off (feature `python`): `ferry.HostArray`, a class NumPy, PyTorch, JAX and
//! CuPy import with their `from_dlpack`; `ferry.from_dlpack`, which imports theirs; file
//! functions; and the Rust functions that hand framework tensors to an embedded or calling
//! Python and take them back.
//!
//! ```no_run
//! # fn main() -> pyo3::PyResult<()> {
//! use pyo3::prelude::*;
//!
//! let host = ferry::HostArray::from_vec(vec![2, 3], vec![0f32, 1., 2., 3., 4., 5.]).unwrap();
//! Python::attach(|py| {
//!     let np = py.import("numpy")?;
//!     // The NumPy array shares the host array's memory.
//!     let array = np.call_method1("from_dlpack", (ferry::python::to_python(py, host)?,))?;
//!     assert_eq!(array.call_method0("sum")?.extract::<f32>()?, 15.0);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Framework tensors go the same way with [`tensor_to_python`] and come back with
//! [`tensor_from_python`].
//!
//! Protocol (DLPack's Python specification):
//! - `__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None)` returns a
//!   `"dltensor_versioned"` capsule when `max_version` has major ≥ 1, else a legacy `"dltensor"`
//!   one. Consumers rename it to `"used_…"`; the capsule's destructor frees only a capsule that
//!   was never consumed.
//! - `copy=True` exports a fresh copy (flag IS_COPIED); `copy=False` that cannot be honoured
//!   raises `BufferError` — as does a read-only array asked for through a legacy capsule, which
//!   cannot carry the READ_ONLY flag (with `copy=None` such a consumer gets a writable copy).
//! - Deleters: ferry's own release Rust memory only and never touch Python, so they need no
//!   GIL and are safe while the interpreter finalises. When that memory came from a Python
//!   producer, the producer's deleter runs (NumPy's and PyTorch's take the GIL themselves and do
//!   nothing once the interpreter is finalising).

use std::ffi::{CStr, c_void};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_core::dlpack_rs::ffi::{DLManagedTensor, DLManagedTensorVersioned};
use ferry_core::{
    CopyPolicy, DType, Device, DlpackTensor, Error, HostArray, MemoryKind, RawDlpack, RawParts,
};
use pyo3::exceptions::{PyBufferError, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::{ffi, intern};

use crate::{Backend, ToHost};

const VERSIONED: &CStr = c"dltensor_versioned";
const USED_VERSIONED: &CStr = c"used_dltensor_versioned";
const LEGACY: &CStr = c"dltensor";
const USED_LEGACY: &CStr = c"used_dltensor";

/// The DLPack version ferry asks producers for.
const MAX_VERSION: (u32, u32) = (1, 3);

/// Exports handed to Python whose deleter has not run yet.
static LIVE_EXPORTS: AtomicUsize = AtomicUsize::new(0);

/// How many arrays ferry exported to Python consumers that are still alive (their DLPack
/// deleter has not run). Zero once every consumer dropped what it imported.
pub fn live_exports() -> usize {
    LIVE_EXPORTS.load(Ordering::SeqCst)
}

/// The owner of one export: keeps the array alive and counts itself in [`live_exports`].
struct LiveExport(#[expect(dead_code, reason = "held to keep the memory alive")] HostArray);

impl LiveExport {
    /// The array an export hands out: `array`'s memory, labelled as `memory`, owned by a
    /// counted `LiveExport`. Its copy log is `array`'s only when `copied_now` (this export made
    /// the copy, so the consumer receives the only handle and may be told IS_COPIED).
    ///
    /// The new owner is held by nobody else, so only `copied_now` may leave the memory
    /// `Exclusive`: otherwise `array`'s other clones (the `ferry.HostArray` object, the caller's
    /// own `HostArray`) still reach it, and the export is `Shared` — a ferry re-import of it
    /// must not hand out a mutable view while they read.
    fn wrap(array: HostArray, memory: MemoryKind, copied_now: bool) -> HostArray {
        LIVE_EXPORTS.fetch_add(1, Ordering::SeqCst);
        let access = if copied_now {
            array.access()
        } else {
            array.access().shared()
        };
        let parts = RawParts {
            data: array.as_ptr(),
            dtype: array.dtype(),
            shape: array.shape().to_vec(),
            strides: array.strides().to_vec(),
            memory,
            access,
        };
        let log = if copied_now {
            array.copy_log().to_vec()
        } else {
            Vec::new()
        };
        let owner: ferry_core::Owner = Arc::new(LiveExport(array));
        // SAFETY: the same memory and layout as `array` (its pointer, with the provenance it was
        // built with), which the owner keeps alive. Access is never widened: it stays Exclusive
        // only for a copy made for this export, which `owner` alone reaches (`array` moved into
        // it), else it is Shared or ReadOnly. `memory` is only ever the CPU label for host
        // memory the CPU can address (pinned or managed).
        let wrapped = unsafe { HostArray::from_raw_parts(parts, owner) }
            .expect("the layout of an existing array is valid");
        log.into_iter().fold(wrapped, HostArray::with_copy)
    }
}

impl Drop for LiveExport {
    fn drop(&mut self) {
        LIVE_EXPORTS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A ferry error as the Python exception a NumPy user expects.
pub fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::NeedsCopy { .. } | Error::NotHostMemory { .. } | Error::NotWritable { .. } => {
            PyBufferError::new_err(message)
        }
        Error::DtypeMismatch { .. }
        | Error::UnsupportedDtype { .. }
        | Error::UnsupportedCast { .. }
        | Error::NoTypedView { .. } => PyTypeError::new_err(message),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// A ferry [`HostArray`] as a Python object (`ferry.HostArray`), exported to NumPy, PyTorch and
/// any other consumer through `__dlpack__`.
#[pyclass(name = "HostArray", module = "ferry", frozen)]
#[derive(Debug, Clone)]
pub struct PyHostArray {
    array: HostArray,
}

impl PyHostArray {
    /// Wraps an array.
    pub fn new(array: HostArray) -> PyHostArray {
        PyHostArray { array }
    }

    /// The wrapped array.
    pub fn array(&self) -> &HostArray {
        &self.array
    }

    /// The capsule for `__dlpack__`, after the protocol's checks.
    fn export(
        &self,
        py: Python<'_>,
        stream: Option<&Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let device = self.array.device();
        if let Some(stream) = stream.filter(|s| !s.is_none()) {
            // Not a TypeError: consumers read that as "old producer" and retry without arguments.
            let value: i64 = stream.extract().map_err(|_| {
                PyValueError::new_err(format!(
                    "stream must be None or an integer, got {}",
                    stream
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            })?;
            if value != -1 {
                return Err(PyValueError::new_err(format!(
                    "stream={value} was given for an array in host memory ({device}); host exports take stream=None"
                )));
            }
        }
        let mut memory = self.array.memory();
        if let Some((device_type, device_id)) = dl_device {
            let wanted = Device {
                device_type,
                device_id,
            };
            if wanted != device && wanted != Device::CPU {
                return Err(PyBufferError::new_err(format!(
                    "ferry cannot export an array of shape {:?}, dtype {} from {device} to {wanted}; import it on the host and move it with the consumer's own API",
                    self.array.shape(),
                    self.array.dtype()
                )));
            }
            if wanted == Device::CPU {
                // Pinned and managed memory is host memory: the CPU reads it where it is.
                memory = MemoryKind::Cpu;
            }
        }
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        let legacy_read_only = !versioned && self.array.is_read_only();
        if legacy_read_only && copy == Some(false) {
            return Err(PyBufferError::new_err(format!(
                "array of shape {:?}, dtype {} is read-only and a legacy (unversioned) DLPack capsule cannot say so; ask with max_version=(1, 0) or allow a copy",
                self.array.shape(),
                self.array.dtype()
            )));
        }
        let copy_now = legacy_read_only || copy == Some(true);
        let source = if copy_now {
            let fresh = self
                .array
                .to_contiguous(CopyPolicy::Always)
                .map_err(to_py_err)?;
            memory = fresh.memory();
            fresh
        } else {
            self.array.clone()
        };
        let kept = LiveExport::wrap(source, memory, copy_now);
        let tensor = if versioned {
            kept.into_dlpack()
        } else {
            kept.to_dlpack_legacy()
        };
        new_capsule(py, tensor)
    }
}

/// A capsule holding `tensor` under DLPack's name; the capsule frees it only if no consumer
/// took it.
fn new_capsule(py: Python<'_>, tensor: DlpackTensor) -> PyResult<Py<PyAny>> {
    let (ptr, name) = match tensor.into_raw() {
        RawDlpack::Versioned(p) => (p.cast::<c_void>(), VERSIONED),
        RawDlpack::Legacy(p) => (p.cast::<c_void>(), LEGACY),
    };
    // SAFETY: `ptr` is a live managed tensor this capsule now owns; `name` is a static string;
    // the destructor below honours DLPack's capsule rules.
    let capsule = unsafe { ffi::PyCapsule_New(ptr, name.as_ptr(), Some(capsule_destructor)) };
    if capsule.is_null() {
        // SAFETY: the capsule was not made, so the tensor is still ours to release.
        unsafe { release(ptr, name) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `capsule` is a new, non-null reference we own.
    Ok(unsafe { Bound::from_owned_ptr(py, capsule) }.unbind())
}

/// Calls the deleter of the managed tensor at `ptr`, of the kind `name` says.
///
/// # Safety
///
/// `ptr` is a live managed tensor of that kind whose deleter has not run.
unsafe fn release(ptr: *mut c_void, name: &CStr) {
    // SAFETY: per the contract.
    unsafe {
        if name == VERSIONED {
            let managed = ptr.cast::<DLManagedTensorVersioned>();
            if let Some(deleter) = (*managed).deleter {
                deleter(managed);
            }
        } else {
            let managed = ptr.cast::<DLManagedTensor>();
            if let Some(deleter) = (*managed).deleter {
                deleter(managed);
            }
        }
    }
}

/// Destructor of ferry's capsules: a capsule still named `dltensor[_versioned]` was never
/// consumed, so its tensor is released here; a renamed one belongs to its consumer.
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls this with the GIL held on a live capsule; an error indicator that was
    // set is kept as it was (the destructor may run while an exception propagates).
    unsafe {
        let (mut kind, mut value, mut traceback) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback);
        for name in [VERSIONED, LEGACY] {
            if ffi::PyCapsule_IsValid(capsule, name.as_ptr()) == 1 {
                let ptr = ffi::PyCapsule_GetPointer(capsule, name.as_ptr());
                if !ptr.is_null() {
                    release(ptr, name);
                }
                break;
            }
        }
        ffi::PyErr_Restore(kind, value, traceback);
    }
}

/// Takes the managed tensor out of a DLPack capsule, renaming the capsule to `used_…` so its
/// destructor leaves the tensor alone.
fn take_capsule(capsule: &Bound<'_, PyAny>) -> PyResult<DlpackTensor> {
    let py = capsule.py();
    let ptr = capsule.as_ptr();
    for (name, used) in [(VERSIONED, USED_VERSIONED), (LEGACY, USED_LEGACY)] {
        // SAFETY: `ptr` is a live object (borrowed from `capsule`); IsValid accepts any object.
        if unsafe { ffi::PyCapsule_IsValid(ptr, name.as_ptr()) } != 1 {
            continue;
        }
        // SAFETY: the capsule is valid under `name`.
        let managed = unsafe { ffi::PyCapsule_GetPointer(ptr, name.as_ptr()) };
        if managed.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: renaming a valid capsule to a static name.
        if unsafe { ffi::PyCapsule_SetName(ptr, used.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: the producer handed over a managed tensor of this kind, and the rename made us
        // its only owner; producers' deleters (NumPy's, PyTorch's) may be called from any thread.
        let tensor = unsafe {
            if name == VERSIONED {
                DlpackTensor::from_versioned(managed.cast())
            } else {
                DlpackTensor::from_legacy(managed.cast())
            }
        };
        return tensor.map_err(to_py_err);
    }
    Err(PyTypeError::new_err(format!(
        "__dlpack__ returned {}, not an unused 'dltensor' or 'dltensor_versioned' capsule",
        capsule.get_type().name()?
    )))
}

/// Imports any object that speaks DLPack (NumPy, PyTorch, JAX, CuPy, ferry itself): asks with
/// `max_version=(1, 3)` and falls back to a legacy capsule when the producer raises
/// `TypeError`; device arrays are asked for with `dl_device=(kDLCPU, 0)`.
fn import_dlpack(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
    // SAFETY: `obj` is a live object; the check reads only its type.
    let capsule = if unsafe { ffi::PyCapsule_CheckExact(obj.as_ptr()) } == 1 {
        // A bare capsule (what `__dlpack__` returned, or `torch.utils.dlpack.to_dlpack`).
        obj.clone()
    } else {
        request_capsule(obj, copy)?
    };
    let tensor = take_capsule(&capsule)?;
    let copied = tensor.is_copied();
    let array = tensor.into_host().map_err(to_py_err)?;
    finish_copy(array, copied, copy)
}

/// Calls `obj.__dlpack__` the way DLPack's Python specification asks consumers to.
fn request_capsule<'py>(
    obj: &Bound<'py, PyAny>,
    copy: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if !obj.hasattr(intern!(py, "__dlpack__"))? {
        return Err(PyTypeError::new_err(format!(
            "object of type {} has no __dlpack__ method; ferry imports NumPy arrays, PyTorch tensors, JAX and CuPy arrays (anything with __dlpack__)",
            obj.get_type().name()?
        )));
    }
    let device = if obj.hasattr(intern!(py, "__dlpack_device__"))? {
        let (device_type, device_id): (i32, i32) = obj
            .call_method0(intern!(py, "__dlpack_device__"))?
            .extract()?;
        Device {
            device_type,
            device_id,
        }
    } else {
        Device::CPU
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "max_version"), MAX_VERSION)?;
    if let Some(copy) = copy {
        kwargs.set_item(intern!(py, "copy"), copy)?;
    }
    if !device.is_host_readable() {
        kwargs.set_item(intern!(py, "dl_device"), (Device::CPU_TYPE, 0))?;
    }
    match obj.call_method(intern!(py, "__dlpack__"), (), Some(&kwargs)) {
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            if !device.is_host_readable() {
                return Err(PyBufferError::new_err(format!(
                    "the {} lives on {device} and its producer speaks only legacy DLPack, which cannot copy to the host; move it to the CPU first (for example t.cpu())",
                    obj.get_type().name()?
                )));
            }
            obj.call_method0(intern!(py, "__dlpack__"))
        }
        result => result,
    }
}

/// Honours `copy=True` when the producer did not copy already, and refuses a producer's copy
/// that `copy=False` forbade.
fn finish_copy(array: HostArray, copied: bool, copy: Option<bool>) -> PyResult<HostArray> {
    if copy == Some(false) && copied {
        return Err(PyBufferError::new_err(format!(
            "copy=False, but the producer copied the array of shape {:?}, dtype {}",
            array.shape(),
            array.dtype()
        )));
    }
    if copy == Some(true) && !copied {
        return array.to_contiguous(CopyPolicy::Always).map_err(to_py_err);
    }
    Ok(array)
}

/// NumPy's name for a dtype (`bfloat16` and ferry's names for the raw ones NumPy lacks).
fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::Bool => "bool".into(),
        DType::U8 => "uint8".into(),
        DType::U16 => "uint16".into(),
        DType::U32 => "uint32".into(),
        DType::U64 => "uint64".into(),
        DType::I8 => "int8".into(),
        DType::I16 => "int16".into(),
        DType::I32 => "int32".into(),
        DType::I64 => "int64".into(),
        DType::F16 => "float16".into(),
        DType::BF16 => "bfloat16".into(),
        DType::F32 => "float32".into(),
        DType::F64 => "float64".into(),
        DType::C64 => "complex64".into(),
        DType::C128 => "complex128".into(),
        other => other.to_string(),
    }
}

/// The dtype a NumPy-style name (or ferry's short name) stands for.
fn dtype_named(name: &str) -> PyResult<DType> {
    DType::TYPED
        .into_iter()
        .find(|d| dtype_name(*d) == name || d.to_string() == name)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "unknown dtype {name:?}; use a NumPy name such as 'float32', 'int64', 'bool', 'bfloat16', 'complex64'"
            ))
        })
}

#[pymethods]
impl PyHostArray {
    /// Length of each axis.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.array.shape())
    }

    /// Step of each axis in elements (NumPy's `strides` divided by `itemsize`).
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.array.strides())
    }

    /// The dtype, by NumPy's name.
    #[getter]
    fn dtype(&self) -> String {
        dtype_name(self.array.dtype())
    }

    /// Number of axes.
    #[getter]
    fn ndim(&self) -> usize {
        self.array.ndim()
    }

    /// Number of elements.
    #[getter]
    fn size(&self) -> usize {
        self.array.len()
    }

    /// Bytes the elements take when packed.
    #[getter]
    fn nbytes(&self) -> usize {
        self.array.nbytes()
    }

    /// Whether ferry refuses to write through this array (and exports carry READ_ONLY).
    #[getter]
    fn readonly(&self) -> bool {
        self.array.is_read_only()
    }

    /// Address of element `[0, ..., 0]`, to check that consumers share the memory.
    #[getter]
    fn data_ptr(&self) -> usize {
        self.array.as_ptr() as usize
    }

    /// How many copies ferry made to produce this array (0 for views of foreign memory).
    #[getter]
    fn copies(&self) -> usize {
        self.array.copies()
    }

    fn __len__(&self) -> PyResult<usize> {
        self.array
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d array"))
    }

    fn __repr__(&self) -> String {
        format!(
            "ferry.HostArray(shape={:?}, strides={:?}, dtype={}, device={}{})",
            self.array.shape(),
            self.array.strides(),
            dtype_name(self.array.dtype()),
            self.array.device(),
            if self.array.is_read_only() {
                ", readonly"
            } else {
                ""
            }
        )
    }

    /// DLPack export (the Python array API's `__dlpack__`).
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        self.export(py, stream.as_ref(), max_version, dl_device, copy)
    }

    /// `(device_type, device_id)` of the memory, DLPack's codes (1 = CPU, 3 = CUDA pinned).
    fn __dlpack_device__(&self) -> (i32, i32) {
        let device = self.array.device();
        (device.device_type, device.device_id)
    }

    /// The elements as bytes in row-major order (NumPy's `tobytes()`).
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        // The GIL stays held while reading: the memory may belong to a Python producer whose
        // other threads could write it.
        let standard = self.array.as_standard_layout().map_err(to_py_err)?;
        let bytes = standard
            .as_bytes()
            .ok_or_else(|| PyValueError::new_err("a row-major copy has no byte view"))?;
        Ok(PyBytes::new(py, bytes))
    }

    /// A row-major copy in fresh, writable memory (made while holding the GIL, like
    /// `tobytes`: the memory may belong to a Python producer).
    fn copy(&self) -> PyResult<PyHostArray> {
        self.array
            .to_contiguous(CopyPolicy::Always)
            .map(PyHostArray::new)
            .map_err(to_py_err)
    }

    /// The values converted to another dtype (saturating like NumPy's `astype` for floats to
    /// integers; complex to real is refused).
    fn astype(&self, dtype: &str) -> PyResult<PyHostArray> {
        self.array
            .cast_to(dtype_named(dtype)?)
            .map(PyHostArray::new)
            .map_err(to_py_err)
    }

    /// A NumPy array sharing this memory (`numpy.from_dlpack(self)`).
    fn numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import(intern!(py, "numpy"))?
            .call_method1(intern!(py, "from_dlpack"), (slf,))
    }

    /// A PyTorch tensor sharing this memory (`torch.from_dlpack(self)`), or sharing a
    /// row-major copy when PyTorch cannot hold the array as it is: when it has negative
    /// strides (PyTorch has none, and `torch.from_dlpack` aborts the process on such a DLPack
    /// tensor from any producer, NumPy's too), or when it is read-only (PyTorch has no
    /// read-only tensors and ignores DLPack's READ_ONLY flag).
    fn torch<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let array = &slf.get().array;
        let negative = array
            .shape()
            .iter()
            .zip(array.strides())
            .any(|(&len, &stride)| len > 1 && stride < 0);
        let source = if negative || array.is_read_only() {
            Bound::new(py, slf.get().copy()?)?.into_any()
        } else {
            slf.clone().into_any()
        };
        py.import(intern!(py, "torch"))?
            .call_method1(intern!(py, "from_dlpack"), (source,))
    }
}

/// A `ferry.HostArray` over `array` (no copy).
pub fn to_python(py: Python<'_>, array: HostArray) -> PyResult<Bound<'_, PyHostArray>> {
    Bound::new(py, PyHostArray::new(array))
}

/// The host array behind any object that speaks DLPack (NumPy arrays, PyTorch tensors,
/// `ferry.HostArray`, ...), sharing its memory; the producer's deleter runs once when the last
/// view drops.
pub fn from_python(obj: &Bound<'_, PyAny>) -> PyResult<HostArray> {
    import_any(obj, None)
}

/// A `ferry.HostArray`'s own array (copied when `copy=True`), or a DLPack import of anything
/// else.
fn import_any(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
    match obj.cast::<PyHostArray>() {
        Ok(ours) if copy == Some(true) => ours
            .get()
            .array
            .to_contiguous(CopyPolicy::Always)
            .map_err(to_py_err),
        Ok(ours) => Ok(ours.get().array.clone()),
        Err(_) => import_dlpack(obj, copy),
    }
}

/// Hands a framework tensor to Python as a `ferry.HostArray` (zero-copy for host memory; one
/// copy of the viewed span for GPU memory), ready for `numpy.from_dlpack` or
/// `torch.from_dlpack`.
pub fn tensor_to_python<'py, T: ToHost + ?Sized>(
    py: Python<'py>,
    tensor: &T,
) -> PyResult<Bound<'py, PyHostArray>> {
    to_python(py, tensor.to_host().map_err(to_py_err)?)
}

/// Takes any DLPack object from Python into a tensor of backend `B` on `device` (sharing
/// memory where the framework can wrap it, else one copy into its storage).
pub fn tensor_from_python<B: Backend>(
    obj: &Bound<'_, PyAny>,
    device: &B::Device,
) -> PyResult<B::Tensor> {
    let array = from_python(obj)?;
    B::from_dlpack(array.into_dlpack(), device).map_err(to_py_err)
}

/// Imports an array from any object with `__dlpack__` (NumPy, PyTorch, JAX, CuPy), sharing
/// its memory unless `copy=True`.
#[pyfunction]
#[pyo3(name = "from_dlpack", signature = (x, /, *, copy=None))]
fn py_from_dlpack(x: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<PyHostArray> {
    import_any(x, copy).map(PyHostArray::new)
}

/// Exports handed to Python consumers that are still alive.
#[pyfunction]
#[pyo3(name = "live_exports")]
fn py_live_exports() -> usize {
    live_exports()
}

/// Reads an `.npy` file (memory-mapped and read-only with `mmap=True`, NumPy's
/// `mmap_mode="r"`).
#[cfg(feature = "npy")]
#[pyfunction]
#[pyo3(signature = (path, *, mmap=false))]
fn load_npy(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<PyHostArray> {
    let array = py.detach(|| {
        if mmap {
            // SAFETY: like NumPy's mmap_mode="r", the caller must not change the file while
            // the array lives (documented in the README).
            unsafe { crate::npy::map(&path) }
        } else {
            crate::npy::load(&path)
        }
    });
    array.map(PyHostArray::new).map_err(to_py_err)
}

/// Writes an array (or anything with `__dlpack__`) to an `.npy` file.
#[cfg(feature = "npy")]
#[pyfunction]
fn save_npy(path: PathBuf, array: &Bound<'_, PyAny>) -> PyResult<()> {
    crate::npy::save(&path, &from_python(array)?).map_err(to_py_err)
}

/// Reads every array of an `.npz` archive into a dict.
#[cfg(feature = "npy")]
#[pyfunction]
fn load_npz<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (name, array) in py
        .detach(|| crate::npy::load_npz(&path))
        .map_err(to_py_err)?
    {
        out.set_item(name, PyHostArray::new(array))?;
    }
    Ok(out)
}

/// Writes a dict of arrays to an `.npz` archive (`np.savez`, or `np.savez_compressed` with
/// `compressed=True`).
#[cfg(feature = "npy")]
#[pyfunction]
#[pyo3(signature = (path, arrays, *, compressed=false))]
fn save_npz(path: PathBuf, arrays: &Bound<'_, PyDict>, compressed: bool) -> PyResult<()> {
    let arrays = named_arrays(arrays)?;
    crate::npy::save_npz(
        &path,
        arrays.iter().map(|(n, a)| (n.as_str(), a)),
        compressed,
    )
    .map_err(to_py_err)
}

/// Reads a safetensors file into a dict of arrays (memory-mapped and read-only by default).
#[cfg(feature = "safetensors")]
#[pyfunction]
#[pyo3(signature = (path, *, mmap=true))]
fn load_safetensors<'py>(
    py: Python<'py>,
    path: PathBuf,
    mmap: bool,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let file = py
        .detach(|| {
            if mmap {
                // SAFETY: as for `load_npy`: the caller must not change the file while arrays
                // live.
                unsafe { crate::safetensors::map(&path) }
            } else {
                crate::safetensors::load(&path)
            }
        })
        .map_err(to_py_err)?;
    let tensors = PyDict::new(py);
    for (name, array) in file.tensors {
        tensors.set_item(name, PyHostArray::new(array))?;
    }
    let metadata = PyDict::new(py);
    for (key, value) in file.metadata {
        metadata.set_item(key, value)?;
    }
    Ok((tensors, metadata))
}

/// Writes a dict of arrays (and optional string metadata) to a safetensors file.
#[cfg(feature = "safetensors")]
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata=None))]
fn save_safetensors(
    path: PathBuf,
    tensors: &Bound<'_, PyDict>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> PyResult<()> {
    let arrays = named_arrays(tensors)?;
    crate::safetensors::save(&path, arrays.iter().map(|(n, a)| (n.as_str(), a)), metadata)
        .map_err(to_py_err)
}

#[cfg(any(feature = "npy", feature = "safetensors"))]
fn named_arrays(dict: &Bound<'_, PyDict>) -> PyResult<Vec<(String, HostArray)>> {
    dict.iter()
        .map(|(name, array)| Ok((name.extract::<String>()?, from_python(&array)?)))
        .collect()
}

/// Fills a Python module with ferry's class and functions (the `ferry` extension module calls
/// this; so can a program that embeds Python, see [`add_module`]).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHostArray>()?;
    m.add_function(wrap_pyfunction!(py_from_dlpack, m)?)?;
    m.add_function(wrap_pyfunction!(py_live_exports, m)?)?;
    #[cfg(feature = "npy")]
    {
        m.add_function(wrap_pyfunction!(load_npy, m)?)?;
        m.add_function(wrap_pyfunction!(save_npy, m)?)?;
        m.add_function(wrap_pyfunction!(load_npz, m)?)?;
        m.add_function(wrap_pyfunction!(save_npz, m)?)?;
    }
    #[cfg(feature = "safetensors")]
    {
        m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
        m.add_function(wrap_pyfunction!(save_safetensors, m)?)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// Makes `import ferry` work in an embedded interpreter: builds the module and puts it in
/// `sys.modules`.
pub fn add_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "ferry")?;
    register(&m)?;
    py.import(intern!(py, "sys"))?
        .getattr(intern!(py, "modules"))?
        .set_item("ferry", &m)?;
    Ok(m)
}
