//! DLPack import from a foreign (counting) producer: zero-copy, flags, devices, every rejection
//! path as its typed error, and the deleter run exactly once on every path.

use ferry::{DType, Device, DlpackTensor, Error, HostArray, MemoryKind};
use ferry_tests::producer::{Producer, Spec, bytes_of};

const VALUES: [f32; 6] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];

fn import_versioned(p: &Producer, spec: &Spec) -> ferry::Result<HostArray> {
    // SAFETY: a fresh pointer from the test producer, owned by this call.
    unsafe { HostArray::from_dlpack_versioned(p.versioned(spec, bytes_of(&VALUES))) }
}

fn import_legacy(p: &Producer, spec: &Spec) -> ferry::Result<HostArray> {
    // SAFETY: a fresh pointer from the test producer, owned by this call.
    unsafe { HostArray::from_dlpack_legacy(p.legacy(spec, bytes_of(&VALUES))) }
}

#[test]
fn foreign_tensors_import_without_copying_and_release_once() {
    for legacy in [false, true] {
        let p = Producer::default();
        let spec = Spec::f32_row_major(&[2, 3]);
        let a = if legacy {
            import_legacy(&p, &spec)
        } else {
            import_versioned(&p, &spec)
        }
        .unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(a.view::<f32>().unwrap().as_slice().unwrap(), &VALUES);
        assert_eq!(a.copies(), 0);
        let view_holder = a.clone();
        drop(a);
        assert_eq!(p.deleted(), 0, "a clone still holds the producer");
        let v = view_holder.view::<f32>().unwrap();
        assert_eq!(v[[1, 2]], 5.0);
        drop(view_holder);
        assert_eq!(
            p.deleted(),
            1,
            "legacy={legacy}: deleter runs once when the last view drops"
        );
    }
}

#[test]
fn strides_offsets_and_flags_are_honoured() {
    let p = Producer::default();
    check_strides_offsets_and_flags(&p);
    assert_eq!(p.deleted(), p.produced());
}

fn check_strides_offsets_and_flags(p: &Producer) {
    // Transposed, with the first element at byte 4 and NULL-free strides.
    let mut spec = Spec::f32_row_major(&[2, 2]);
    spec.strides = Some(vec![1, 3]);
    spec.byte_offset = 4;
    let a = import_versioned(p, &spec).unwrap();
    assert_eq!(
        a.view::<f32>().unwrap(),
        ferry::ndarray::arr2(&[[1.0f32, 4.0], [2.0, 5.0]]).into_dyn()
    );

    // Negative stride: data points at the last row.
    let mut spec = Spec::f32_row_major(&[2, 3]);
    spec.strides = Some(vec![-3, 1]);
    spec.byte_offset = 12;
    let a = import_versioned(p, &spec).unwrap();
    assert_eq!(
        a.view::<f32>().unwrap(),
        ferry::ndarray::arr2(&[[3.0f32, 4.0, 5.0], [0.0, 1.0, 2.0]]).into_dyn()
    );

    // NULL strides from a pre-1.2 producer mean compact row-major.
    let mut spec = Spec::f32_row_major(&[3, 2]);
    spec.strides = None;
    spec.version = (1, 1);
    let a = import_versioned(p, &spec).unwrap();
    assert_eq!(a.strides(), &[2, 1]);
    assert_eq!(a.view::<f32>().unwrap()[[2, 1]], 5.0);

    // READ_ONLY never yields a mutable view; it is exported again as read-only.
    let mut spec = Spec::f32_row_major(&[6]);
    spec.flags = ferry::dlpack::DlpackFlags::READ_ONLY.bits();
    let mut a = import_versioned(p, &spec).unwrap();
    assert!(a.is_read_only());
    assert!(matches!(
        a.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    assert!(a.to_dlpack().is_read_only());
    // Without READ_ONLY the producer still holds the memory: shared, written only after the
    // caller's unsafe promise that nobody else uses it.
    let mut b = import_versioned(p, &Spec::f32_row_major(&[6])).unwrap();
    assert!(matches!(
        b.view_mut::<f32>(),
        Err(Error::NotWritable { .. })
    ));
    // SAFETY: the test producer never touches its buffer after handing it over.
    let mut b = unsafe { b.assume_exclusive() }.unwrap();
    b.view_mut::<f32>().unwrap()[[0]] = 9.0;
    assert_eq!(b.view::<f32>().unwrap()[[0]], 9.0);

    // Pinned and managed memory are host memory.
    for (device_type, kind) in [
        (3, MemoryKind::CudaHost),
        (13, MemoryKind::CudaManaged),
        (11, MemoryKind::RocmHost),
    ] {
        let mut spec = Spec::f32_row_major(&[6]);
        spec.device = (device_type, 0);
        let a = import_versioned(p, &spec).unwrap();
        assert_eq!(a.memory(), kind);
        assert_eq!(a.to_dlpack().device().device_type, device_type as i32);
    }
}

#[test]
fn empty_and_zero_dim_tensors() {
    let p = Producer::default();
    let mut spec = Spec::f32_row_major(&[0, 4]);
    spec.null_data = true;
    let a = import_versioned(&p, &spec).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.view::<f32>().unwrap().shape(), &[0, 4]);
    assert_eq!(
        a.to_contiguous(ferry::CopyPolicy::IfNeeded)
            .unwrap()
            .copies(),
        0
    );

    let mut spec = Spec::f32_row_major(&[]);
    spec.shape = None;
    spec.strides = None;
    let s = import_versioned(&p, &spec).unwrap();
    assert_eq!(s.ndim(), 0);
    assert_eq!(s.view::<f32>().unwrap()[[]], 0.0);
    drop((a, s));
    assert_eq!(p.deleted(), 2);
}

#[test]
fn raw_dtypes_are_carried_but_not_viewed() {
    let p = Producer::default();
    let mut spec = Spec::f32_row_major(&[24]);
    spec.dtype = (10, 8, 1); // float8_e4m3fn
    let a = import_versioned(&p, &spec).unwrap();
    assert!(matches!(a.dtype(), DType::Raw(d) if d.code == 10));
    let err = a.view::<u8>().unwrap_err();
    assert!(matches!(err, Error::NoTypedView { .. }), "{err}");
    assert!(err.to_string().contains("float8"), "{err}");
    assert_eq!(a.as_bytes().unwrap().len(), 24);
    let copy = a.to_contiguous(ferry::CopyPolicy::Always).unwrap();
    assert_eq!(copy.as_bytes().unwrap(), a.as_bytes().unwrap());
    assert_eq!(copy.dtype(), a.dtype());

    let mut spec = Spec::f32_row_major(&[8]);
    spec.dtype = (17, 4, 1); // float4_e2m1fn, packed
    let f4 = import_versioned(&p, &spec).unwrap();
    assert_eq!(f4.nbytes(), 4);
    let back = f4.to_dlpack().into_host().unwrap();
    assert_eq!(back.dtype(), f4.dtype());

    let mut spec = Spec::f32_row_major(&[2, 4]);
    spec.strides = Some(vec![1, 2]);
    spec.dtype = (17, 4, 1);
    let err = import_versioned(&p, &spec).unwrap_err();
    assert!(matches!(err, Error::UnsupportedLayout { .. }), "{err}");

    let mut spec = Spec::f32_row_major(&[1]);
    spec.dtype = (2, 32, 4); // float32x4
    let v = import_versioned(&p, &spec).unwrap();
    assert_eq!(v.itemsize(), Some(16));
    drop((a, copy, f4, back, v));
    assert_eq!(p.deleted(), p.produced());
}

#[test]
fn device_tensors_stay_handles() {
    let p = Producer::default();
    let mut spec = Spec::f32_row_major(&[2, 3]);
    spec.device = (2, 1);
    // SAFETY: fresh pointer from the test producer.
    let t = unsafe { DlpackTensor::from_versioned(p.versioned(&spec, bytes_of(&VALUES))) }.unwrap();
    assert_eq!(t.device(), Device::cuda(1));
    assert_eq!(t.shape(), &[2, 3]);
    let err = t.into_host().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotHostMemory {
                device: Device {
                    device_type: 2,
                    device_id: 1
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("cuda:1"), "{err}");
    assert_eq!(p.deleted(), 1, "refused device tensors are released");

    spec.device = (4242, 0);
    let err = import_versioned(&p, &spec).unwrap_err();
    assert!(err.to_string().contains("device type 4242"), "{err}");
    assert_eq!(p.deleted(), 2);

    // into_raw hands ownership on: the deleter is then the receiver's to call.
    spec.device = (2, 0);
    // SAFETY: fresh pointer from the test producer.
    let t = unsafe { DlpackTensor::from_versioned(p.versioned(&spec, bytes_of(&VALUES))) }.unwrap();
    let raw = t.into_raw();
    assert_eq!(p.deleted(), 2);
    // SAFETY: taking the pointer back, still owned by us.
    drop(unsafe { DlpackTensor::from_raw(raw) }.unwrap());
    assert_eq!(p.deleted(), 3);
}

/// A hostile spec and a check on the error it must give.
type Case = (&'static str, Spec, fn(&Error) -> bool);

/// Each hostile spec, the error it must give, and that the deleter ran exactly once.
#[test]
fn hostile_metadata_is_refused_with_typed_errors() {
    let base = Spec::f32_row_major(&[2, 3]);
    let cases: Vec<Case> = vec![
        (
            "major version 2",
            Spec {
                version: (2, 0),
                ..base.clone()
            },
            |e| matches!(e, Error::UnsupportedDlpackVersion { major: 2, .. }),
        ),
        (
            "major version 0",
            Spec {
                version: (0, 8),
                ..base.clone()
            },
            |e| matches!(e, Error::UnsupportedDlpackVersion { major: 0, .. }),
        ),
        (
            "negative ndim",
            Spec {
                ndim: -1,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "huge ndim",
            Spec {
                ndim: 1 << 20,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "NULL shape",
            Spec {
                shape: None,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "negative extent",
            Spec {
                shape: Some(vec![2, -3]),
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "overflowing element count",
            Spec {
                shape: Some(vec![i64::MAX, 3]),
                ..base.clone()
            },
            |e| matches!(e, Error::LayoutOverflow { .. }),
        ),
        (
            "overflowing strides",
            Spec {
                strides: Some(vec![i64::MAX, 1]),
                ..base.clone()
            },
            |e| {
                matches!(
                    e,
                    Error::LayoutOverflow { .. } | Error::InvalidDlpack { .. }
                )
            },
        ),
        (
            "negative extent below address 0",
            Spec {
                strides: Some(vec![-(1 << 60), 1]),
                ..base.clone()
            },
            |e| {
                matches!(
                    e,
                    Error::InvalidDlpack { .. } | Error::LayoutOverflow { .. }
                )
            },
        ),
        (
            "sign-extended byte_offset",
            Spec {
                byte_offset: (-8i64) as u64,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "NULL data with elements",
            Spec {
                null_data: true,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "zero-bit dtype",
            Spec {
                dtype: (2, 0, 1),
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "zero lanes",
            Spec {
                dtype: (2, 32, 0),
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
        (
            "padded sub-byte",
            Spec {
                dtype: (17, 4, 1),
                flags: 4,
                ..base.clone()
            },
            |e| matches!(e, Error::InvalidDlpack { .. }),
        ),
    ];
    for (what, spec, expected) in cases {
        for legacy in [false, true] {
            if legacy && (spec.version != (1, 3) || spec.flags != 0) {
                continue; // legacy tensors carry no version and no flags
            }
            let p = Producer::default();
            let result = if legacy {
                import_legacy(&p, &spec)
            } else {
                import_versioned(&p, &spec)
            };
            let err = result.expect_err(what);
            assert!(
                expected(&err),
                "{what} (legacy={legacy}): unexpected error {err:?}"
            );
            assert!(
                !err.to_string().is_empty()
                    && err.to_string().chars().next().unwrap().is_lowercase(),
                "{what}: {err}"
            );
            assert_eq!(
                p.deleted(),
                1,
                "{what} (legacy={legacy}): deleter must run exactly once"
            );
        }
    }
    // SAFETY: NULL is explicitly allowed and refused.
    let err = unsafe { DlpackTensor::from_versioned(std::ptr::null_mut()) }.unwrap_err();
    assert!(matches!(err, Error::InvalidDlpack { .. }));
}

#[test]
fn errors_name_what_was_wrong() {
    let p = Producer::default();
    let spec = Spec {
        shape: Some(vec![2, -3]),
        ..Spec::f32_row_major(&[2, 3])
    };
    let msg = import_versioned(&p, &spec).unwrap_err().to_string();
    assert!(
        msg.contains("[2, -3]") && msg.contains("f32") && msg.contains("cpu:0"),
        "{msg}"
    );
    let spec = Spec {
        version: (7, 1),
        ..Spec::f32_row_major(&[1])
    };
    let msg = import_versioned(&p, &spec).unwrap_err().to_string();
    assert_eq!(
        msg,
        "dlpack version 7.1 is not supported (ferry speaks 1.x); the tensor was released unread, ask the producer for a 1.x tensor"
    );
}

#[test]
fn exported_tensors_are_well_formed_for_foreign_consumers() {
    let a = HostArray::from_vec(vec![2, 3], VALUES.to_vec()).unwrap();
    let t = a.to_dlpack();
    let raw = t.into_raw();
    let ferry::RawDlpack::Versioned(m) = raw else {
        panic!("versioned export")
    };
    // SAFETY: reading the struct ferry just exported, as a consumer would, then releasing it.
    unsafe {
        let m = &*m;
        assert_eq!((m.version.major, m.version.minor), (1, 3));
        // READ_ONLY: `a` still reads the memory it lends.
        assert_eq!(m.flags, 1);
        let dl = &m.dl_tensor;
        assert_eq!((dl.device.device_type, dl.device.device_id), (1, 0));
        assert_eq!((dl.dtype.code, dl.dtype.bits, dl.dtype.lanes), (2, 32, 1));
        assert_eq!(std::slice::from_raw_parts(dl.shape, 2), &[2, 3]);
        assert_eq!(
            std::slice::from_raw_parts(dl.strides, 2),
            &[3, 1],
            "strides always written"
        );
        assert_eq!(dl.byte_offset, 0);
        assert_eq!(*dl.data.cast::<f32>().add(4), 4.0);
        m.deleter.unwrap()(raw_ptr(raw));
    }
    assert!(a.is_writable(), "the deleter released its hold");

    let copied = a.to_contiguous(ferry::CopyPolicy::Always).unwrap();
    assert!(
        !copied.to_dlpack().is_copied(),
        "a shared export is not the consumer's alone"
    );
    let view = copied.clone();
    assert!(!copied.into_dlpack().is_copied(), "another handle holds it");
    assert!(
        view.into_dlpack().is_copied(),
        "IS_COPIED for data ferry copied and hands over"
    );
    assert!(!a.clone().into_dlpack().is_copied(), "never copied");
}

fn raw_ptr(raw: ferry::RawDlpack) -> *mut ferry::dlpack_rs::ffi::DLManagedTensorVersioned {
    match raw {
        ferry::RawDlpack::Versioned(p) => p,
        ferry::RawDlpack::Legacy(_) => unreachable!(),
    }
}

#[test]
fn a_panic_while_holding_an_import_still_releases_it() {
    let p = Producer::default();
    let p2 = p.clone();
    let result = std::panic::catch_unwind(move || {
        let a = import_versioned(&p2, &Spec::f32_row_major(&[2, 3])).unwrap();
        let _v = a.view::<f32>().unwrap();
        panic!("user code panics while a view is alive");
    });
    assert!(result.is_err());
    assert_eq!(p.deleted(), 1);
}
