//! Regression tests for the soundness holes of the audit (issue 14), one per hole, each named
//! after it. Each failed on 70a5fa0 (a second writable handle, a valgrind error, a SIGSEGV or a
//! SIGABRT) and must keep passing; `cargo xtask valgrind` runs the ones that need no libtorch.

use ferry::ndarray::{ArcArray, IxDyn};
use ferry::{Access, CopyPolicy, DType, DTypeDesc, Error, HostArray, MemoryKind, RawParts};
use ferry_tests::producer::{Producer, Spec, bytes_of};

/// Hole 4: a broadcast array of a raw (untyped) dtype whose logical size overflows the address
/// space. 70a5fa0 accepted it (the extent is one element) and its copy computed `n * size`
/// unchecked, allocated a few bytes and wrote 2^62 elements into them (SIGSEGV).
#[test]
fn hole4_raw_dtype_broadcast_whose_size_overflows_is_refused() {
    let complex_half = DType::from_desc(DTypeDesc {
        code: DTypeDesc::COMPLEX,
        bits: 32,
        lanes: 1,
    });
    let mut one = vec![0u8; 4];
    let parts = RawParts {
        data: one.as_mut_ptr().cast_const(),
        dtype: complex_half,
        shape: vec![(1 << 62) + 1],
        strides: vec![0],
        memory: MemoryKind::Cpu,
        access: Access::ReadOnly,
    };
    // SAFETY: the only element the layout reaches is the 4-byte buffer, alive for the test.
    let made = unsafe { HostArray::from_raw_parts(parts, ferry::dlpack::owner(())) };
    let err = match made {
        Ok(a) => a.to_contiguous(CopyPolicy::Always).unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, Error::LayoutOverflow { .. }), "{err}");

    // The same through DLPack: the importer refuses it before any copy can be asked for.
    let producer = Producer::default();
    let mut spec = Spec::f32_row_major(&[(1 << 62) + 1]);
    spec.strides = Some(vec![0]);
    spec.dtype = (5, 32, 1); // complex, 32 bits: a raw dtype
    // SAFETY: a fresh pointer from the test producer.
    let imported =
        unsafe { HostArray::from_dlpack_versioned(producer.versioned(&spec, bytes_of(&[0f32]))) };
    assert!(
        matches!(imported, Err(Error::LayoutOverflow { .. })),
        "{imported:?}"
    );
    assert_eq!(producer.deleted(), 1);
}

/// Typed broadcasts whose copy cannot be allocated are an error, not an abort.
#[test]
fn hole4_copies_that_cannot_be_allocated_are_errors() {
    let one = HostArray::from_vec(vec![1], vec![7u8]).unwrap();
    let parts = RawParts {
        data: one.as_ptr(),
        dtype: DType::U8,
        shape: vec![1 << 60],
        strides: vec![0],
        memory: MemoryKind::Cpu,
        access: Access::ReadOnly,
    };
    // SAFETY: the only element the layout reaches is `one`'s byte, kept alive by its keep-alive.
    let huge = unsafe { HostArray::from_raw_parts(parts, one.keep_alive()) }.unwrap();
    let err = huge.to_contiguous(CopyPolicy::Always).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    let err = huge.cast::<f64>().unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfMemory { .. } | Error::LayoutOverflow { .. }
        ),
        "{err}"
    );
}

/// Hole 5: 70a5fa0 kept a uniquely held `ArcArray` as the owner and handed it out through the
/// public `owner()`; a clone of it then read the memory `view_mut` wrote.
#[test]
fn hole5_arc_array_owner_is_not_handed_out() {
    let unique: ArcArray<f32, IxDyn> = ArcArray::zeros(IxDyn(&[2, 3]));
    let address = unique.as_ptr();
    let mut owned = HostArray::from_arc_array(unique);
    assert_eq!(owned.as_ptr(), address.cast(), "no copy");
    assert_eq!(owned.access(), Access::Exclusive);
    // What is handed out keeps the memory alive but grants no access to it, and while it is
    // held, ferry refuses to write.
    let keep = owned.keep_alive();
    assert!(keep.downcast_ref::<ArcArray<f32, IxDyn>>().is_none());
    assert!(keep.downcast_ref::<ferry::ndarray::ArrayD<f32>>().is_none());
    assert!(matches!(
        owned.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    drop(keep);
    owned.view_mut::<f32>().unwrap()[[1, 2]] = 5.0;
    assert_eq!(owned.view::<f32>().unwrap()[[1, 2]], 5.0);

    // A shared ArcArray stays read-only, and the other handle copies before it writes.
    let mut other: ArcArray<f32, IxDyn> = ArcArray::zeros(IxDyn(&[2]));
    let mut shared = HostArray::from_arc_array(other.clone());
    assert!(shared.is_read_only());
    assert!(shared.view_mut::<f32>().is_err());
    other[[0]] = 9.0;
    assert_eq!(shared.view::<f32>().unwrap()[[0]], 0.0);
}

/// Hole 6: 70a5fa0 imported a foreign DLPack tensor as writable and exclusive, so `view_mut`
/// wrote memory its producer still used.
#[test]
fn hole6_foreign_dlpack_memory_is_not_writable_without_unsafe_opt_in() {
    let producer = Producer::default();
    let spec = Spec::f32_row_major(&[2, 3]);
    // SAFETY: fresh pointers from the test producer.
    let mut shared = unsafe {
        HostArray::from_dlpack_versioned(producer.versioned(&spec, bytes_of(&[1f32; 6])))
    }
    .unwrap();
    assert_eq!(shared.access(), Access::Shared);
    assert!(
        !shared.is_read_only(),
        "not read-only: its producer may write it"
    );
    // Lent (or handed over by one of two handles) while ferry still reads it: READ_ONLY.
    assert!(shared.to_dlpack().is_read_only());
    assert!(shared.clone().into_dlpack().is_read_only());
    assert!(matches!(
        shared.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    // The caller may opt in when it knows the producer no longer uses the memory.
    // SAFETY: the test producer never touches its buffer after handing it over.
    let mut mine = unsafe { shared.assume_exclusive() }.unwrap();
    mine.view_mut::<f32>().unwrap()[[0, 0]] = 3.0;
    assert_eq!(mine.view::<f32>().unwrap()[[0, 0]], 3.0);

    // A producer that copied for this exchange (IS_COPIED) hands the memory over.
    let mut copied = spec.clone();
    copied.flags = ferry::dlpack::DlpackFlags::IS_COPIED.bits();
    // SAFETY: as above.
    let mut given = unsafe {
        HostArray::from_dlpack_versioned(producer.versioned(&copied, bytes_of(&[1f32; 6])))
    }
    .unwrap();
    given.view_mut::<f32>().unwrap()[[1, 2]] = 4.0;

    // READ_ONLY memory cannot be written even with the opt-in.
    let mut read_only = spec.clone();
    read_only.flags = ferry::dlpack::DlpackFlags::READ_ONLY.bits();
    // SAFETY: as above.
    let frozen = unsafe {
        HostArray::from_dlpack_versioned(producer.versioned(&read_only, bytes_of(&[1f32; 6])))
    }
    .unwrap();
    // SAFETY: refused before anything could be written.
    assert!(unsafe { frozen.assume_exclusive() }.is_err());

    // Legacy tensors carry no flags: shared.
    // SAFETY: as above.
    let legacy =
        unsafe { HostArray::from_dlpack_legacy(producer.legacy(&spec, bytes_of(&[1f32; 6]))) }
            .unwrap();
    assert_eq!(legacy.access(), Access::Shared);
    drop((mine, given, legacy));
    assert_eq!(producer.deleted(), 4);
}

/// Hole 1 (core half): an export ferry re-imports comes back sharing the original's owner, so
/// neither side can write while the other reads.
#[test]
fn hole1_reimported_own_export_is_not_a_second_writer() {
    let mut x = HostArray::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.]).unwrap();
    for export in [x.to_dlpack(), x.to_dlpack_legacy(), x.clone().into_dlpack()] {
        let mut back = export.into_host().unwrap();
        assert_eq!(back.as_ptr(), x.as_ptr());
        assert!(matches!(
            back.view_mut::<f32>(),
            Err(Error::NotWritable { .. })
        ));
        assert!(matches!(
            x.view_mut::<f32>(),
            Err(Error::NotWritable { .. })
        ));
    }
    // Once every other handle is gone, the original is writable again.
    x.view_mut::<f32>().unwrap()[[0, 0]] = 9.0;
}

/// Hole 9: 70a5fa0's `reversed_axes` built a column-major layout of packed fp4 elements, which
/// `to_contiguous` then met with a panic ("sub-byte arrays are row-major") and DLPack export
/// described wrongly.
#[test]
fn hole9_reversed_axes_of_packed_subbyte_arrays_is_refused() {
    let fp4 = DType::Raw(ferry::raw_dtypes::FLOAT4_E2M1FN);
    let a = HostArray::from_bytes(vec![2, 4], fp4, &[0x21, 0x43, 0x65, 0x87]).unwrap();
    let err = a.reversed_axes().unwrap_err();
    assert!(matches!(err, Error::UnsupportedLayout { .. }), "{err}");
    // Axes of length 1 change nothing: allowed.
    let row = HostArray::from_bytes(vec![1, 4], fp4, &[0x21, 0x43]).unwrap();
    let t = row.reversed_axes().unwrap();
    assert_eq!(t.shape(), [4, 1]);
    assert_eq!(
        t.to_contiguous(CopyPolicy::Always)
            .unwrap()
            .as_bytes()
            .unwrap(),
        [0x21, 0x43]
    );
}

/// Hole 3: candle does not check a raw buffer's length for fp4 (`from_raw_buffer(&[0], F4,
/// [1 << 24])`); 70a5fa0 skipped its own bounds check for sub-byte dtypes and read megabytes
/// past the 1-byte storage.
#[cfg(feature = "candle")]
#[test]
fn hole3_candle_subbyte_view_past_its_storage_is_refused() {
    use candle_core::{DType as C, Device, Tensor};
    for (dtype, bits) in [(C::F4, 4), (C::F6E2M3, 6), (C::F6E3M2, 6)] {
        let t = Tensor::from_raw_buffer(&[0], dtype, &[1 << 24], &Device::Cpu).unwrap();
        let err = ferry::candle_adapter::to_host(&t).unwrap_err();
        assert!(matches!(err, Error::OutsideStorage { .. }), "{err}");
        // A buffer that holds exactly the elements is fine.
        let n = 8usize;
        let bytes = vec![0u8; n * bits / 8];
        let ok = Tensor::from_raw_buffer(&bytes, dtype, &[n], &Device::Cpu).unwrap();
        let host = ferry::candle_adapter::to_host(&ok).unwrap();
        assert_eq!(host.nbytes(), bytes.len());
        // One element more than the bytes hold is refused.
        let over = Tensor::from_raw_buffer(&bytes, dtype, &[n + 1], &Device::Cpu).unwrap();
        assert!(ferry::candle_adapter::to_host(&over).is_err());
    }
}

/// Hole 2 (candle): an in-place op may replace the storage's buffer (`InplaceOp1` gets
/// `&mut CpuStorage`). On 70a5fa0 that freed the memory under a live host array (valgrind:
/// invalid read). Now the array holds the storage's read lock: the op waits until the array is
/// gone, then runs.
#[cfg(feature = "candle")]
#[test]
fn hole2_candle_inplace_op_replacing_the_storage_waits_for_host_arrays() {
    use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor};
    use std::sync::mpsc;

    struct ReplaceStorage;
    impl InplaceOp1 for ReplaceStorage {
        fn name(&self) -> &'static str {
            "replace-storage"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, _: &Layout) -> candle_core::Result<()> {
            // A new buffer, the old one freed: what a custom op may do.
            *storage = CpuStorage::F32(vec![-1.0; 4096]);
            Ok(())
        }
    }

    let t = Tensor::arange(0f32, 1024.0, &Device::Cpu).unwrap();
    let host = ferry::candle_adapter::to_host(&t).unwrap();
    let clone = host.clone();
    drop(host);
    let (done_tx, done_rx) = mpsc::channel();
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || {
            t.inplace_op1(&ReplaceStorage).unwrap();
            done_tx.send(()).unwrap();
        })
    };
    // While a clone of the array lives, the op cannot have run: the memory is intact.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        done_rx.try_recv().is_err(),
        "the op ran while a host array read the storage"
    );
    let v = clone.view::<f32>().unwrap();
    assert_eq!(v.len(), 1024);
    assert_eq!(v.sum(), (0..1024).sum::<i32>() as f32);
    drop(clone);
    writer.join().unwrap();
    done_rx.recv().unwrap();
    let after = ferry::candle_adapter::to_host(&t).unwrap();
    assert_eq!(after.view::<f32>().unwrap()[[0]], -1.0);

    // An owned copy holds no lock: the op runs at once.
    let copy = ferry::ToHost::to_host_with(&t, CopyPolicy::Always).unwrap();
    drop(after);
    t.inplace_op1(&ReplaceStorage).unwrap();
    assert_eq!(copy.view::<f32>().unwrap()[[0]], -1.0);
}

/// Hole 2 (tch): `resize_` on the caller's tensor reallocated the storage the host array read
/// (valgrind on 70a5fa0: "Invalid read of size 4 … free'd at … resize_bytes_cpu"). The array
/// now owns a copy-on-write clone of the storage (round 3; 5d4584c made the storage
/// non-resizable instead): growing the tensor gives it new memory, and the array keeps its own.
#[cfg(feature = "tch")]
#[test]
fn hole2_tch_resize_after_to_host_keeps_the_memory() {
    use tch::{Kind, Tensor};
    let mut t = Tensor::arange(16, (Kind::Float, tch::Device::Cpu));
    let host = ferry::tch_adapter::to_host(&t).unwrap();
    let _ = t.f_resize_([1 << 20]).unwrap();
    let _ = t.f_resize_([4]).unwrap();
    let v = host.view::<f32>().unwrap();
    assert_eq!(
        v.iter().copied().collect::<Vec<_>>(),
        (0..16).map(|i| i as f32).collect::<Vec<_>>()
    );
    // The same for DLPack exports.
    let mut u = Tensor::arange(8, (Kind::Float, tch::Device::Cpu));
    let exported = ferry::tch_adapter::to_dlpack(&u)
        .unwrap()
        .into_host()
        .unwrap();
    let _ = u.f_resize_([1 << 20]).unwrap();
    assert_eq!(exported.view::<f32>().unwrap()[[7]], 7.0);
}

/// Hole 2 (tch): `set_` and `set_data` on the caller's tensor dropped the storage the host
/// array read: 70a5fa0's owner was a shallow clone, the same TensorImpl. The array now owns a
/// TensorImpl of its own.
#[cfg(feature = "tch")]
#[test]
fn hole2_tch_set_after_to_host_keeps_the_memory() {
    use tch::{Kind, Tensor};
    let mut t = Tensor::arange(1024, (Kind::Float, tch::Device::Cpu));
    let host = ferry::tch_adapter::to_host(&t).unwrap();
    let other = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
    let _ = t.set_source_tensor_(&other);
    let mut u = Tensor::arange(1024, (Kind::Float, tch::Device::Cpu));
    let host_u = ferry::tch_adapter::to_host(&u).unwrap();
    u.set_data(&other);
    let mut w = Tensor::arange(1024, (Kind::Float, tch::Device::Cpu));
    let host_w = ferry::tch_adapter::to_host(&w).unwrap();
    let _ = w.set_();
    drop((t, u, w, other));
    for h in [&host, &host_u, &host_w] {
        assert_eq!(
            h.view::<f32>().unwrap().sum(),
            (0..1024).sum::<i32>() as f32
        );
    }
}

/// Hole 7: libtorch throws for tensors without strided storage, and a C++ exception crossing
/// `extern "C"` aborted the process on 70a5fa0 (SIGABRT, "Rust cannot catch foreign
/// exceptions"). Every shim function now catches; these are typed errors.
#[cfg(feature = "tch")]
#[test]
fn hole7_tch_tensors_without_strided_storage_are_errors_not_aborts() {
    use tch::{Kind, Tensor};
    let undefined = Tensor::new();
    let err = ferry::tch_adapter::to_host(&undefined).unwrap_err();
    assert!(err.to_string().contains("undefined"), "{err}");
    assert!(ferry::tch_adapter::to_dlpack(&undefined).is_err());
    assert!(ferry::tch_adapter::storage_offset(&undefined).is_err());
    let dense = Tensor::eye(3, (Kind::Float, tch::Device::Cpu));
    let sparse = dense.to_sparse_sparse_dim(1);
    let err = ferry::tch_adapter::to_host(&sparse).unwrap_err();
    assert!(err.to_string().contains("to_dense"), "{err}");
    assert!(ferry::tch_adapter::to_dlpack(&sparse).is_err());
}

/// Hole 4 (tch): a broadcast ComplexHalf tensor (a raw dtype in ferry) of (1 << 62) + 1
/// elements passed 70a5fa0's checks and overflowed the heap when copied.
#[cfg(feature = "tch")]
#[test]
fn hole4_tch_broadcast_raw_dtype_of_overflowing_size_is_refused() {
    use tch::{Kind, Tensor};
    let huge =
        Tensor::zeros([1], (Kind::ComplexHalf, tch::Device::Cpu)).expand([(1i64 << 62) + 1], false);
    let err = ferry::ToHost::to_host_with(&huge, CopyPolicy::Always).unwrap_err();
    assert!(matches!(err, Error::LayoutOverflow { .. }), "{err}");
    // With the base alive the storage is shared, so the view would be a copy, which libtorch
    // refuses to size: an error too.
    let one = Tensor::zeros([1], (Kind::ComplexHalf, tch::Device::Cpu));
    let huge = one.expand([(1i64 << 62) + 1], false);
    assert!(ferry::ToHost::to_host(&huge).is_err());
}

/// Hole 6 (tch): a DLPack export of a tch tensor is libtorch's memory, which the caller's
/// tensor still writes: 70a5fa0 imported it as exclusive and writable. Since round 3 the export
/// is a copy-on-write snapshot, exported READ_ONLY.
#[cfg(feature = "tch")]
#[test]
fn hole6_tch_dlpack_export_imports_read_only() {
    use tch::{Kind, Tensor};
    let t = Tensor::arange(6, (Kind::Float, tch::Device::Cpu));
    let mut host = ferry::tch_adapter::to_dlpack(&t)
        .unwrap()
        .into_host()
        .unwrap();
    assert_eq!(host.access(), Access::ReadOnly);
    assert!(matches!(
        host.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    // Foreign memory never reaches libtorch writable through `from_host`: it is copied.
    let back = ferry::tch_adapter::from_host(&host, tch::Device::Cpu).unwrap();
    assert_ne!(back.data_ptr(), t.data_ptr());
}

/// Hole 7 (deleters across the FFI): libtorch's `fromDLPackVersioned` can throw after it took
/// the deleter (an OpenCL device trips an internal assert in `computeDispatchKey`), and the
/// unwinding runs it. The shim reports that, so the producer's deleter runs exactly once, not
/// twice (ferry's error path) and not never.
#[cfg(feature = "tch")]
#[test]
fn hole7_tch_import_that_throws_after_taking_the_deleter_releases_once() {
    let producer = Producer::default();
    let mut spec = Spec::f32_row_major(&[2]);
    spec.device = (4, 0); // kDLOpenCL
    // SAFETY: a fresh pointer from the test producer (its data is never read: not host memory).
    let tensor = unsafe {
        ferry::DlpackTensor::from_versioned(producer.versioned(&spec, bytes_of(&[1f32, 2.])))
    }
    .unwrap();
    let err = ferry::tch_adapter::from_dlpack(tensor, tch::Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert_eq!(producer.deleted(), 1, "released exactly once: {err}");
}

/// `with_guard` (the owner wrapper ferry's Python exports count themselves with) must not turn a
/// clone into a second writable handle: the wrapper's own owner is unique even when the memory
/// is not, so access narrows whenever anything else holds the memory, and the guard drops only
/// with the last holder of the result.
#[test]
fn with_guard_never_makes_a_second_writable_handle() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let original = HostArray::from_vec(vec![2, 2], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
    let mut guarded = original.clone().with_guard(Counted(dropped.clone()));
    assert_eq!(guarded.access(), Access::Shared);
    assert!(matches!(
        guarded.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    assert_eq!(guarded.as_ptr(), original.as_ptr());
    drop(guarded);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);

    // Moved in with nothing else holding the memory: still Exclusive and writable, and the
    // guard outlives every clone of the result.
    let mut alone = original.with_guard(Counted(dropped.clone()));
    assert_eq!(alone.access(), Access::Exclusive);
    alone.view_mut::<f32>().unwrap()[[0, 0]] = 9.0;
    let clone = alone.clone();
    drop(alone);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(clone.view::<f32>().unwrap()[[0, 0]], 9.0);
    drop(clone);
    assert_eq!(dropped.load(Ordering::SeqCst), 2);

    // Memory labelled pinned, relabelled for a kDLCPU consumer: the same address and access.
    let bytes = [7u8; 4];
    let parts = RawParts {
        data: bytes.as_ptr(),
        dtype: DType::U8,
        shape: vec![4],
        strides: vec![1],
        memory: MemoryKind::CudaHost,
        access: Access::ReadOnly,
    };
    // SAFETY: the 4 bytes live (and are only read) until the end of the test.
    let pinned = unsafe { HostArray::from_raw_parts(parts, ferry::dlpack::owner(())) }.unwrap();
    let relabelled = pinned.clone().as_cpu_memory();
    assert_eq!(relabelled.memory(), MemoryKind::Cpu);
    assert_eq!(relabelled.device(), ferry::Device::CPU);
    assert_eq!(relabelled.as_ptr(), pinned.as_ptr());
    assert!(relabelled.is_read_only());
}

/// A counted export (what `ferry.HostArray.__dlpack__` hands out) holds only the array's owner:
/// while it lives the array it came from hands out no mutable view, the memory outlives that
/// array, a ferry import of it is in effect the array's clone (its owner and access, the export
/// released at once), and the count drops exactly when the consumer's deleter runs.
#[test]
fn counted_exports_keep_the_memory_and_never_make_a_second_writable_handle() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIVE: AtomicUsize = AtomicUsize::new(0);

    let mut original = HostArray::from_vec(vec![2, 3], (0..6).map(|v| v as f32).collect())
        .unwrap()
        .reversed_axes()
        .unwrap();
    assert_eq!(original.access(), Access::Exclusive);
    // SAFETY: nothing writes the exported memory in this test.
    let export = unsafe { original.to_dlpack_counted(&LIVE) };
    assert_eq!(LIVE.load(Ordering::SeqCst), 1);
    assert_eq!(
        (export.shape(), export.strides()),
        (&[3usize, 2][..], &[1isize, 3][..])
    );
    assert!(!export.is_read_only() && !export.is_copied());
    assert!(matches!(
        original.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    let expected = original.to_contiguous(CopyPolicy::Always).unwrap();
    drop(original);
    // The consumer: a ferry import, sharing the memory the original no longer holds.
    let imported = export.into_host().unwrap();
    assert_eq!(
        imported.access(),
        Access::Exclusive,
        "the original's access"
    );
    assert_eq!(imported.copies(), 0);
    assert_eq!(
        imported.view::<f32>().unwrap(),
        expected.view::<f32>().unwrap()
    );
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "the import released the export"
    );
    assert!(
        imported.owner_is_unique(),
        "the original is gone: held alone"
    );
    drop(imported);

    // 0-d, five axes (shape and strides on the heap) and legacy tensors; read-only memory is
    // exported READ_ONLY (a legacy struct has no flags: ferry-python copies such arrays); an
    // export never consumed is released by its deleter.
    let scalar = HostArray::from_vec(vec![], vec![7i64]).unwrap();
    let deep = HostArray::from_vec(vec![1, 2, 1, 2, 2], vec![1u8; 8])
        .unwrap()
        .into_read_only();
    for (array, legacy) in [(&scalar, false), (&deep, true), (&deep, false)] {
        // SAFETY: nothing writes the exported memory in this test.
        let export = unsafe {
            if legacy {
                array.to_dlpack_legacy_counted(&LIVE)
            } else {
                array.to_dlpack_counted(&LIVE)
            }
        };
        assert_eq!(export.shape(), array.shape());
        assert_eq!(export.strides(), array.strides());
        assert_eq!(export.version(), if legacy { (0, 0) } else { (1, 3) });
        assert_eq!(export.is_read_only(), array.is_read_only());
        assert_eq!(LIVE.load(Ordering::SeqCst), 1);
        drop(export);
        assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    }
    // SAFETY: nothing writes the exported memory in this test.
    let again = unsafe { deep.to_dlpack_counted(&LIVE) }
        .into_host()
        .unwrap();
    assert_eq!(again.access(), Access::ReadOnly);
    assert_eq!(again.as_bytes(), deep.as_bytes());
}

// Round 3 (issue 33): a view of memory someone else can write is a snapshot. Each test below
// failed on 5d4584c.

/// Round 3, hole 1: on 5d4584c a tch view held the tensor's own StorageImpl. A lazy clone of the
/// tensor shares that storage's buffer copy-on-write; a write through the tensor then
/// materialised ferry's StorageImpl into a new buffer, leaving the old one to the clone alone,
/// and dropping the clone freed the memory the view read (SIGSEGV with 16 MiB; valgrind
/// "Invalid read … inside an unallocated block"). The same through a DLPack export. The view now
/// owns a copy-on-write clone of its own: the write copies for the writer, the view keeps its
/// bytes and its values.
#[cfg(feature = "tch")]
#[test]
fn round3_hole1_tch_views_survive_a_lazy_clone_and_a_write_of_the_source() {
    use tch::{Kind, Tensor};
    let n = 4 << 20; // 16 MiB of f32
    for export in [false, true] {
        let t = Tensor::arange(n, (Kind::Float, tch::Device::Cpu));
        let a = if export {
            ferry::tch_adapter::to_dlpack(&t)
                .unwrap()
                .into_host()
                .unwrap()
        } else {
            ferry::tch_adapter::view(&t).unwrap()
        };
        let clone = t.internal_lazy_clone();
        let _ = t.shallow_clone().fill_(2.0);
        drop(clone);
        let big = Tensor::ones([n], (Kind::Float, tch::Device::Cpu)); // reuses freed memory
        let v = a.view::<f32>().unwrap();
        assert_eq!(v[[1]], 1.0, "export: {export}");
        assert_eq!(v[[(n - 1) as usize]], (n - 1) as f32, "export: {export}");
        assert_eq!(t.double_value(&[1]), 2.0, "the write reached the source");
        drop(big);
    }
}

/// Round 3, hole 2: on 5d4584c a view shared the tensor's bytes, so `fill_` through a `u8`
/// alias of a `bool` tensor put byte 2 behind an `ArrayView<bool>` that had been checked
/// (it compared equal to both `true` and `false`; from another thread, a data race). Now the
/// write copies the source's bytes first: the validated view never changes.
#[cfg(feature = "tch")]
#[test]
fn round3_hole2_tch_in_place_writes_never_reach_a_view() {
    use tch::{Kind, Tensor};
    let t = Tensor::from_slice(&[true, false, true]);
    let a = ferry::tch_adapter::view(&t).unwrap();
    let v = a.view::<bool>().unwrap();
    let _ = t.view_dtype(Kind::Uint8).fill_(2);
    assert_eq!(v.iter().copied().collect::<Vec<_>>(), [true, false, true]);
    assert_eq!(a.as_bytes().unwrap(), [1, 0, 1]);
    assert_eq!(t.view_dtype(Kind::Uint8).int64_value(&[1]), 2);

    // From another thread, while the view is read: the writer never touches the view's bytes.
    let u = Tensor::zeros([1 << 16], (Kind::Float, tch::Device::Cpu));
    let a = ferry::tch_adapter::view(&u).unwrap();
    let writer = {
        let mut u = u.shallow_clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                let _ = u.fill_(f64::from(i));
            }
        })
    };
    for _ in 0..50 {
        assert_eq!(a.view::<f32>().unwrap().sum(), 0.0);
    }
    writer.join().unwrap();
}

/// Round 3, hole 3: on 5d4584c `ferry_tch::from_host` of an `Exclusive` array handed libtorch
/// the array's memory, writable, while the array (still `Exclusive`) read it: a `u8` fill
/// through the tensor put byte 3 behind a checked `bool` view; the same reached Arrow, and
/// `from_dlpack(a.to_dlpack())`. Memory ferry reads is never handed to a framework for writing:
/// `from_host` copies into memory libtorch allocates, and only `into_tensor` of an array ferry
/// holds alone moves it in.
#[cfg(feature = "tch")]
#[test]
fn round3_hole3_tch_never_writes_memory_ferry_still_reads() {
    use tch::{Device, Kind};
    let a = HostArray::from_vec(vec![3], vec![true, false, true]).unwrap();
    let t = ferry::tch_adapter::from_host(&a, Device::Cpu).unwrap();
    let v = a.view::<bool>().unwrap();
    let _ = t.view_dtype(Kind::Uint8).fill_(3);
    assert_eq!(v.iter().copied().collect::<Vec<_>>(), [true, false, true]);
    assert_eq!(a.access(), Access::Exclusive);

    // The borrowing DLPack export is READ_ONLY, so libtorch copies it.
    let u = ferry::tch_adapter::from_dlpack(a.to_dlpack(), Device::Cpu).unwrap();
    let _ = u.view_dtype(Kind::Uint8).fill_(3);
    assert_eq!(a.as_bytes().unwrap(), [1, 0, 1]);
    // So is a handing-over export while another handle reads the memory.
    let w = ferry::tch_adapter::from_dlpack(a.clone().into_dlpack(), Device::Cpu).unwrap();
    let _ = w.view_dtype(Kind::Uint8).fill_(3);
    // And a legacy one, which cannot say READ_ONLY.
    let x = ferry::tch_adapter::from_dlpack(a.to_dlpack_legacy(), Device::Cpu).unwrap();
    let _ = x.view_dtype(Kind::Uint8).fill_(3);
    assert_eq!(a.as_bytes().unwrap(), [1, 0, 1]);

    // Moving an array ferry holds alone shares it, without a copy.
    let b = HostArray::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
    let ptr = b.as_ptr();
    let before = ferry::copy_totals();
    let t = ferry::tch_adapter::into_tensor(b, Device::Cpu).unwrap();
    assert_eq!(ferry::copy_totals().since(before).copies, 0);
    assert_eq!(t.data_ptr().cast::<u8>().cast_const(), ptr);
    // ... but not while an Arrow buffer (or any other clone) holds it.
    let c = HostArray::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
    let (held, cptr) = (c.clone(), c.as_ptr());
    let t = ferry::tch_adapter::into_tensor(c, Device::Cpu).unwrap();
    assert_ne!(t.data_ptr().cast::<u8>().cast_const(), cptr);
    let _ = t.shallow_clone().fill_(0.0);
    assert_eq!(held.view::<f32>().unwrap()[[3]], 4.0);
}

/// Round 3, hole 4: a thread that holds a candle view and takes a second view of the same
/// storage (or `to_host`, `to_dlpack`) while another thread waits in `Var::set` for the write
/// lock: on 5d4584c the second view asked parking_lot's fair `read`, which queues behind the
/// waiting writer, which waits for the first view: both threads hung. Every view of a storage
/// now shares ferry's one lock on it.
#[cfg(feature = "candle")]
#[test]
fn round3_hole4_candle_second_view_never_waits_behind_a_queued_writer() {
    use candle_core::{Device, Tensor, Var};
    use std::sync::mpsc;
    use std::time::Duration;

    let var = Var::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu).unwrap();
    let t = var.as_tensor().clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let reader = {
        let t = t.clone();
        std::thread::spawn(move || {
            let first = ferry::candle_adapter::view(&t).unwrap();
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // A second view, of the tensor and of a narrowed alias of its storage.
            let second = ferry::candle_adapter::view(&t).unwrap();
            let narrowed = ferry::candle_adapter::to_host(&t.narrow(0, 1, 2).unwrap()).unwrap();
            let exported = ferry::candle_adapter::to_dlpack(&t).unwrap();
            let sum = second.view::<f32>().unwrap().sum() + narrowed.view::<f32>().unwrap().sum();
            done_tx.send(sum).unwrap();
            drop((first, second, narrowed, exported));
        })
    };
    ready_rx.recv().unwrap();
    let writer = std::thread::spawn(move || {
        var.set(&Tensor::new(&[5f32, 6.0, 7.0, 8.0], &Device::Cpu).unwrap())
            .unwrap();
        var
    });
    // Let the writer queue for the write lock, then take the second view.
    std::thread::sleep(Duration::from_millis(200));
    go_tx.send(()).unwrap();
    let sum = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the second view waited behind the queued writer");
    assert_eq!(
        sum,
        10.0 + 5.0,
        "the views read the values before the write"
    );
    reader.join().unwrap();
    let var = writer.join().unwrap();
    let after = ferry::candle_adapter::to_host(var.as_tensor()).unwrap();
    assert_eq!(after.view::<f32>().unwrap().sum(), 26.0);
}

/// Round 3, hole 5: `into_tensor` of an owned array over part of its buffer (`from_array` of a
/// `slice_move`) failed a `debug_assert` on 5d4584c (a panic), and in release handed candle the
/// whole buffer with the wrong shape. The elements now move to the front of the buffer.
#[cfg(feature = "candle")]
#[test]
fn round3_hole5_candle_into_tensor_of_an_offset_owned_array() {
    use ferry::ndarray::{Array1, s};
    let a = Array1::from(vec![0f32, 1.0, 2.0, 3.0]);
    let h = HostArray::from_array(a.slice_move(s![1..]).into_dyn());
    let t = ferry::candle_adapter::into_tensor(h, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    let b = Array1::from(vec![0i64, 1, 2, 3, 4, 5]);
    let h = HostArray::from_array(b.slice_move(s![1..;2]).into_dyn());
    let t = ferry::candle_adapter::into_tensor(h, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.to_vec1::<i64>().unwrap(), [1, 3, 5]);
}

/// Round 3, hole 12: an empty layout whose offset overflows when counted in bits was refused as
/// "packed sub-byte elements must start on a byte boundary" on 5d4584c, for f32. An empty view
/// reads nothing, so its offset does not matter; `locate` names the overflow.
#[test]
fn round3_hole12_empty_layout_with_a_huge_offset() {
    use ferry::StorageLayout;
    let layout = StorageLayout {
        dtype: DType::F32,
        shape: vec![0, 3],
        strides: vec![3, 1],
        offset: usize::MAX,
    };
    let empty = HostArray::from_storage(vec![0f32; 4], layout.clone()).unwrap();
    assert!(empty.is_empty());
    let err = layout.locate(16).unwrap_err();
    assert!(
        err.to_string().contains("does not fit the address space"),
        "{err}"
    );
}

/// Round 3, hole 12: `owner_is_unique` read the counts with relaxed loads, so `into_dlpack` could
/// set IS_COPIED (hand the memory over for writing) without the writes another holder made
/// before dropping its clone happening before the consumer's: now an acquire fence pairs with
/// the holders' release decrements, as `Arc::get_mut` does. A thread races the drop of a clone
/// with the export: the consumer always sees the clone's last values.
#[test]
fn round3_hole12_unique_owner_sees_what_the_last_holder_did() {
    for _ in 0..200 {
        let mut a = HostArray::from_vec(vec![64], vec![0u64; 64])
            .unwrap()
            .to_contiguous(CopyPolicy::Always)
            .unwrap();
        a.view_mut::<u64>().unwrap().fill(7);
        let clone = a.clone();
        let dropper = std::thread::spawn(move || {
            assert_eq!(clone.view::<u64>().unwrap().sum(), 7 * 64);
            drop(clone);
        });
        let export = loop {
            if a.is_writable() {
                break a.into_dlpack();
            }
            std::hint::spin_loop();
        };
        assert!(export.is_copied() && !export.is_read_only());
        dropper.join().unwrap();
        let back = export.into_host().unwrap();
        assert_eq!(back.view::<u64>().unwrap().sum(), 7 * 64);
    }
}

/// Audit of round 3 (B1): two threads that each take a view of one tch tensor (shallow clones
/// of it, which share a StorageImpl) both made it copy-on-write at once: libtorch's
/// `lazy_clone_storage` swaps the storage's DataPtr without a lock, both moved its context out,
/// and the bytes were freed twice ("double free or corruption", SIGABRT, in 4 of 4 runs of
/// 20 000 pairs). The shim takes every snapshot under one mutex.
#[cfg(feature = "tch")]
#[test]
fn round3_audit_concurrent_tch_views_of_one_storage() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};
    use tch::{Device, Kind, Tensor};

    /// A spinning two-party barrier: lines the two views up closer than `std::sync::Barrier`.
    #[derive(Default)]
    struct Spin {
        count: AtomicUsize,
        generation: AtomicUsize,
    }
    impl Spin {
        fn wait(&self) {
            let generation = self.generation.load(Ordering::Acquire);
            if self.count.fetch_add(1, Ordering::AcqRel) == 1 {
                self.count.store(0, Ordering::Release);
                self.generation.fetch_add(1, Ordering::AcqRel);
            } else {
                while self.generation.load(Ordering::Acquire) == generation {
                    std::hint::spin_loop();
                }
            }
        }
    }

    let n: i64 = 4096;
    let expected: f64 = (0..n).map(|v| v as f64).sum();
    let spin = Arc::new(Spin::default());
    let (done_tx, done_rx) = mpsc::channel::<HostArray>();
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::sync_channel::<Tensor>(1);
        senders.push(tx);
        let (spin, done) = (spin.clone(), done_tx.clone());
        workers.push(std::thread::spawn(move || {
            while let Ok(t) = rx.recv() {
                spin.wait();
                done.send(ferry::tch_adapter::to_host(&t).unwrap()).unwrap();
            }
        }));
    }
    for _ in 0..20_000 {
        let t = Tensor::arange(n, (Kind::Float, Device::Cpu));
        for tx in &senders {
            tx.send(t.shallow_clone()).unwrap();
        }
        let views = [done_rx.recv().unwrap(), done_rx.recv().unwrap()];
        drop(t);
        for view in &views {
            let sum: f64 = view
                .view::<f32>()
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            assert_eq!(sum, expected);
        }
    }
    drop(senders);
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Audit of round 3 (B2): `ferry_tch::from_dlpack` shared a writable bool tensor with libtorch
/// unchecked, so a byte 2 reached safe tch code as a `bool` (`v[0] == true` and
/// `v[0] == false` both held). bool tensors now go in through a checked host array.
#[cfg(feature = "tch")]
#[test]
fn round3_audit_invalid_bools_never_reach_libtorch() {
    use ferry::StorageLayout;
    let bad = || {
        HostArray::from_storage_mut(
            vec![2u8, 1, 0],
            StorageLayout::row_major(DType::Bool, vec![3]).unwrap(),
        )
        .unwrap()
    };
    for result in [
        ferry::tch_adapter::from_dlpack(bad().into_dlpack(), tch::Device::Cpu),
        ferry::tch_adapter::into_tensor(bad(), tch::Device::Cpu),
        ferry::tch_adapter::from_host(&bad(), tch::Device::Cpu),
    ] {
        assert!(
            matches!(result, Err(Error::InvalidBool { .. })),
            "{result:?}"
        );
    }
    #[cfg(feature = "burn")]
    {
        let burn = ferry::burn_adapter::into_tensor::<1, burn::tensor::Bool>(
            bad(),
            &burn::tensor::Device::flex(),
        );
        assert!(matches!(burn, Err(Error::InvalidBool { .. })), "{burn:?}");
    }
    let good = HostArray::from_vec(vec![2], vec![true, false]).unwrap();
    let t = ferry::tch_adapter::from_dlpack(good.into_dlpack(), tch::Device::Cpu).unwrap();
    assert_eq!(Vec::<bool>::try_from(&t).unwrap(), [true, false]);
}

/// Audit of round 3 (B4): `into_array` of a uniquely held array whose layout is not its owner's
/// (a `reversed_axes`) copied the owner's array, with the owner's shape ([1, 3] for [3, 1]).
#[test]
fn round3_audit_into_array_keeps_the_arrays_own_layout() {
    let a = HostArray::from_vec(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
    let r = a.reversed_axes().unwrap();
    drop(a);
    let out = r.into_array::<f32>().unwrap();
    assert_eq!(
        out,
        ferry::ndarray::arr2(&[[0f32, 3.], [1., 4.], [2., 5.]]).into_dyn()
    );
}

/// Audit of round 3 (B2-1): a counted export (writable: what Python consumers get) reached
/// libtorch through `ferry_tch::from_dlpack`, which shared it, so `fill_` changed the values
/// under a live `ArrayView` of the array (and raced it from another thread). ferry's own
/// exports go to libtorch through `into_tensor`, which copies memory a ferry array still reads;
/// a counted export is `unsafe` to make, with that contract.
#[cfg(feature = "tch")]
#[test]
fn round3_audit_ferry_exports_never_reach_libtorch_writable() {
    use std::sync::atomic::AtomicUsize;
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let a = HostArray::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
    // SAFETY: this test's consumer is ferry's tch adapter, which must not write it (checked).
    let counted = unsafe { a.to_dlpack_counted(&LIVE) };
    let t = ferry::tch_adapter::from_dlpack(counted, tch::Device::Cpu).unwrap();
    let v = a.view::<f32>().unwrap();
    let _ = t.shallow_clone().fill_(7.0);
    assert_eq!(v.iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 3.0, 4.0]);
    assert_ne!(t.data_ptr().cast::<u8>().cast_const(), a.as_ptr());
    // An export of an array ferry holds alone still moves in without a copy.
    let b = HostArray::from_vec(vec![2], vec![5f32, 6.0]).unwrap();
    let ptr = b.as_ptr();
    let t = ferry::tch_adapter::from_dlpack(b.into_dlpack(), tch::Device::Cpu).unwrap();
    assert_eq!(t.data_ptr().cast::<u8>().cast_const(), ptr);
}

/// Audit of round 3 (B2-4, B2-5): allocations a layout or a file asks for are errors, never an
/// abort or a panic: an Arrow column of a huge broadcast (`MutableBuffer::with_capacity`
/// panicked), and an empty array shared with Burn Flex (a dangling, misaligned address Burn's
/// casts refused with a panic).
#[test]
fn round3_audit_huge_and_empty_arrays_are_errors_or_work() {
    use ferry::{MemoryKind, RawParts};
    let one = [1f32];
    let parts = RawParts {
        data: one.as_ptr().cast(),
        dtype: DType::F32,
        shape: vec![1 << 40],
        strides: vec![0],
        memory: MemoryKind::Cpu,
        access: Access::ReadOnly,
    };
    // SAFETY: every element is the one f32 above, alive and unwritten for the whole test.
    let huge = unsafe { HostArray::from_raw_parts(parts, ferry::dlpack::owner(())) }.unwrap();
    #[cfg(feature = "arrow")]
    {
        let err =
            ferry::arrow::TensorColumn::from_tensors("x", std::slice::from_ref(&huge)).unwrap_err();
        assert!(
            matches!(err, ferry::arrow::Error::Core(Error::OutOfMemory { .. })),
            "{err}"
        );
    }
    drop(huge);
    #[cfg(feature = "burn")]
    {
        let empty = HostArray::from_vec(vec![0, 3], Vec::<f32>::new()).unwrap();
        let t = ferry::burn_adapter::from_host::<2, burn::tensor::Float>(
            &empty,
            &burn::tensor::Device::flex(),
        )
        .unwrap();
        assert_eq!(t.clone().add_scalar(1.0).dims(), [0, 3]);
    }
}

/// Final audit of round 3 (B-4): libtorch 2.9's `fromDLPack` ignores `byte_offset`, and a
/// producer's writable tensor went to it as it was: libtorch read and wrote from `data`, before
/// the tensor (valgrind: invalid read and write 16 bytes before the block), or the wrong
/// elements. Such a tensor now goes in through a host array.
#[cfg(feature = "tch")]
#[test]
fn round3_final_audit_tch_from_dlpack_honours_byte_offset() {
    let producer = Producer::default();
    let mut spec = Spec::f32_row_major(&[3]);
    spec.byte_offset = 4;
    let raw = producer.versioned(&spec, bytes_of(&[10f32, 20., 30., 40.]));
    // SAFETY: a live managed tensor from the counting producer, handed over.
    let tensor = unsafe { ferry::DlpackTensor::from_versioned(raw) }.unwrap();
    let t = ferry::tch_adapter::from_dlpack(tensor, tch::Device::Cpu).unwrap();
    let values: Vec<f32> = (0..3).map(|i| t.double_value(&[i]) as f32).collect();
    assert_eq!(values, [20., 30., 40.]);
    drop(t);
    assert_eq!(producer.deleted(), 1);
}

/// Final audit of round 3 (B-1, B-2): a thread writing a tch tensor's storage through a
/// shallow clone (safe: `Tensor: Send`) while another views the tensor. libtorch makes and
/// materialises copy-on-write storages without a lock: the writer freed the copy-on-write
/// context under ferry's reference (`refcount_ == 0` assert in COWDeleter: SIGABRT in about
/// 0.2 s), and a write in flight kept changing a view after it was returned. A storage reached
/// through another handle is now copied, never made copy-on-write.
#[cfg(feature = "tch")]
#[test]
fn round3_final_audit_tch_views_of_storages_another_thread_writes_are_copies() {
    use tch::{Kind, Tensor};
    let t = Tensor::zeros([1 << 16], (Kind::Float, tch::Device::Cpu));
    let writer = t.shallow_clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let handle = std::thread::spawn(move || {
        let mut writer = writer;
        let mut i = 0.0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = writer.fill_(i);
            i += 1.0;
        }
    });
    for _ in 0..200 {
        let h = ferry::tch_adapter::to_host(&t).unwrap();
        assert_eq!(h.copies(), 1, "a storage another handle reaches is copied");
        let v = h.view::<f32>().unwrap();
        let first = v.sum();
        assert_eq!(
            v.sum(),
            first,
            "a copy does not change after it is returned"
        );
        assert!(matches!(
            ferry::tch_adapter::view(&t),
            Err(Error::NeedsCopy { .. })
        ));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
    // The only handle again: zero-copy.
    assert_eq!(ferry::tch_adapter::to_host(&t).unwrap().copies(), 0);
}

/// Final audit of round 3 (B-3): an `.npy` header's duplicate-key check compared every key with
/// every earlier one, so a 1 MiB header of 260 000 keys took 156 s (debug build). Keys are now
/// checked with a set; such a header is read (or refused) in one pass.
#[cfg(feature = "files")]
#[test]
fn round3_final_audit_npy_header_of_many_keys_is_one_pass() {
    let mut header = String::from("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ");
    for i in 0..200_000 {
        header.push_str(&format!("{i}:0,"));
    }
    header.push('}');
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = b"\x93NUMPY\x02\x00".to_vec();
    file.extend_from_slice(&(header.len() as u32).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&1f32.to_le_bytes());
    // Read or refused, either way without a quadratic scan (not timed here: see the commit).
    let _ = ferry::npy::read(&file[..]);
}

/// Final audit of round 3: a Burn Flex tensor shared a bool array someone else may write
/// (a producer's memory), checked once: a later write of 2 gave safe Burn code an invalid
/// `bool`. Such bools are now copied, each byte checked in the copy.
#[cfg(feature = "burn")]
#[test]
fn round3_final_audit_burn_copies_bools_someone_else_may_write() {
    let producer = Producer::default();
    let mut spec = Spec::f32_row_major(&[4]);
    spec.dtype = (6, 8, 1); // kDLBool
    spec.strides = Some(vec![1]);
    let mut buffer = vec![1u8, 0, 1, 0];
    let address = buffer.as_mut_ptr() as usize;
    let raw = producer.versioned(&spec, buffer);
    // SAFETY: a live managed tensor from the counting producer, handed over.
    let shared = unsafe { ferry::DlpackTensor::from_versioned(raw) }
        .unwrap()
        .into_host()
        .unwrap();
    assert_eq!(shared.access(), ferry::Access::Shared);
    let t = ferry::burn_adapter::from_host::<1, burn::tensor::Bool>(
        &shared,
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let host = ferry::burn_adapter::view(&t).unwrap();
    assert_ne!(host.as_ptr() as usize, address, "copied, not shared");
    let values: Vec<bool> = host.view::<bool>().unwrap().iter().copied().collect();
    assert_eq!(values, [true, false, true, false]);
}

/// Re-audit of round 3's final fixes: `sole_owner` let a view count its base as the storage's
/// second holder without checking that the base still held that storage. After `set_`,
/// `set_data` or a base whose storage was swapped away, the second holder was another live
/// tensor, which a thread could write (SIGABRT in COWDeleter, as before). Those views are now
/// copies.
#[cfg(feature = "tch")]
#[test]
fn round3_reaudit_tch_views_moved_to_another_storage_are_copies() {
    use tch::{Kind, Tensor};
    let zeros = || Tensor::zeros([64], (Kind::Float, tch::Device::Cpu));
    let set_to_other = || {
        let b = zeros();
        let mut v = b.narrow(0, 0, 64);
        drop(b);
        let x = zeros();
        let _ = v.set_source_tensor_(&x);
        (v, x)
    };
    let set_data = || {
        let b = zeros();
        let mut v = b.narrow(0, 0, 64);
        drop(b);
        let x = zeros();
        v.set_data(&x);
        (v, x)
    };
    let base_swapped_away = || {
        let mut b = zeros();
        let mut x = Tensor::empty([0], (Kind::Float, tch::Device::Cpu));
        let _ = x.set_source_tensor_(&b);
        let v = b.narrow(0, 0, 64);
        let _ = b.set_();
        drop(b);
        (v, x)
    };
    for (name, make) in [
        (
            "set_source_tensor_",
            &set_to_other as &dyn Fn() -> (Tensor, Tensor),
        ),
        ("set_data", &set_data),
        ("base swapped away", &base_swapped_away),
    ] {
        let (v, x) = make();
        assert_eq!(v.data_ptr(), x.data_ptr(), "{name}: x reaches v's storage");
        assert!(
            matches!(ferry::tch_adapter::view(&v), Err(Error::NeedsCopy { .. })),
            "{name}: a storage another tensor holds is not shared"
        );
        assert_eq!(
            ferry::tch_adapter::to_host(&v).unwrap().copies(),
            1,
            "{name}"
        );
    }
}

/// Audit of round 4 (B-1): a ferry import of one of ferry's counted exports wrapped the export
/// in an owner of its own, so the import looked held alone while the exporter and other
/// imports held the memory too; Python then lent it writable (`g.torch()`) under a read-only
/// import. The import now holds the exported array's own owner.
#[test]
fn round4_a_counted_export_imported_again_counts_every_holder() {
    static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let a = HostArray::from_vec(vec![4], vec![0f32, 1., 2., 3.]).unwrap();
    // SAFETY: nothing writes the memory while the test reads it.
    let export = unsafe { a.to_dlpack_counted(&LIVE) };
    assert!(
        !export.is_read_only(),
        "a was held alone: the export may write"
    );
    let g = export.into_host().unwrap();
    assert_eq!(g.as_ptr(), a.as_ptr());
    assert_eq!(
        LIVE.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "released at import"
    );
    assert!(!a.owner_is_unique() && !g.owner_is_unique());
    assert!(!g.may_lend_writable() && !a.is_writable());
    // SAFETY: as above.
    let second = unsafe { a.to_dlpack_counted(&LIVE) };
    assert!(second.is_read_only(), "a is held by g: READ_ONLY");
    let r = second.into_host().unwrap();
    assert_eq!(
        r.access(),
        Access::Exclusive,
        "a's own access, on a's own count"
    );
    assert!(!r.is_writable() && !r.may_lend_writable());
    drop((a, r));
    assert!(g.owner_is_unique(), "the last holder holds it alone");
    assert_eq!(
        g.view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
        [0., 1., 2., 3.]
    );
}
