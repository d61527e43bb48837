//! Candle-specific checks beyond the generic suite: raw fp8/fp6/fp4 storage, the aliasing rule,
//! zero-copy moves into candle, device refusals without `cuda`.

use candle_core::{DType as CandleDType, Device, Tensor, Var};
use ferry::{CopyPolicy, DType, Error, ToHost, copy_totals, raw_dtypes};

#[test]
fn fp8_tensors_come_out_as_raw_bytes_without_copying() {
    let f = Tensor::new(&[[0.5f32, -1.0, 2.0], [448.0, 0.0, 3.5]], &Device::Cpu).unwrap();
    let f8 = f.to_dtype(CandleDType::F8E4M3).unwrap();
    let before = copy_totals();
    let host = f8.to_host().unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(host.dtype(), DType::Raw(raw_dtypes::FLOAT8_E4M3FN));
    assert!(matches!(host.view::<u8>(), Err(Error::NoTypedView { .. })));
    // Same bits as candle's own fp8 values, transposed too.
    let own: Vec<u8> = f8
        .flatten_all()
        .unwrap()
        .to_vec1::<float8::F8E4M3>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(host.as_bytes().unwrap(), own.as_slice());
    let t = f8.t().unwrap();
    let th = t
        .to_host()
        .unwrap()
        .to_contiguous(CopyPolicy::IfNeeded)
        .unwrap();
    let own_t: Vec<u8> = t
        .flatten_all()
        .unwrap()
        .to_vec1::<float8::F8E4M3>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(th.as_bytes().unwrap(), own_t.as_slice());
    // And back into candle.
    let back = ferry_candle::from_host(&host, &Device::Cpu).unwrap();
    assert_eq!(back.dtype(), CandleDType::F8E4M3);
    assert_eq!(
        back.to_dtype(CandleDType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        f.to_vec2::<f32>().unwrap()
    );
}

#[test]
fn views_share_candle_memory_and_in_place_writes_wait_for_them() {
    let var = Var::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
    let host = var.as_tensor().to_host().unwrap();
    assert!(host.is_read_only(), "a view of candle storage is read-only");
    assert_eq!(
        host.as_ptr(),
        var.as_tensor().to_host().unwrap().as_ptr(),
        "views share candle's memory"
    );
    // An in-place write (on another thread: on this one it would wait forever) waits until the
    // view is gone, so the view never sees its memory change.
    let writer = {
        let var = var.clone();
        std::thread::spawn(move || {
            var.set(&Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu).unwrap())
                .unwrap()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        host.view::<f32>().unwrap().as_slice().unwrap(),
        &[1.0, 2.0, 3.0],
        "the view's memory does not change under it"
    );
    drop(host);
    writer.join().unwrap();
    assert_eq!(
        var.as_tensor()
            .to_host()
            .unwrap()
            .view::<f32>()
            .unwrap()
            .as_slice()
            .unwrap(),
        &[10.0, 20.0, 30.0],
        "the write ran once the view was dropped"
    );
    // The view keeps the storage alive after the tensor is gone.
    let t = Tensor::arange(0u32, 6, &Device::Cpu)
        .unwrap()
        .reshape((2, 3))
        .unwrap();
    let h = t.narrow(1, 1, 2).unwrap().to_host().unwrap();
    drop(t);
    assert_eq!(
        h.view::<u32>().unwrap(),
        ferry::ndarray::arr2(&[[1u32, 2], [4, 5]]).into_dyn()
    );
}

#[test]
fn owned_buffers_move_into_candle() {
    let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let a = ferry::HostArray::from_vec(vec![3, 4], data).unwrap();
    let ptr = a.as_ptr();
    let before = copy_totals();
    let t = ferry_candle::into_tensor(a, &Device::Cpu).unwrap();
    assert_eq!(
        copy_totals().since(before).copies,
        0,
        "a uniquely owned row-major Vec moves in"
    );
    assert_eq!(
        t.to_host().unwrap().as_ptr(),
        ptr,
        "candle's storage is ferry's old buffer"
    );

    // Shared arrays are copied once.
    let shared = ferry::HostArray::from_vec(vec![2], vec![1i64, 2]).unwrap();
    let keep = shared.clone();
    let before = copy_totals();
    let t = ferry_candle::into_tensor(shared, &Device::Cpu).unwrap();
    assert_eq!(copy_totals().since(before).copies, 1);
    assert_ne!(t.to_host().unwrap().as_ptr(), keep.as_ptr());
}

#[test]
fn cuda_without_the_feature_is_a_typed_error() {
    let producer = ferry_tests::producer::Producer::default();
    let mut spec = ferry_tests::producer::Spec::f32_row_major(&[2]);
    spec.device = (2, 0);
    // SAFETY: a fresh pointer from the test producer.
    let t = unsafe { ferry::DlpackTensor::from_versioned(producer.versioned(&spec, vec![0; 8])) }
        .unwrap();
    let err = ferry_candle::from_dlpack(t, &Device::Cpu).unwrap_err();
    if cfg!(feature = "cuda") {
        assert!(!matches!(err, Error::NotCompiled { .. }));
    } else {
        assert!(matches!(err, Error::NotCompiled { .. }), "{err}");
        assert!(err.to_string().contains("feature `cuda`"), "{err}");
    }
    assert_eq!(producer.deleted(), 1);
}
