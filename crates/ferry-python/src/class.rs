//! What a `ferry.HostArray` Python object holds ([`PyHostArray`]) and what its methods do: a
//! [`HostArray`] with NumPy's attributes, exported through `__dlpack__` (with every option of
//! the protocol) and to NumPy and PyTorch; [`PyHostArrayMethods::host`], its payload read from
//! a `Bound<PyHostArray>`; and [`import_any`], what every function taking an array imports.
//! The type object and its C entry points are in `object.rs` and `method.rs`.

use std::fmt;

use ferry_core::{CopyPolicy, DType, Device, HostArray};
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::capsule::{LiveExport, new_capsule};
use crate::error::to_py_err;
use crate::exchange::Loans;
use crate::import::import_dlpack;
use crate::{lease, raw};

/// A ferry [`HostArray`] as a Python object (`ferry.HostArray`), exported to NumPy, PyTorch and
/// any other consumer through `__dlpack__`. Made into one with `into_pyobject`; read back from
/// a `Bound<PyHostArray>` with [`PyHostArrayMethods::host`].
#[derive(Clone)]
pub struct PyHostArray {
    pub(crate) array: HostArray,
    /// What the bare `DLTensor`s this object lends to C (`exchange.rs`) keep in it.
    pub(crate) loans: Loans,
}

impl fmt::Debug for PyHostArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyHostArray")
            .field("array", &self.array)
            .field("dlpack_dims", &self.loans.dlpack_dims)
            .field("lent_to_c", &self.loans.lent_to_c)
            .finish()
    }
}

impl PyHostArray {
    /// Wraps an array.
    pub fn new(array: HostArray) -> PyHostArray {
        PyHostArray {
            array,
            loans: Loans::default(),
        }
    }

    /// The wrapped array, for this crate's readers (each checks the write leases itself).
    pub(crate) fn array(&self) -> &HostArray {
        &self.array
    }

    /// A handle to the wrapped array (a clone, no copy), unless a `ReadwriteArray` argument
    /// holds its memory writable now (`BufferError`): the payload is not handed out by
    /// reference, which could be read beside that argument's mutable view.
    pub fn to_host(&self) -> PyResult<HostArray> {
        let array = self.array.clone();
        // After the clone: a lease taken before it is seen here, one taken after it sees the
        // clone (`lease.rs`).
        lease::check_readable(&array)?;
        Ok(array)
    }

    /// The capsule for `__dlpack__`, after the protocol's checks.
    pub(crate) fn export(
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
        // Pinned and managed memory is host memory the CPU reads where it is: exported as
        // kDLCPU (PyTorch's `from_dlpack` refuses kDLCUDAHost), unless a consumer asks for its
        // own label with `dl_device`.
        let mut as_cpu = device != Device::CPU;
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
            as_cpu = wanted != device;
        }
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        // A legacy capsule cannot say READ_ONLY: memory its consumer must not write (read-only,
        // or held by something else as well, which a versioned export marks READ_ONLY) goes
        // as a copy.
        let legacy_read_only = !versioned && !self.array.may_lend_writable();
        if legacy_read_only && copy == Some(false) {
            return Err(PyBufferError::new_err(format!(
                "array of shape {:?}, dtype {} is read-only and a legacy (unversioned) DLPack capsule cannot say so; ask with max_version=(1, 0) or allow a copy",
                self.array.shape(),
                self.array.dtype()
            )));
        }
        let copy_now = legacy_read_only || copy == Some(true);
        // Checked here, after the arguments (`stream.__index__` runs Python code, which could
        // lend the memory writable) and with no Python code until the export holds it.
        lease::check_readable(&self.array)?;
        let tensor = if copy_now {
            let fresh = self
                .array
                .to_contiguous(CopyPolicy::Always)
                .map_err(to_py_err)?;
            let kept = LiveExport::hand_over(fresh);
            let kept = if as_cpu { kept.as_cpu_memory() } else { kept };
            if versioned {
                kept.into_dlpack()
            } else {
                kept.to_dlpack_legacy()
            }
        } else if as_cpu {
            LiveExport::share_as_cpu(&self.array, versioned)
        } else {
            LiveExport::share(&self.array, versioned)
        };
        new_capsule(py, tensor)
    }
}

/// NumPy's name for a dtype (`bfloat16` and ferry's names for the raw ones NumPy lacks).
pub(crate) fn dtype_name(dtype: DType) -> String {
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

impl PyHostArray {
    /// `__repr__`.
    pub(crate) fn repr(&self) -> String {
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

    /// `tobytes()`: the elements as bytes in row-major order (NumPy's `tobytes()`).
    pub(crate) fn tobytes<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        // The GIL stays held while reading: the memory may belong to a Python producer whose
        // other threads could write it.
        lease::check_readable(&slf.host().array)?;
        let standard = slf.host().array.as_standard_layout().map_err(to_py_err)?;
        let bytes = standard
            .as_bytes()
            .ok_or_else(|| PyValueError::new_err("a row-major copy has no byte view"))?;
        Ok(PyBytes::new(slf.py(), bytes).into_any())
    }

    /// `copy()`: a row-major copy in fresh, writable memory (made while holding the GIL, like
    /// `tobytes`: the memory may belong to a Python producer).
    pub(crate) fn copy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        lease::check_readable(&slf.host().array)?;
        let copied = slf
            .host()
            .array
            .to_contiguous(CopyPolicy::Always)
            .map_err(to_py_err)?;
        Ok(PyHostArray::new(copied).into_pyobject(slf.py())?.into_any())
    }

    /// `astype(dtype)`: the values converted to another dtype (saturating like NumPy's
    /// `astype` for floats to integers; complex to real is refused).
    pub(crate) fn astype<'py>(&self, py: Python<'py>, dtype: &str) -> PyResult<Bound<'py, PyAny>> {
        lease::check_readable(&self.array)?;
        let cast = self.array.cast_to(dtype_named(dtype)?).map_err(to_py_err)?;
        Ok(PyHostArray::new(cast).into_pyobject(py)?.into_any())
    }

    /// `numpy()`: a NumPy array sharing this memory (`numpy.from_dlpack(self)`).
    pub(crate) fn numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import(intern!(py, "numpy"))?
            .call_method1(intern!(py, "from_dlpack"), (slf,))
    }

    /// `torch()`: a PyTorch tensor sharing this memory (`torch.from_dlpack(self)`), or sharing
    /// a row-major copy when PyTorch cannot hold the array as it is: when it has negative
    /// strides (PyTorch has none, and `torch.from_dlpack` aborts the process on such a DLPack
    /// tensor from any producer, NumPy's too), or when the tensor must not write it (PyTorch
    /// has no read-only tensors and ignores DLPack's READ_ONLY flag): when it is read-only, or
    /// held by something else as well (another `HostArray` sharing it, a framework tensor, an
    /// export) that reads it while the tensor would write.
    pub(crate) fn torch<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let array = &slf.host().array;
        lease::check_readable(array)?;
        let negative = array
            .shape()
            .iter()
            .zip(array.strides())
            .any(|(&len, &stride)| len > 1 && stride < 0);
        // The decision and the capsule are made here, with no Python code between them (a
        // hook run inside `torch.from_dlpack` could otherwise give the memory another holder
        // after the check): a legacy capsule of memory nothing else holds, or of a copy.
        let capsule = if negative || !array.may_lend_writable() {
            let copied = array.to_contiguous(CopyPolicy::Always).map_err(to_py_err)?;
            new_capsule(py, LiveExport::hand_over(copied).to_dlpack_legacy())?
        } else {
            slf.host().export(py, None, None, None, None)?
        };
        py.import(intern!(py, "torch"))?
            .call_method1(intern!(py, "from_dlpack"), (capsule,))
    }
}

/// What a `ferry.HostArray` object holds, from Rust (what pyo3's `get` is for its own classes).
pub trait PyHostArrayMethods {
    /// The payload, borrowed for as long as the object is.
    fn host(&self) -> &PyHostArray;
}

impl PyHostArrayMethods for Bound<'_, PyHostArray> {
    #[inline]
    fn host(&self) -> &PyHostArray {
        // SAFETY: a `Bound<PyHostArray>` is only made for an instance of the type (a type
        // check, or `into_pyobject`), which `object.rs` made with `raw::new_type` for this
        // payload and whose instances only `into_pyobject` makes (its invariant); `self` keeps
        // the object alive while the payload is borrowed.
        unsafe { raw::payload::<PyHostArray>(self.as_ptr()) }
    }
}

/// A `ferry.HostArray`'s own array (copied when `copy=True`), or a DLPack import of anything
/// else.
#[inline]
pub(crate) fn import_any(obj: &Bound<'_, PyAny>, copy: Option<bool>) -> PyResult<HostArray> {
    match obj.cast::<PyHostArray>() {
        Ok(ours) if copy == Some(true) => {
            lease::check_readable(&ours.host().array)?;
            ours.host()
                .array
                .to_contiguous(CopyPolicy::Always)
                .map_err(to_py_err)
        }
        Ok(ours) => {
            let array = ours.host().array.clone();
            // After the clone: a writable argument's lease taken before it is seen here, one
            // taken after it sees the clone (`lease.rs`).
            lease::check_readable(&array)?;
            Ok(array)
        }
        Err(_) => import_dlpack(obj, copy),
    }
}
