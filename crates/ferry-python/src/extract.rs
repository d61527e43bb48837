//! Argument and return types for the `#[pyfunction]`s of Rust extensions: [`AnyArray`] takes
//! any array or tensor a caller holds (NumPy, PyTorch, JAX, CuPy's host arrays, pyarrow,
//! `ferry.HostArray`); [`ReadonlyArray`] is a typed view of fixed rank, [`CastArray`] the same
//! after an explicit cast, [`ReadwriteArray`] a writable view of ferry's own memory, and
//! [`Tensor`] a candle, Burn or tch tensor. What a function returns arrives as a
//! `ferry.HostArray`.
//!
//! ```no_run
//! use ferry_python::pyo3::prelude::*;
//! use ferry_python::{AnyArray, ReadonlyArray};
//! use ndarray::{Axis, Ix2};
//!
//! /// The Euclidean norm of each row, for a NumPy array, a PyTorch tensor or anything else.
//! #[pyfunction]
//! fn row_norms(x: ReadonlyArray<'_, f32, Ix2>) -> AnyArray {
//!     let norms = x.as_array().map_axis(Axis(1), |row| row.dot(&row).sqrt());
//!     AnyArray::from(norms)
//! }
//! ```
//!
//! `HostArray` itself cannot be an argument type (it belongs to `ferry-core`, which knows no
//! Python, and Rust's orphan rule keeps pyo3's traits off it here): [`AnyArray`] is a
//! `HostArray` that can, and dereferences to one.
//!
//! Memory stays as the caller's library made it: NumPy's and pyarrow's are read in place,
//! PyTorch's is copied once (PyTorch may free or resize a tensor's storage under any importer;
//! see `torch.rs`), and nothing another library owns is ever writable. [`ReadwriteArray`]
//! takes only a `ferry.HostArray` of this build's own memory held by that object alone, and for
//! the length of the call every other reader of that memory (another argument, an export, an
//! import) is refused (`lease.rs`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use ferry_core::{Access, Backend, DType, Element, Error, HostArray};
use ndarray::{Array, ArrayView, ArrayViewMut, Dimension};
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{Borrowed, intern};

use crate::capsule::{LiveExport, new_capsule};
use crate::class::{PyHostArray, PyHostArrayMethods, dtype_name, import_any};
use crate::error::to_py_err;
use crate::lease::{WriteLease, check_readable};

/// Any array or tensor as a function argument, and a `ferry.HostArray` as a return value: a
/// [`HostArray`] (it dereferences to one) that pyo3 converts both ways. It is the caller's
/// memory as the caller's library made it: a `bool` view of memory that Python code may
/// write is best read through [`ReadonlyArray<bool, _>`](ReadonlyArray) (a private, checked
/// copy) or [`HostArray::bool_bytes`].
///
/// As an argument it takes what `ferry.from_dlpack` takes — any object with `__dlpack__`
/// (NumPy, PyTorch, JAX, pyarrow primitive arrays), a DLPack capsule, a `ferry.HostArray` —
/// and anything with `__arrow_c_array__` (an `arrow.fixed_shape_tensor` column becomes one
/// array whose first axis is the rows). Returned, it arrives as a `ferry.HostArray` sharing
/// the memory (see [`AnyArray::into_pyobject`]).
#[derive(Debug, Clone)]
pub struct AnyArray(HostArray);

impl AnyArray {
    /// The host array.
    pub fn into_inner(self) -> HostArray {
        self.0
    }

    /// The array as a typed view of rank `D` ([`ReadonlyArray`]'s checks and message).
    pub fn readonly<'py, T: Element, D: Dimension>(
        self,
        py: Python<'py>,
    ) -> PyResult<ReadonlyArray<'py, T, D>> {
        let _ = py;
        ReadonlyArray::checked(self.0, None, Conversion::Exact)
    }

    /// The array's values as `T` (one recorded copy when its dtype is another), then as a
    /// typed view of rank `D`.
    pub fn cast<'py, T: Element, D: Dimension>(
        self,
        py: Python<'py>,
    ) -> PyResult<ReadonlyArray<'py, T, D>> {
        let _ = py;
        ReadonlyArray::checked(self.0, None, Conversion::Cast)
    }

    /// A framework tensor handed out through its backend (zero-copy for host memory, one
    /// recorded copy of the viewed span for device memory): `AnyArray::from_tensor::<ferry::Candle>(&t)`.
    /// Returned to Python, a candle view keeps its storage's read lock while Python holds it
    /// (see [`Tensor`]'s `into_pyobject`).
    pub fn from_tensor<B: Backend>(tensor: &B::Tensor) -> PyResult<AnyArray> {
        B::to_host(tensor).map(AnyArray).map_err(to_py_err)
    }
}

impl Deref for AnyArray {
    type Target = HostArray;

    fn deref(&self) -> &HostArray {
        &self.0
    }
}

impl From<HostArray> for AnyArray {
    fn from(array: HostArray) -> AnyArray {
        AnyArray(array)
    }
}

impl<T: Element, D: Dimension> From<Array<T, D>> for AnyArray {
    /// Moves the ndarray's buffer in (no copy when it is in standard layout; see
    /// [`HostArray::from_array`]).
    fn from(array: Array<T, D>) -> AnyArray {
        AnyArray(HostArray::from_array(array.into_dyn()))
    }
}

impl From<AnyArray> for HostArray {
    fn from(array: AnyArray) -> HostArray {
        array.0
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for AnyArray {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<AnyArray> {
        extract_host(&obj).map(AnyArray)
    }
}

impl<'py> IntoPyObject<'py> for AnyArray {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    /// A `ferry.HostArray` over the array's memory: an object of the installed `ferry`
    /// module's class when this is another build of ferry (an extension beside the `ferry`
    /// wheel: the array goes over as a DLPack capsule, which the wheel imports without
    /// copying), else of this build's own class.
    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        hand_to_python(py, self.0)
    }
}

/// Any argument's host array: an exact `numpy.ndarray` is read from its C struct (`numpy.rs`);
/// this build's `ferry.HostArray` objects are cloned (refused while a [`ReadwriteArray`] holds
/// their memory); anything else is imported over DLPack, or over
/// the Arrow PyCapsule interface when it has no `__dlpack__` that works (pyarrow's tensor
/// columns).
#[inline]
fn extract_host(obj: &Bound<'_, PyAny>) -> PyResult<HostArray> {
    // What threads without the GIL released meanwhile (NumPy arguments moved to them) goes now:
    // an extension beside the wheel has no other ferry entry point in its build.
    crate::deferred::release_queued_in_main(obj.py());
    if let Some(array) = crate::numpy::import_ndarray(obj) {
        // No lease check: a NumPy array over ferry's memory holds an export of it, so no lease
        // is granted while the array exists, and no export is made while a lease is held
        // (every exporter checks after its arguments' Python code; audit rounds 4 and 5).
        return array;
    }
    let array = match import_any(obj, None) {
        Ok(array) => array,
        Err(error) => import_arrow(obj, error)?,
    };
    check_readable(&array)?;
    Ok(array)
}

#[cfg(feature = "arrow")]
#[cold]
fn import_arrow(obj: &Bound<'_, PyAny>, dlpack_error: PyErr) -> PyResult<HostArray> {
    if obj.cast::<PyHostArray>().is_ok() || !obj.hasattr(intern!(obj.py(), "__arrow_c_array__"))? {
        return Err(dlpack_error);
    }
    crate::arrow::import_host(obj)
}

#[cfg(not(feature = "arrow"))]
#[cold]
fn import_arrow(_obj: &Bound<'_, PyAny>, dlpack_error: PyErr) -> PyResult<HostArray> {
    Err(dlpack_error)
}

/// How [`ReadonlyArray::checked`] treats another dtype.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// Refused with a `TypeError`.
    Exact,
    /// Cast (one recorded copy).
    Cast,
}

/// A typed, read-only view of rank `D` (`Ix1`, `Ix2`, … or `IxDyn` for any rank) of any array
/// argument, like rust-numpy's `PyReadonlyArray` for every library's arrays: the dtype and
/// rank are checked when the argument is extracted, and a mismatch is a `TypeError` naming
/// both (`expected float32 array with 2 axes, got torch.Tensor float64 with shape (3, 4, 5)`).
/// [`CastArray`] casts instead; [`AnyArray::cast`] does so after extraction.
///
/// The memory is the caller's, shared (NumPy, pyarrow, JAX) or copied once (PyTorch, a
/// misaligned buffer); [`copies`](HostArray::copies) on [`host`](Self::host) says which. The
/// caller's library may still write it from Python code that the function calls or that
/// runs on another thread while the function releases the GIL (as with rust-numpy's arrays);
/// ferry's own memory is never written while the view lives.
pub struct ReadonlyArray<'py, T: Element, D: Dimension> {
    array: HostArray,
    marker: PhantomData<(Python<'py>, T, D)>,
}

impl<'py, T: Element, D: Dimension> ReadonlyArray<'py, T, D> {
    /// Checks dtype and rank (after a cast when `conversion` allows one) and that the view can
    /// be made; `obj` names the argument in messages.
    #[inline]
    fn checked(
        array: HostArray,
        obj: Option<&Bound<'py, PyAny>>,
        conversion: Conversion,
    ) -> PyResult<Self> {
        let rank_ok = D::NDIM.is_none_or(|rank| rank == array.ndim());
        // A cast the dtypes do not allow (complex to real) is refused by `cast` below.
        let dtype_ok = array.dtype() == T::DTYPE || conversion == Conversion::Cast;
        if !rank_ok || !dtype_ok {
            return Err(PyTypeError::new_err(mismatch::<T, D>(
                &array, obj, conversion,
            )));
        }
        let array = if array.dtype() != T::DTYPE {
            array.cast::<T>().map_err(to_py_err)?
        } else if T::NEEDS_VALIDATION && !array.is_writable() {
            // bools that something else may write (NumPy from Python code the function calls,
            // or from another thread while it releases the GIL): a private copy, checked below
            // once and never written by anyone, so the view never holds a byte other than 0 or 1.
            array.snapshot().map_err(to_py_err)?
        } else {
            array
        };
        let array = match array.view_dim::<T, D>() {
            Ok(_) => array,
            // A buffer at an odd address (`np.frombuffer` at an offset): one recorded copy.
            Err(Error::Misaligned { .. }) => array.snapshot().map_err(to_py_err)?,
            Err(error) => return Err(to_py_err(error)),
        };
        Ok(ReadonlyArray {
            array,
            marker: PhantomData,
        })
    }

    /// The view.
    pub fn as_array(&self) -> ArrayView<'_, T, D> {
        match self.array.view_dim::<T, D>() {
            Ok(view) => view,
            // Extraction made this view once; dtype, rank, layout and address never change,
            // and `bool` bytes (checked again) are a private copy unless the memory was
            // ferry's own held by this argument alone: only a consumer that writes memory
            // exported READ_ONLY could change them (ARCHITECTURE.md's trust boundary).
            Err(error) => unreachable!("a view made at extraction failed later: {error}"),
        }
    }

    /// The host array behind the view (its copy log says whether the argument was copied).
    pub fn host(&self) -> &HostArray {
        &self.array
    }

    /// The host array behind the view, for keeping beyond the call.
    pub fn into_host(self) -> HostArray {
        self.array
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ReadonlyArray<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadonlyArray")
            .field("array", &self.array)
            .finish()
    }
}

impl<'a, 'py, T: Element, D: Dimension> FromPyObject<'a, 'py> for ReadonlyArray<'py, T, D> {
    type Error = PyErr;

    #[inline]
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let array = extract_host(&obj)?;
        ReadonlyArray::checked(array, Some(&obj), Conversion::Exact)
    }
}

/// A [`ReadonlyArray`] that casts an argument of another numeric dtype to `T` (one recorded
/// copy) instead of refusing it — the explicit opt-in for callers who pass `float64` to a
/// `float32` function (rust-numpy's `PyArrayLike` with `AllowTypeChange`). The rank is still
/// checked, and complex to real is refused.
#[derive(Debug)]
pub struct CastArray<'py, T: Element, D: Dimension>(ReadonlyArray<'py, T, D>);

impl<'py, T: Element, D: Dimension> CastArray<'py, T, D> {
    /// The read-only view it derefs to.
    pub fn into_readonly(self) -> ReadonlyArray<'py, T, D> {
        self.0
    }
}

impl<'py, T: Element, D: Dimension> Deref for CastArray<'py, T, D> {
    type Target = ReadonlyArray<'py, T, D>;

    fn deref(&self) -> &ReadonlyArray<'py, T, D> {
        &self.0
    }
}

impl<'a, 'py, T: Element, D: Dimension> FromPyObject<'a, 'py> for CastArray<'py, T, D> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let array = extract_host(&obj)?;
        ReadonlyArray::checked(array, Some(&obj), Conversion::Cast).map(CastArray)
    }
}

/// A writable view of rank `D` of a `ferry.HostArray` argument whose memory is ferry's own
/// (made by this build: returned by a function of this module, `ferry.from_dlpack(x,
/// copy=True)` in a program that embeds it, …) and held by that object alone. Writes show in
/// the caller's object after the call.
///
/// Refused with `BufferError`: memory another library owns (NumPy, PyTorch and pyarrow memory
/// stays read-only), read-only memory, memory something else also holds (a NumPy array made
/// from the object, another argument, an export), and a layout where two indices reach one
/// element. While the argument lives, every other reader of its memory in this build — a
/// second argument of the same call, `__dlpack__`, the exchange API, `.torch()`, Arrow — is
/// refused too, so no read-only view ever aliases it.
pub struct ReadwriteArray<'py, T: Element, D: Dimension> {
    array: HostArray,
    _lease: WriteLease,
    marker: PhantomData<(Python<'py>, T, D)>,
}

impl<T: Element, D: Dimension> ReadwriteArray<'_, T, D> {
    /// The writable view.
    pub fn as_array_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: the memory's other handle is the caller's `ferry.HostArray` object (at
        // extraction it held the memory alone, and this build's `ferry.HostArray` objects are
        // the only ones holding its Exclusive memory). Everything in this build that reads or
        // lends that object's memory checks `check_readable` first and is refused while
        // `_lease`, which lives as long as `self`, holds the span: no other argument, export or
        // import reaches the memory while the view lives.
        let view = unsafe { self.array.view_mut_lent::<T>() };
        match view.map(|view| view.into_dimensionality::<D>()) {
            Ok(Ok(view)) => view,
            // Extraction made this view once (and its rank checked); nothing it checks changes.
            Ok(Err(error)) => unreachable!("a view made at extraction failed later: {error}"),
            Err(error) => unreachable!("a view made at extraction failed later: {error}"),
        }
    }

    /// The view, read-only.
    pub fn as_array(&self) -> ArrayView<'_, T, D> {
        match self.array.view_dim::<T, D>() {
            Ok(view) => view,
            Err(error) => unreachable!("a view made at extraction failed later: {error}"),
        }
    }
}

impl<T: Element, D: Dimension> fmt::Debug for ReadwriteArray<'_, T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadwriteArray")
            .field("array", &self.array)
            .finish()
    }
}

impl<'a, 'py, T: Element, D: Dimension> FromPyObject<'a, 'py> for ReadwriteArray<'py, T, D> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let Ok(ours) = obj.cast::<PyHostArray>() else {
            return Err(PyBufferError::new_err(format!(
                "expected a writable ferry.HostArray made by this module, got {}: memory another library owns is read-only here; pass `ferry.from_dlpack(x, copy=True)`-style ferry memory, or take a ReadonlyArray and return a new array",
                type_name(&obj)
            )));
        };
        let held = &ours.host().array;
        if !held.is_writable() {
            return Err(not_writable(held));
        }
        let (rank_ok, dtype_ok) = (
            D::NDIM.is_none_or(|rank| rank == held.ndim()),
            held.dtype() == T::DTYPE,
        );
        if !rank_ok || !dtype_ok {
            return Err(PyTypeError::new_err(mismatch::<T, D>(
                held,
                Some(&obj),
                Conversion::Exact,
            )));
        }
        // The lease first, then the check that the object holds the memory alone, then the
        // clone: a reader that took a handle before the check is counted by it; one that takes
        // it after sees the lease (`lease.rs`).
        let lease = WriteLease::take(held)?;
        if !held.is_writable() {
            return Err(not_writable(held));
        }
        let mut array = held.clone();
        // Checks values (bool) and layout once; `as_array_mut` relies on it.
        // SAFETY: no view is kept: this only runs the checks `as_array_mut` will rely on.
        unsafe { array.view_mut_lent::<T>() }
            .map_err(to_py_err)?
            .into_dimensionality::<D>()
            .map_err(|error| to_py_err(error.into()))?;
        Ok(ReadwriteArray {
            array,
            _lease: lease,
            marker: PhantomData,
        })
    }
}

#[cold]
fn not_writable(array: &HostArray) -> PyErr {
    let why = match array.access() {
        Access::ReadOnly => "it is read-only",
        Access::Shared => "its memory belongs to another library (NumPy, PyTorch, a file map)",
        Access::Exclusive => {
            "something else also holds its memory (a NumPy array or tensor made from it, another argument, an export), or two indices reach one element"
        }
    };
    PyBufferError::new_err(format!(
        "a ferry.HostArray of shape {:?}, dtype {} cannot be lent writable: {why}; pass a fresh copy (`.copy()`)",
        array.shape(),
        dtype_name(array.dtype())
    ))
}

/// A framework tensor made from any array argument: `fn f(x: Tensor<ferry::Candle>)` gives a
/// `candle_core::Tensor` on the CPU, sharing the argument's memory where the framework can
/// wrap host memory, else one copy into its storage. The dtype must be one the framework
/// holds (a `TypeError` otherwise); Burn's rank is its backend's (`ferry::Burn<3>`).
pub struct Tensor<B: Backend>(pub B::Tensor);

impl<B: Backend> Tensor<B> {
    /// The framework tensor.
    pub fn into_inner(self) -> B::Tensor {
        self.0
    }
}

impl<B: Backend> Deref for Tensor<B> {
    type Target = B::Tensor;

    fn deref(&self) -> &B::Tensor {
        &self.0
    }
}

impl<B: Backend> fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>", B::NAME)
    }
}

impl<'a, 'py, B: Backend> FromPyObject<'a, 'py> for Tensor<B> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let array = extract_host(&obj)?;
        if !B::DTYPES.contains(&array.dtype()) {
            return Err(PyTypeError::new_err(format!(
                "expected an array of a dtype {} holds ({}), got {} {} with shape {}",
                B::NAME,
                B::DTYPES
                    .iter()
                    .map(|d| dtype_name(*d))
                    .collect::<Vec<_>>()
                    .join(", "),
                type_name(&obj),
                dtype_name(array.dtype()),
                python_shape(array.shape())
            )));
        }
        B::into_tensor(array, &B::cpu())
            .map(Tensor)
            .map_err(|error| match error {
                Error::TensorRank { .. } | Error::UnsupportedDtype { .. } => {
                    PyTypeError::new_err(format!("{} argument: {error}", B::NAME))
                }
                error => to_py_err(error),
            })
    }
}

impl<'py, B: Backend> IntoPyObject<'py> for Tensor<B> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    /// The tensor as a `ferry.HostArray` ([`AnyArray::from_tensor`], then as [`AnyArray`]).
    /// A candle tensor's view holds a read lock on its storage for as long as Python keeps the
    /// array (ARCHITECTURE.md's candle row), so a `Var::set` of that storage waits for it:
    /// return a copy (`Tensor(t.copy()?)`) of a tensor whose storage a `Var` the extension
    /// later sets still shares.
    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        AnyArray::from_tensor::<B>(&self.0)?.into_pyobject(py)
    }
}

/// `module.Class` of an argument, as a Python user reads it (`numpy.ndarray`, `torch.Tensor`).
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .fully_qualified_name()
        .map_or_else(|_| "an object".into(), |name| name.to_string())
}

/// A shape as Python prints a tuple: `(3, 4)`, `(3,)`, `()`.
fn python_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `expected float32 array with 2 axes, got torch.Tensor float64 with shape (3, 4, 5)`.
#[cold]
fn mismatch<T: Element, D: Dimension>(
    array: &HostArray,
    obj: Option<&Bound<'_, PyAny>>,
    conversion: Conversion,
) -> String {
    let expected_dtype = match conversion {
        Conversion::Exact => dtype_name(T::DTYPE),
        Conversion::Cast => format!("{} (or castable)", dtype_name(T::DTYPE)),
    };
    let axes = match D::NDIM {
        Some(1) => " with 1 axis".to_string(),
        Some(rank) => format!(" with {rank} axes"),
        None => String::new(),
    };
    let got = obj.map_or_else(|| "an array".into(), type_name);
    let hint = if array.dtype() != T::DTYPE && conversion == Conversion::Exact {
        match array.dtype() {
            DType::Bool | DType::C64 | DType::C128 => String::new(),
            _ => format!(
                "; convert it first (NumPy: x.astype('{}')), or take a CastArray to cast it",
                dtype_name(T::DTYPE)
            ),
        }
    } else {
        String::new()
    };
    format!(
        "expected {expected_dtype} array{axes}, got {got} {} with shape {}{hint}",
        dtype_name(array.dtype()),
        python_shape(array.shape())
    )
}

/// Whether `register` made this build's class the `ferry` module's (the wheel itself, a
/// program that embeds Python and calls `add_module`).
pub(crate) static REGISTERED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The installed `ferry` module's `from_dlpack`, when that module is another build of ferry
/// (this crate linked into an extension beside the wheel); `None` when this build registered
/// the module itself or none is installed.
fn installed_from_dlpack(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static FROM_DLPACK: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    FROM_DLPACK
        .get_or_init(py, || {
            let module = py.import(intern!(py, "ferry")).ok()?;
            let class = module.getattr(intern!(py, "HostArray")).ok()?;
            let ours = crate::object::host_array_type(py).ok()?;
            if class.is(ours) {
                return None;
            }
            module
                .getattr(intern!(py, "from_dlpack"))
                .ok()
                .map(Bound::unbind)
        })
        .as_ref()
        .map(|function| function.bind(py))
}

/// `array` as a `ferry.HostArray` object (see [`AnyArray::into_pyobject`]).
pub(crate) fn hand_to_python(py: Python<'_>, array: HostArray) -> PyResult<Bound<'_, PyAny>> {
    if !REGISTERED.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(from_dlpack) = installed_from_dlpack(py)
    {
        let capsule = new_capsule(py, LiveExport::share(&array, true))?;
        drop(array);
        return from_dlpack.call1((capsule,));
    }
    Ok(PyHostArray::new(array).into_pyobject(py)?.into_any())
}
