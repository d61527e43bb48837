//! Rust ↔ Python hand-off in an embedded interpreter, with the real NumPy and PyTorch of the
//! provisioned venv: candle, burn and tch tensors reach `numpy.from_dlpack` and
//! `torch.from_dlpack` without copies, and Python arrays come back as framework tensors.

use std::sync::Mutex;

use ferry::python::{from_python, live_exports, tensor_from_python, tensor_to_python, to_python};
use ferry::{HostArray, ToHost};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// One test at a time drives the interpreter, so export counts are this test's own.
static PYTHON: Mutex<()> = Mutex::new(());

/// Runs `f` with the interpreter started, `ferry` importable and the venv's packages on the
/// path (`FERRY_PYTHON_SITE`, which `cargo xtask ci` sets, or the default cache folder).
pub(crate) fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> PyResult<R>) -> R {
    let _guard = PYTHON.lock().unwrap_or_else(|e| e.into_inner());
    Python::attach(|py| {
        let sys = py.import("sys")?;
        if !sys.getattr("modules")?.contains("ferry")? {
            if let Some(site) = site_packages() {
                sys.getattr("path")?.call_method1("insert", (0, site))?;
            }
            ferry::python::add_module(py)?;
        }
        if let Err(e) = py.import("numpy").and_then(|_| py.import("torch")) {
            panic!(
                "NumPy and PyTorch are needed: run `cargo xtask ci` (it provisions them) or set FERRY_PYTHON_SITE to a site-packages folder that has them: {e}"
            );
        }
        f(py)
    })
    .unwrap_or_else(|e: PyErr| panic!("python: {e}"))
}

fn site_packages() -> Option<String> {
    if let Ok(site) = std::env::var("FERRY_PYTHON_SITE") {
        return Some(site);
    }
    let cache = std::env::var_os("FERRY_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/ferry"))
        })?;
    let lib = cache.join("libtorch-2.9.0/venv/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("site-packages"))
        .find(|site| site.is_dir())
        .map(|site| site.to_string_lossy().into_owned())
}

/// Checks, in Python, that `obj` seen by NumPy and by PyTorch is `host`'s memory with its
/// shape, strides and values.
fn check_shared(py: Python<'_>, obj: &Bound<'_, PyAny>, host: &HostArray) -> PyResult<()> {
    let locals = PyDict::new(py);
    locals.set_item("obj", obj)?;
    locals.set_item("ptr", host.as_ptr() as usize)?;
    locals.set_item("shape", host.shape().to_vec())?;
    locals.set_item("strides", host.strides().to_vec())?;
    locals.set_item(
        "values",
        host.as_standard_layout()
            .unwrap()
            .to_array::<f32>()
            .unwrap()
            .into_raw_vec_and_offset()
            .0,
    )?;
    py.run(
        cr#"
import numpy as np, torch
a = np.from_dlpack(obj)
t = torch.from_dlpack(obj)
assert a.__array_interface__["data"][0] == ptr == t.data_ptr(), (hex(ptr), a.__array_interface__, t.data_ptr())
assert list(a.shape) == shape and list(t.shape) == shape
assert [s // a.itemsize for s in a.strides] == strides and list(t.stride()) == strides
assert a.ravel().tolist() == values and t.flatten().tolist() == values
assert not a.flags.writeable
"#,
        Some(&locals),
        None,
    )
}

#[cfg(feature = "candle")]
#[test]
fn candle_tensors_reach_numpy_and_torch_without_copies() {
    let t = candle_core::Tensor::arange(0f32, 24., &candle_core::Device::Cpu)
        .unwrap()
        .reshape((4, 6))
        .unwrap();
    for (name, view) in [
        ("contiguous", t.clone()),
        ("transposed", t.t().unwrap()),
        ("narrowed", t.narrow(1, 2, 3).unwrap()),
        (
            "broadcast",
            t.narrow(0, 1, 1).unwrap().broadcast_as((3, 6)).unwrap(),
        ),
    ] {
        with_python(|py| {
            let before = live_exports();
            let obj = tensor_to_python::<ferry::Candle>(py, &view)?;
            check_shared(py, obj.as_any(), &view.to_host().unwrap())?;
            drop(obj);
            py.run(c"import gc; gc.collect()", None, None)?;
            assert_eq!(
                live_exports(),
                before,
                "candle {name}: every export released"
            );
            Ok(())
        });
    }
}

#[cfg(feature = "burn")]
#[test]
fn burn_tensors_reach_numpy_and_torch_without_copies() {
    use burn::tensor::{Device, Tensor, TensorData};
    let t = Tensor::<2>::from_data(
        TensorData::new((0..24).map(|i| i as f32).collect::<Vec<_>>(), [4, 6]),
        &Device::flex(),
    );
    for view in [t.clone(), t.clone().transpose(), t.clone().narrow(1, 2, 3)] {
        with_python(|py| {
            let obj = tensor_to_python::<ferry::Burn>(py, &view)?;
            check_shared(py, obj.as_any(), &view.to_host().unwrap())
        });
    }
}

#[cfg(feature = "tch")]
#[test]
fn tch_tensors_reach_numpy_and_torch_without_copies() {
    // Each the only handle on its storage (one shared with a live tensor is copied).
    let base = || tch::Tensor::arange(24, (tch::Kind::Float, tch::Device::Cpu)).reshape([4, 6]);
    // (Made in a statement of its own: its temporaries, the bases, are dropped at its end.)
    let views = [base(), base().tr(), base().narrow(0, 1, 2).narrow(1, 2, 3)];
    for view in views {
        with_python(|py| {
            let obj = tensor_to_python::<ferry::Tch>(py, &view)?;
            check_shared(py, obj.as_any(), &view.to_host().unwrap())
        });
    }
}

/// A transposed PyTorch tensor and a NumPy slice made in Python.
fn python_arrays(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let locals = PyDict::new(py);
    py.run(
        cr#"
import numpy as np, torch
t = torch.arange(12, dtype=torch.float32).reshape(3, 4).T
a = np.arange(20, dtype=np.float32).reshape(4, 5)[:, 1:4]
"#,
        Some(&locals),
        None,
    )?;
    Ok((
        locals.get_item("t")?.unwrap(),
        locals.get_item("a")?.unwrap(),
    ))
}

#[test]
fn numpy_arrays_import_without_copies_and_tensors_as_one() {
    with_python(|py| {
        let (t, a) = python_arrays(py)?;
        // A PyTorch tensor is copied (PyTorch's export keeps the tensor, not its memory):
        // row-major, into memory of ferry's own.
        let ptr: usize = t.call_method0("data_ptr")?.extract()?;
        let from_torch = from_python(&t)?;
        assert_eq!(from_torch.shape(), [4, 3]);
        assert_eq!(from_torch.strides(), [3, 1]);
        assert_eq!(from_torch.copies(), 1);
        assert_ne!(from_torch.as_ptr() as usize, ptr);
        assert_eq!(
            from_torch.to_array::<f32>().unwrap(),
            ferry::ndarray::arr2(&[[0f32, 4., 8.], [1., 5., 9.], [2., 6., 10.], [3., 7., 11.]])
                .into_dyn()
        );
        let from_numpy = from_python(&a)?;
        assert_eq!(from_numpy.strides(), [5, 1]);
        assert_eq!(
            from_numpy
                .to_array::<f32>()
                .unwrap()
                .into_raw_vec_and_offset()
                .0[..3],
            [1.0, 2.0, 3.0]
        );
        // A ferry object from Rust comes back as the same array.
        let back = from_python(to_python(py, from_numpy.clone())?.as_any())?;
        assert_eq!(back.as_ptr(), from_numpy.as_ptr());
        Ok(())
    });
}

#[cfg(feature = "candle")]
#[test]
fn python_arrays_become_candle_tensors() {
    with_python(|py| {
        let (t, a) = python_arrays(py)?;
        let c = tensor_from_python::<ferry::Candle>(&t, &candle_core::Device::Cpu)?;
        assert_eq!(c.dims(), [4, 3]);
        assert_eq!(
            c.to_vec2::<f32>().unwrap(),
            [[0., 4., 8.], [1., 5., 9.], [2., 6., 10.], [3., 7., 11.]]
        );
        let c = tensor_from_python::<ferry::Candle>(&a, &candle_core::Device::Cpu)?;
        assert_eq!(c.to_vec2::<f32>().unwrap()[3], [16., 17., 18.]);
        Ok(())
    });
}

#[cfg(feature = "burn")]
#[test]
fn python_arrays_become_burn_tensors() {
    with_python(|py| {
        let (t, _) = python_arrays(py)?;
        let b = tensor_from_python::<ferry::Burn<2>>(&t, &burn::tensor::Device::flex())?;
        assert_eq!(b.dims(), [4, 3]);
        assert_eq!(
            b.into_data().try_to_vec::<f32>().unwrap(),
            [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
        );
        Ok(())
    });
}

/// A PyTorch tensor becomes a tch tensor of its own: the import is a copy, which libtorch then
/// owns (written by libtorch, it never changes the PyTorch tensor, nor the PyTorch tensor it).
#[cfg(feature = "tch")]
#[test]
fn python_arrays_become_tch_tensors_of_their_own() {
    with_python(|py| {
        let (t, a) = python_arrays(py)?;
        let ptr: usize = t.call_method0("data_ptr")?.extract()?;
        let x = tensor_from_python::<ferry::Tch>(&t, &tch::Device::Cpu)?;
        assert_eq!(x.size(), [4, 3]);
        assert_ne!(x.data_ptr() as usize, ptr, "tch holds a copy");
        assert_eq!(f64::try_from(x.sum(tch::Kind::Double)).unwrap(), 66.0);
        let _ = x.shallow_clone().fill_(0.0);
        t.call_method1("add_", (1.0,))?;
        assert_eq!(f64::try_from(x.sum(tch::Kind::Double)).unwrap(), 0.0);
        // NumPy's memory, which NumPy lets a consumer write (DLPack's contract), is handed over.
        let y = tensor_from_python::<ferry::Tch>(&a, &tch::Device::Cpu)?;
        assert_eq!(f64::try_from(y.sum(tch::Kind::Double)).unwrap(), 114.0);
        Ok(())
    });
}

#[test]
fn embedded_python_imports_ferry() {
    with_python(|py| {
        let locals = PyDict::new(py);
        py.run(
            cr#"
import ferry, numpy as np
x = np.arange(6.0).reshape(2, 3)
h = ferry.from_dlpack(x.T)
ok = h.shape == (3, 2) and h.strides == (1, 3) and np.from_dlpack(h).tolist() == x.T.tolist()
"#,
            Some(&locals),
            None,
        )?;
        assert!(locals.get_item("ok")?.unwrap().extract::<bool>()?);
        Ok(())
    });
}

#[test]
fn read_only_arrays_with_a_copy_in_their_past_never_leave_writable() {
    with_python(|py| {
        let copied = HostArray::from_vec(vec![4], vec![1f32, 2., 3., 4.])
            .unwrap()
            .to_contiguous(ferry::CopyPolicy::Always)
            .unwrap()
            .into_read_only();
        assert_eq!(copied.copies(), 1);
        let obj = to_python(py, copied.clone())?;
        let locals = PyDict::new(py);
        locals.set_item("obj", &obj)?;
        locals.set_item("ptr", copied.as_ptr() as usize)?;
        py.run(
            cr#"
import numpy as np, torch
legacy = torch.utils.dlpack.from_dlpack(obj.__dlpack__())  # a legacy capsule has no READ_ONLY
assert legacy.data_ptr() != ptr, "legacy consumers get a writable copy"
versioned = np.from_dlpack(obj)
assert not versioned.flags.writeable and versioned.__array_interface__["data"][0] == ptr
"#,
            Some(&locals),
            None,
        )
    });
}

#[test]
fn python_producers_are_released_from_threads_without_the_gil() {
    let (array, alive) = with_python(|py| {
        let locals = PyDict::new(py);
        py.run(
            cr#"
import numpy as np, weakref
a = np.arange(1000.0)
alive = weakref.ref(a)
"#,
            Some(&locals),
            None,
        )?;
        let a = locals.get_item("a")?.unwrap();
        let array = from_python(&a)?;
        locals.del_item("a")?;
        Ok((array, locals.get_item("alive")?.unwrap().unbind()))
    });
    // The last view drops on a thread that has never held the GIL; NumPy's deleter takes it.
    std::thread::spawn(move || drop(array)).join().unwrap();
    with_python(|py| {
        py.run(c"import gc; gc.collect()", None, None)?;
        assert!(
            alive.bind(py).call0()?.is_none(),
            "NumPy's array was released"
        );
        Ok(())
    });
}

/// PyTorch's DLPack export keeps only the tensor alive: before round 2 `t.set_(other)` here freed
/// the 4 MiB the array reads (NumPy's `from_dlpack(t)` segfaults on the same steps), and a
/// growing `resize_` reallocated it. An import is now a copy made at once: `set_`, `resize_`,
/// `share_memory_` and in-place writes of the source leave the array's memory and values as
/// they were (round 3, hole 11: `share_memory_()` freed the memory under the import on
/// 5d4584c).
#[test]
fn torch_imports_are_copies_the_source_cannot_free_or_change() {
    let arrays = with_python(|py| {
        let locals = PyDict::new(py);
        py.run(
            cr#"
import torch
t = torch.arange(1 << 20, dtype=torch.float32)
u = torch.arange(4096.0)
w = torch.arange(1 << 20, dtype=torch.float32)
b = torch.tensor([True, False, True])
"#,
            Some(&locals),
            None,
        )?;
        let get = |name: &str| from_python(&locals.get_item(name).unwrap().unwrap());
        let (array, resized, shared, bools) = (get("t")?, get("u")?, get("w")?, get("b")?);
        assert_eq!(array.copies(), 1);
        let valid = bools.view::<bool>().unwrap();
        py.run(
            cr#"
import gc
t.set_(torch.zeros(3))
gc.collect()
reuse = [torch.full((1 << 20,), 7.0) for _ in range(4)]
u.resize_(1 << 20)
u.fill_(-1.0)
w.share_memory_()
w.fill_(-1.0)
b.view(torch.uint8).fill_(2)
"#,
            Some(&locals),
            None,
        )?;
        let expected: Vec<f32> = (0..1 << 20).map(|i| i as f32).collect();
        for kept in [&array, &shared] {
            let values: Vec<f32> = kept.view::<f32>().unwrap().iter().copied().collect();
            assert_eq!(values, expected);
        }
        assert_eq!(resized.view::<f32>().unwrap()[[4095]], 4095.0);
        assert_eq!(
            valid.iter().copied().collect::<Vec<_>>(),
            [true, false, true]
        );
        drop(valid);
        Ok((array, resized, shared, bools))
    });
    std::thread::spawn(move || drop(arrays)).join().unwrap();
    with_python(|py| py.run(c"import gc; gc.collect()", None, None));
}

/// Round 3, hole 10: a PyTorch import's Python reference dropped on a thread without the GIL
/// went to pyo3's deferred pool, which ferry's own hand-written entry points never emptied: on
/// 5d4584c five 64 MiB imports dropped that way kept 320 MiB alive after `ferry.from_dlpack`
/// ran. An import holds no Python reference now (it is a copy), and ferry's entry points run
/// attached to pyo3, which empties that pool. (All of it happens while this thread stays
/// attached to pyo3: pyo3 empties its pool when a thread attaches.)
#[test]
fn round3_hole10_references_dropped_without_the_gil_go_on_the_next_call() {
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    with_python(|py| {
        let locals = PyDict::new(py);
        py.run(c"import ferry, numpy, torch", Some(&locals), None)?;
        let before = rss();
        let mut arrays = Vec::new();
        for _ in 0..5 {
            // 64 MiB each: above glibc's largest mmap threshold, so freeing returns it.
            py.run(
                c"t = torch.ones(16 << 20, dtype=torch.float32)",
                Some(&locals),
                None,
            )?;
            arrays.push(from_python(&locals.get_item("t")?.unwrap())?);
            py.run(c"del t", Some(&locals), None)?;
        }
        assert!(
            rss() > before + (300 << 20),
            "the imports hold their memory"
        );
        // Dropped on another thread, which holds the GIL only while PyTorch's deleter takes it.
        // This thread lets it go with CPython's own call, not pyo3's `detach`, whose return
        // would empty pyo3's pool itself.
        // SAFETY: this thread holds the GIL (with_python); it takes it back below, before any
        // other Python call.
        let state = unsafe { pyo3::ffi::PyEval_SaveThread() };
        let dropped = std::thread::spawn(move || drop(arrays)).join();
        // SAFETY: the state `PyEval_SaveThread` returned, on the same thread.
        unsafe { pyo3::ffi::PyEval_RestoreThread(state) };
        dropped.unwrap();
        py.run(c"ferry.from_dlpack(numpy.zeros(1))", Some(&locals), None)?;
        let after = rss();
        assert!(
            after < before + (100 << 20),
            "ferry's next call released the imports: {} MiB more than before",
            (after.saturating_sub(before)) >> 20
        );
        Ok(())
    });
}

/// Issue 14, hole 1: re-importing ferry's own Python export (`to_python(x.clone())`, then
/// `__dlpack__`, then `from_python`) handed back a uniquely owned wrapper on 70a5fa0, so
/// `view_mut` wrote memory `x` still read. The re-import of a versioned capsule now shares `x`'s
/// memory on `x`'s own owner (not writable while `x` holds it), a legacy capsule (which cannot
/// say READ_ONLY) is a copy; NumPy and NumPy-made arrays are shared too.
#[test]
fn hole1_reimported_python_export_is_not_a_second_writer() {
    with_python(|py| {
        let x = HostArray::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        let obj = to_python(py, x.clone())?;
        for kwargs in ["max_version=(1, 3)", ""] {
            let locals = PyDict::new(py);
            locals.set_item("obj", &obj)?;
            let capsule = py.eval(
                &std::ffi::CString::new(format!("obj.__dlpack__({kwargs})")).unwrap(),
                None,
                Some(&locals),
            )?;
            let mut w = from_python(&capsule)?;
            let view = x.view::<f32>().unwrap();
            if kwargs.is_empty() {
                // A legacy capsule cannot say READ_ONLY, and `x` still holds the memory: it
                // goes as a copy.
                assert_ne!(w.as_ptr(), x.as_ptr(), "legacy: a copy");
            } else {
                assert_eq!(w.as_ptr(), x.as_ptr(), "{kwargs}: the same memory");
                assert!(
                    !w.owner_is_unique(),
                    "{kwargs}: x's own owner, which x still holds"
                );
            }
            if !kwargs.is_empty() {
                assert!(
                    matches!(w.view_mut::<f32>(), Err(ferry::Error::NotWritable { .. })),
                    "{kwargs}: a second writer while x is read"
                );
            }
            assert_eq!(view[[1, 2]], 5.0);
        }
        // Memory a NumPy array owns is NumPy's: shared, not writable without the opt-in.
        let locals = PyDict::new(py);
        py.run(
            c"import numpy as np; a = np.arange(4.0)",
            Some(&locals),
            None,
        )?;
        let mut from_numpy = from_python(&locals.get_item("a")?.unwrap())?;
        assert_eq!(from_numpy.access(), ferry::Access::Shared);
        assert!(from_numpy.view_mut::<f64>().is_err());
        Ok(())
    });
}
