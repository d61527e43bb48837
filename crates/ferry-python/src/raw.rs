//! Raw CPython: the one module that calls CPython's C API (`pyo3::ffi`'s functions) and the
//! dynamic linker, for what pyo3 cannot do safely or cheaply enough — the interpreter's id, the
//! error indicator around destructors, symbols looked up at run time (`PyObject_VectorcallMethod`,
//! the library a function lives in), capsules with C destructors and renames, heap types built
//! from a spec whose instances hold a Rust payload, built-in functions from static definitions,
//! and the arguments of CPython's fast calling convention. It knows nothing of ferry's class or
//! protocols: the modules above hand it their tables and payload types.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::mem::{align_of, size_of};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{Borrowed, ffi};

// The interpreter.

/// The current interpreter's id: 0 for the main interpreter, -1 (with an exception set) when
/// CPython cannot say.
#[inline]
pub(crate) fn interpreter_id(_py: Python<'_>) -> i64 {
    // SAFETY: the GIL is held (`_py`); both calls only read the current interpreter's state.
    unsafe { ffi::PyInterpreterState_GetID(ffi::PyInterpreterState_Get()) }
}

/// Whether the thread runs in the main interpreter (`py` proves the GIL is held).
#[inline]
pub(crate) fn in_main_interpreter(py: Python<'_>) -> bool {
    interpreter_id(py) == 0
}

/// The interpreter's `sys.modules` dict, borrowed.
#[inline]
pub(crate) fn sys_modules(py: Python<'_>) -> Borrowed<'_, '_, PyAny> {
    // SAFETY: the GIL is held (`py`); the result is a borrowed reference to the interpreter's
    // `sys.modules` dict, alive as long as the interpreter.
    unsafe { Borrowed::from_ptr(py, ffi::PyImport_GetModuleDict()) }
}

/// How many modules `sys.modules` holds.
#[inline]
pub(crate) fn module_count(_py: Python<'_>) -> isize {
    // SAFETY: the GIL is held (`_py`); `sys.modules` is a live dict.
    unsafe { ffi::PyDict_Size(ffi::PyImport_GetModuleDict()) }
}

/// Whether `obj`'s type is `class` or a subclass of it, read from the type's MRO: unlike
/// `isinstance`, no `__instancecheck__` (no Python code) runs.
#[inline]
pub(crate) fn is_instance_by_mro(obj: &Bound<'_, PyAny>, class: &Bound<'_, PyType>) -> bool {
    // SAFETY: both are live type objects (`obj`'s own type, and `class`); `PyType_IsSubtype`
    // only reads their MROs and runs no Python code.
    unsafe { ffi::PyType_IsSubtype(ffi::Py_TYPE(obj.as_ptr()), class.as_type_ptr()) != 0 }
}

// The error indicator.

/// Runs a destructor's `work` (which may run a producer's deleter, and so Python code) with the
/// error indicator put aside: an exception that was being raised is restored after, and one
/// that `work` left is cleared, as restoring an empty indicator would (a destructor cannot
/// report it).
///
/// # Safety
///
/// The GIL is held.
#[inline]
pub(crate) unsafe fn with_error_indicator_aside(work: impl FnOnce()) {
    // SAFETY: the GIL is held (the contract); the references `PyErr_Fetch` hands over go back
    // to `PyErr_Restore`, which takes them.
    unsafe {
        let pending = !ffi::PyErr_Occurred().is_null();
        let (mut kind, mut value, mut traceback) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        if pending {
            ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback);
        }
        work();
        if pending {
            ffi::PyErr_Restore(kind, value, traceback);
        } else if !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear();
        }
    }
}

// Symbols.

/// The address of `name` among the loaded objects (the interpreter's functions that exist in
/// every CPython ferry supports but outside the stable ABI the abi3 wheel links against);
/// `None` where nothing exports it.
fn interpreter_symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym only looks a NUL-terminated name up in the loaded objects.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!symbol.is_null()).then_some(symbol)
}

/// Whether the function at `address` belongs to a loaded library whose file name starts with
/// `prefix` (`address` is a function of a library that stays loaded meanwhile: a live
/// deleter's).
pub(crate) fn in_library_named(address: usize, prefix: &[u8]) -> bool {
    // SAFETY: an all-zero `Dl_info` is a valid value (NULL pointers).
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only looks the address up among the loaded objects and writes `info`.
    if unsafe { libc::dladdr(address as *const c_void, &mut info) } == 0 || info.dli_fname.is_null()
    {
        return false;
    }
    // SAFETY: dladdr set `dli_fname` to the loaded object's NUL-terminated path, which stays
    // valid while the object is loaded (a library holding a live deleter, which is what
    // callers ask about, is).
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    name.starts_with(prefix)
}

/// Whether this thread holds the main interpreter's GIL and runs in it, asked of any thread
/// (also one that never attached), for a release that must not wait for the GIL (`numpy.rs`):
/// the thread state CPython runs now (`PyThreadState_GetUnchecked`, 3.13+; `_PyThreadState_UncheckedGet` before:
/// exported by every CPython ferry supports but outside the stable ABI, so looked up at run
/// time) is this thread's own (`PyGILState_GetThisThreadState`). Not `PyGILState_Check`: CPython
/// turns that check off for the whole process once any subinterpreter has been made, after which
/// it says "yes" on every thread. And that state's interpreter is the main one. `false` where
/// neither function is exported.
pub(crate) fn thread_holds_gil() -> bool {
    type Current = unsafe extern "C" fn() -> *mut ffi::PyThreadState;
    static CURRENT: std::sync::OnceLock<Option<Current>> = std::sync::OnceLock::new();
    let current = CURRENT.get_or_init(|| {
        let symbol = interpreter_symbol(c"PyThreadState_GetUnchecked")
            .or_else(|| interpreter_symbol(c"_PyThreadState_UncheckedGet"))?;
        // SAFETY: both symbols, where CPython exports them, are `PyThreadState *f(void)`.
        Some(unsafe { std::mem::transmute::<*mut c_void, Current>(symbol) })
    });
    let Some(current) = current else {
        return false;
    };
    // SAFETY: both functions only read thread-local or runtime state and may be called on any
    // thread, attached or not; the first returns NULL or the thread state holding the GIL (this
    // thread's while it is attached), the second the thread state `PyGILState` keeps for this
    // thread, or NULL.
    let (running, own) = unsafe { (current(), ffi::PyGILState_GetThisThreadState()) };
    if running.is_null() || running != own {
        return false;
    }
    // `PyGILState` keeps a thread's first state whatever its interpreter: a thread started in
    // a subinterpreter has that interpreter's state there (audit round 6), so the interpreter
    // is asked too.
    // SAFETY: `running` is this thread's live, attached thread state (checked above), whose
    // interpreter outlives it; both calls only read it.
    unsafe { ffi::PyInterpreterState_GetID(ffi::PyThreadState_GetInterpreter(running)) == 0 }
}

/// `PyObject_VectorcallMethod(name, args, nargsf, kwnames)` (PEP 590).
type VectorcallMethod = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    usize,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// CPython's `PyObject_VectorcallMethod`, looked up at run time: exported with PEP 590's
/// signature since 3.9, but in the stable ABI only from 3.12, so the abi3 (3.10) wheel cannot
/// link it. Calling through it passes keywords as a tuple of names, without the dict (and the
/// bound method and argument tuple) `PyObject_Call` needs.
#[derive(Clone, Copy)]
pub(crate) struct Vectorcall(VectorcallMethod);

impl Vectorcall {
    /// The function, where the interpreter exports it.
    pub(crate) fn lookup() -> Option<Vectorcall> {
        let symbol = interpreter_symbol(c"PyObject_VectorcallMethod")?;
        // SAFETY: the symbol, where CPython exports it, is the function of PEP 590's signature.
        Some(Vectorcall(unsafe {
            std::mem::transmute::<*mut c_void, VectorcallMethod>(symbol)
        }))
    }

    /// Calls the method `name` of `args[0]` with no other positional argument and one keyword
    /// value per name in `kwnames` (`args[1..]`, in the names' order; none without `kwnames`).
    ///
    /// # Safety
    ///
    /// - `args` holds at least self (`args[0]`), then exactly one value per name in `kwnames`
    ///   (none when `kwnames` is `None`);
    /// - every pointer in `args` is a live object that outlives the call.
    #[inline]
    pub(crate) unsafe fn call_method<'py>(
        self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: &[*mut ffi::PyObject],
        kwnames: Option<&Bound<'py, PyTuple>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwnames = kwnames.map_or(std::ptr::null_mut(), Bound::as_ptr);
        // SAFETY: the GIL is held (`py`); `name` is a live string; per the contract, `args`
        // holds self (the one positional argument) then one borrowed, live value per name in
        // `kwnames` (a live tuple, or NULL), all outliving the call; the result is a new
        // reference, or NULL with an exception set.
        unsafe {
            let result = (self.0)(name.as_ptr(), args.as_ptr(), 1, kwnames);
            Bound::from_owned_ptr_or_err(py, result)
        }
    }
}

// Capsules.

/// A new capsule holding `pointer` under `name`, which runs `destructor` when it goes; `None`
/// (with an exception set) when it could not be made, and `pointer` is still the caller's.
///
/// # Safety
///
/// `pointer` is not NULL, and `destructor` may be run on the capsule (with the GIL held) when
/// its last reference goes: the capsule owns `pointer` from now on.
#[inline]
pub(crate) unsafe fn new_capsule<'py>(
    py: Python<'py>,
    pointer: *mut c_void,
    name: &'static CStr,
    destructor: unsafe extern "C" fn(*mut ffi::PyObject),
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: the GIL is held (`py`); `name` is a static string, which the capsule keeps;
    // `pointer` and `destructor` per the contract.
    unsafe {
        let capsule = ffi::PyCapsule_New(pointer, name.as_ptr(), Some(destructor));
        Bound::from_owned_ptr_or_opt(py, capsule)
    }
}

/// Whether `obj` is a capsule (of exactly that type, whatever its name).
#[inline]
pub(crate) fn is_capsule(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; the check reads only its type.
    unsafe { ffi::PyCapsule_CheckExact(obj.as_ptr()) == 1 }
}

/// Whether `obj` is a capsule named `name` that holds a pointer (any object may be asked).
#[inline]
pub(crate) fn capsule_is_valid(obj: &Bound<'_, PyAny>, name: &CStr) -> bool {
    // SAFETY: `obj` is a live object (borrowed); IsValid accepts any object.
    unsafe { ffi::PyCapsule_IsValid(obj.as_ptr(), name.as_ptr()) == 1 }
}

/// The pointer of `obj`, a capsule named `name`; the exception CPython raises when `obj` is no
/// such capsule.
#[inline]
pub(crate) fn capsule_pointer(obj: &Bound<'_, PyAny>, name: &CStr) -> PyResult<*mut c_void> {
    // SAFETY: `obj` is a live object; GetPointer checks that it is a capsule named `name` and
    // returns NULL with an exception set otherwise.
    let pointer = unsafe { ffi::PyCapsule_GetPointer(obj.as_ptr(), name.as_ptr()) };
    if pointer.is_null() {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(pointer)
}

/// The name of capsule `obj`, the very pointer the capsule was given (NULL for a capsule
/// without one, and, with an exception set, for an object that is no capsule).
#[inline]
pub(crate) fn capsule_name(obj: &Bound<'_, PyAny>) -> *const c_char {
    // SAFETY: `obj` is a live object; GetName checks that it is a capsule.
    unsafe { ffi::PyCapsule_GetName(obj.as_ptr()) }
}

/// Renames capsule `obj` to `name`; the exception CPython raises when `obj` is no valid
/// capsule.
#[inline]
pub(crate) fn rename_capsule(obj: &Bound<'_, PyAny>, name: &'static CStr) -> PyResult<()> {
    // SAFETY: `obj` is a live object, which SetName checks is a valid capsule; the name is
    // static, so it outlives the capsule that keeps it.
    if unsafe { ffi::PyCapsule_SetName(obj.as_ptr(), name.as_ptr()) } != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

// Types whose instances hold a Rust payload.

/// An instance of a type made by [`new_type`]: the object header, then the payload.
#[repr(C)]
struct Instance<T> {
    header: ffi::PyObject,
    payload: T,
}

impl<T> Instance<T> {
    /// The instance's size (`basicsize`). `PyObject_Malloc` aligns to 16 bytes on 64-bit
    /// builds, 8 on any: checked at compile time, for each payload type.
    const SIZE: usize = {
        assert!(align_of::<Instance<T>>() <= 8);
        assert!(size_of::<Instance<T>>() <= c_int::MAX as usize);
        size_of::<Instance<T>>()
    };
}

/// A heap type named `name` whose instances hold a `T` after the object header (its
/// `basicsize` is that, with no items), from its flags and slots (`PyType_FromSpec`).
///
/// # Safety
///
/// - `slots` ends with a zeroed slot, and each slot's pointer has the signature, or is the
///   table, that CPython expects for that slot;
/// - the tables and strings the slots point at live as long as the type (the docstring is
///   copied), and the type lives as long as the process (it is kept in a `static`);
/// - `name` is static (CPython before 3.12 keeps this very pointer as `tp_name`);
/// - nothing but [`new_instance::<T>`] makes its instances — `flags` has
///   `Py_TPFLAGS_DISALLOW_INSTANTIATION` (no `tp_new`) and not `Py_TPFLAGS_BASETYPE` (no
///   subclasses) — and its `Py_tp_dealloc` frees them with [`dealloc_instance::<T>`].
pub(crate) unsafe fn new_type<'py, T>(
    py: Python<'py>,
    name: &'static CStr,
    flags: c_uint,
    slots: &mut [ffi::PyType_Slot],
) -> PyResult<Bound<'py, PyType>> {
    let mut spec = ffi::PyType_Spec {
        name: name.as_ptr(),
        // At most `c_int::MAX` (checked with the size).
        basicsize: Instance::<T>::SIZE as c_int,
        itemsize: 0,
        flags,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: the GIL is held (`py`); the spec and slots are read during the call (the
    // docstring is copied); the name and what the slots point at live as long as the type, and
    // every slot has its signature (the contract).
    let class = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec)) }?;
    Ok(class.cast_into::<PyType>()?)
}

/// Sets `name` on the immutable type `class` as it is made, before any code has seen it:
/// `type.__setattr__` refuses immutable types, so the value goes into the type's dictionary
/// through the generic setter (the one `object.__setattr__` uses, which `type`'s dictionary
/// offset points at the type's `tp_dict`), and the type's caches are told.
pub(crate) fn set_class_attribute(
    class: &Bound<'_, PyType>,
    name: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = class.py();
    let name = PyString::new(py, name);
    // SAFETY: the GIL is held; all three are live objects; the type was made just now and
    // nothing has looked it up or cached its attributes yet, and `PyType_Modified` clears what
    // CPython may have cached all the same.
    unsafe {
        if ffi::PyObject_GenericSetAttr(class.as_ptr(), name.as_ptr(), value.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        ffi::PyType_Modified(class.as_type_ptr());
    }
    Ok(())
}

/// A new instance of `class` (a new reference) holding `payload`; `None` when there is no
/// memory for it (and `payload` is dropped).
///
/// # Safety
///
/// `class` was made by [`new_type::<T>`].
// Always inlined: the payload is then written straight from the caller's value, with no
// intermediate move (a copy of it, for ferry's payload).
#[inline(always)]
pub(crate) unsafe fn new_instance<'py, T>(
    py: Python<'py>,
    class: &Bound<'py, PyType>,
    payload: T,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: the GIL is held. The memory is fresh, large and aligned enough for `Instance<T>`
    // (checked at compile time), the layout `class`'s instances have (the contract); the
    // payload is written before the object is handed out, and `PyObject_Init` sets the header
    // (type, reference count 1, and a reference to the heap type, which `dealloc_instance`
    // gives back).
    unsafe {
        let object = ffi::PyObject_Malloc(Instance::<T>::SIZE).cast::<Instance<T>>();
        if object.is_null() {
            return None;
        }
        (&raw mut (*object).payload).write(payload);
        ffi::PyObject_Init(object.cast(), class.as_type_ptr());
        Some(Bound::from_owned_ptr(py, object.cast()))
    }
}

/// The payload of `object`, borrowed.
///
/// # Safety
///
/// `object` is an instance of a type made by [`new_type::<T>`] (so [`new_instance`] wrote its
/// payload), alive for `'a`.
#[inline]
pub(crate) unsafe fn payload<'a, T>(object: *mut ffi::PyObject) -> &'a T {
    // SAFETY: per the contract, an `Instance<T>` whose payload is initialised and only read
    // until `dealloc_instance`, which cannot run while the object lives.
    unsafe { &(*object.cast::<Instance<T>>()).payload }
}

/// The `Py_tp_dealloc` of a type made by [`new_type::<T>`]'s body: moves the payload out and
/// hands it to `release` (which catches its own panics: one would cross into CPython), frees
/// the memory and releases the instance's reference to its heap type, with the error indicator
/// put aside ([`with_error_indicator_aside`]).
///
/// # Safety
///
/// CPython's `tp_dealloc` contract: the GIL is held, and `object` is an instance of a type made
/// by [`new_type::<T>`] whose reference count reached zero, deallocated once.
#[inline]
pub(crate) unsafe fn dealloc_instance<T>(
    object: *mut ffi::PyObject,
    release: impl FnOnce(Python<'_>, T),
) {
    // SAFETY: per the contract, the GIL is held and `object` is an `Instance<T>` whose payload
    // `new_instance` wrote and nobody reads afterwards, so it is moved out once; the memory
    // came from `PyObject_Malloc` and the instance holds a reference to its heap type.
    unsafe {
        with_error_indicator_aside(|| {
            let class = ffi::Py_TYPE(object);
            let payload = (&raw mut (*object.cast::<Instance<T>>()).payload).read();
            release(Python::assume_attached(), payload);
            ffi::PyObject_Free(object.cast());
            ffi::Py_DECREF(class.cast());
        });
    }
}

// Built-in functions.

/// A method definition in a `static`: CPython keeps a pointer to it in the function object.
pub(crate) struct StaticMethodDef(pub(crate) ffi::PyMethodDef);

// SAFETY: a definition is only ever read (it has no interior mutability), and so are the static
// C strings and the code its pointers reach, so threads share nothing mutable.
unsafe impl Sync for StaticMethodDef {}

/// A built-in function made from `def` for `module` (`PyCMethod_New`), whose `__module__` is
/// the module's name.
///
/// # Safety
///
/// `def`'s function has the signature its flags name.
pub(crate) unsafe fn new_function<'py>(
    module: &Bound<'py, PyModule>,
    def: &'static StaticMethodDef,
) -> PyResult<Bound<'py, PyAny>> {
    let py = module.py();
    let name = module.name()?;
    // SAFETY: the GIL is held; the module and its name are live (the function keeps its own
    // references); the definition is a static that CPython only reads, valid for the life of
    // the process as the function object requires, and its function has the signature of its
    // flags (the contract).
    unsafe {
        let function = ffi::PyCMethod_New(
            (&raw const def.0).cast_mut(),
            module.as_ptr(),
            name.as_ptr(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, function)
    }
}

// The fast calling convention's arguments (`METH_FASTCALL | METH_KEYWORDS`): the positional
// values, then one value per name in `kwnames`, keyword names matched by hand.

/// The one argument of a method whose only parameter is `name` (given by position or by
/// keyword); `None` when absent or `None`.
///
/// # Safety
///
/// The GIL is held; `args` holds `nargs` positional values then one per name in `kwnames` (a
/// tuple of strings, or NULL when there are none), all live for `'a`.
pub(crate) unsafe fn one_argument<'a, 'py>(
    py: Python<'py>,
    function: &str,
    name: &'static CStr,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Option<Borrowed<'a, 'py, PyAny>>> {
    if nargs > 1 {
        return Err(positional_count(
            &format!("{function}() takes at most one argument"),
            nargs,
        ));
    }
    // SAFETY: per the contract, the positional value when there is one.
    let mut found = (nargs == 1).then(|| unsafe { Borrowed::from_ptr(py, *args) });
    if !kwnames.is_null() {
        // SAFETY: per the contract, `kwnames` is a live tuple of names whose values follow the
        // positional ones; items are borrowed for the call.
        unsafe {
            for i in 0..ffi::PyTuple_Size(kwnames) {
                keyword_slot(py, function, &[name], ffi::PyTuple_GetItem(kwnames, i))?;
                if found.is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "{function}() got multiple values for argument '{}'",
                        name.to_string_lossy()
                    )));
                }
                found = Some(Borrowed::from_ptr(py, *args.offset(nargs + i)));
            }
        }
    }
    Ok(found.filter(|value| !value.is_none()))
}

/// The `TypeError` for a call with the wrong number of positional arguments.
#[cold]
#[inline(never)]
pub(crate) fn positional_count(takes: &str, given: ffi::Py_ssize_t) -> PyErr {
    PyTypeError::new_err(format!("{takes} ({given} positional given)"))
}

/// The keyword values of a call, one slot per name in `names` (None where absent or `None`).
///
/// # Safety
///
/// The GIL is held; `kwnames` is NULL or a live tuple of strings, and `values` holds one live
/// value per name in it, all live for `'a`.
#[inline]
pub(crate) unsafe fn keywords<'a, 'py, const N: usize>(
    py: Python<'py>,
    function: &str,
    names: &[&CStr; N],
    interned: &PyOnceLock<[Py<PyString>; N]>,
    values: *const *mut ffi::PyObject,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Borrowed<'a, 'py, PyAny>>; N]> {
    let mut found: [Option<Borrowed<'a, 'py, PyAny>>; N] = [None; N];
    if kwnames.is_null() {
        return Ok(found);
    }
    // Names a caller spelled out are these interned strings themselves, so most lookups are
    // pointer comparisons.
    let interned = interned.get_or_init(py, || {
        names.map(|name| PyString::intern(py, &name.to_string_lossy()).unbind())
    });
    // SAFETY: per the contract, `kwnames` is a live tuple and `values` holds one live value per
    // name; items are borrowed for the call.
    unsafe {
        for i in 0..ffi::PyTuple_Size(kwnames) {
            let name = ffi::PyTuple_GetItem(kwnames, i);
            let slot = match interned.iter().position(|n| n.as_ptr() == name) {
                Some(slot) => slot,
                None => keyword_slot(py, function, names, name)?,
            };
            let value = Borrowed::from_ptr(py, *values.offset(i));
            found[slot] = (!value.is_none()).then_some(value);
        }
    }
    Ok(found)
}

/// The index in `names` of a keyword name that is not one of the interned strings.
///
/// # Safety
///
/// The GIL is held and `name` is a live object.
unsafe fn keyword_slot(
    py: Python<'_>,
    function: &str,
    names: &[&CStr],
    name: *mut ffi::PyObject,
) -> PyResult<usize> {
    // SAFETY: per the contract; the comparison is only made on a `str`.
    let slot = unsafe {
        (ffi::PyUnicode_Check(name) != 0)
            .then(|| {
                names
                    .iter()
                    .position(|n| ffi::PyUnicode_CompareWithASCIIString(name, n.as_ptr()) == 0)
            })
            .flatten()
    };
    slot.ok_or_else(|| {
        // SAFETY: per the contract, a live object.
        let name = unsafe { Borrowed::from_ptr(py, name) };
        PyTypeError::new_err(format!(
            "{function}() got an unexpected keyword argument {:?}",
            &*name
        ))
    })
}

/// `value` as a tuple of two non-negative integers that fit `u32` (DLPack's `max_version`);
/// `None` for anything else.
#[inline]
pub(crate) fn u32_pair(value: &Borrowed<'_, '_, PyAny>) -> Option<(u32, u32)> {
    let py = value.py();
    let tuple = value.as_ptr();
    let part = |i: ffi::Py_ssize_t| {
        // SAFETY: the GIL is held and `tuple` is a live tuple with two items (checked below);
        // the item is borrowed from it, and a failed conversion's error is cleared.
        let number = unsafe { ffi::PyLong_AsLong(ffi::PyTuple_GetItem(tuple, i)) };
        if number == -1 && PyErr::take(py).is_some() {
            return None;
        }
        u32::try_from(number).ok()
    };
    // SAFETY: the GIL is held and `tuple` is live; the size is read only from a tuple.
    let pair = unsafe { ffi::PyTuple_Check(tuple) != 0 && ffi::PyTuple_Size(tuple) == 2 };
    pair.then(|| Some((part(0)?, part(1)?))).flatten()
}
