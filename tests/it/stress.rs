//! Concurrency: conversions from many threads over shared host arrays, shared imports and
//! shared framework tensors give the right values, and deleters still run exactly once.

use std::sync::Arc;

use ferry::{CopyPolicy, DlpackTensor, HostArray};
use ferry_tests::producer::{Producer, Spec, bytes_of};

const THREADS: usize = 8;
const ROUNDS: usize = 500;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn host_arrays_and_dlpack_handles_are_send_and_sync() {
    assert_send_sync::<HostArray>();
    assert_send_sync::<DlpackTensor>();
}

#[test]
fn shared_imports_convert_from_many_threads() {
    let producer = Producer::default();
    let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let mut spec = Spec::f32_row_major(&[8, 8]);
    spec.strides = Some(vec![1, 8]); // transposed: every thread's copy runs the gather kernel
    // SAFETY: a fresh pointer from the test producer.
    let shared =
        unsafe { HostArray::from_dlpack_versioned(producer.versioned(&spec, bytes_of(&values))) }
            .unwrap();
    let expected: f32 = values.iter().sum();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let a = shared.clone();
            scope.spawn(move || {
                for _ in 0..ROUNDS {
                    assert_eq!(a.view::<f32>().unwrap().sum(), expected);
                    let c = a.to_contiguous(CopyPolicy::IfNeeded).unwrap();
                    assert_eq!(c.view::<f32>().unwrap()[[1, 0]], 1.0);
                    let back = a.to_dlpack().into_host().unwrap();
                    assert_eq!(back.as_ptr(), a.as_ptr());
                    let legacy = a.to_dlpack_legacy().into_raw();
                    // SAFETY: a pointer ferry just exported, owned by this thread.
                    let again = unsafe { DlpackTensor::from_raw(legacy) }
                        .unwrap()
                        .into_host()
                        .unwrap();
                    assert_eq!(again.view::<f32>().unwrap(), a.view::<f32>().unwrap());
                }
            });
        }
    });
    assert_eq!(producer.deleted(), 0, "the shared import is still alive");
    drop(shared);
    assert_eq!(
        producer.deleted(),
        1,
        "exactly once after every thread's clones are gone"
    );
}

#[test]
fn many_producers_from_many_threads_release_exactly_once_each() {
    let producer = Arc::new(Producer::default());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let producer = producer.clone();
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let mut spec = Spec::f32_row_major(&[2, 3]);
                    if (t + i) % 3 == 0 {
                        spec.version = (9, 0); // refused: the deleter must still run once
                    }
                    let values = [t as f32, i as f32, 0.0, 0.0, 0.0, 0.0];
                    // SAFETY: a fresh pointer from the test producer.
                    let result = unsafe {
                        HostArray::from_dlpack_versioned(
                            producer.versioned(&spec, bytes_of(&values)),
                        )
                    };
                    if (t + i) % 3 == 0 {
                        assert!(
                            matches!(result, Err(ferry::Error::UnsupportedDlpackVersion { .. })),
                            "version 9 must be refused: {result:?}"
                        );
                    } else {
                        let a = result.expect("a valid tensor imports");
                        assert_eq!(a.view::<f32>().unwrap()[[0, 1]], i as f32);
                        assert_eq!(a.view::<f32>().unwrap()[[0, 0]], t as f32);
                    }
                }
            });
        }
    });
    assert_eq!(producer.produced(), THREADS * ROUNDS);
    assert_eq!(producer.deleted(), THREADS * ROUNDS);
}

#[cfg(feature = "candle")]
#[test]
fn shared_candle_tensors_convert_from_many_threads() {
    use ferry::ToHost;
    let t = candle_core::Tensor::arange(0f32, 120.0, &candle_core::Device::Cpu)
        .unwrap()
        .reshape((10, 12))
        .unwrap()
        .t()
        .unwrap();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let t = t.clone();
            scope.spawn(move || {
                for _ in 0..ROUNDS / 10 {
                    let h = t.to_host().unwrap();
                    assert_eq!(h.copies(), 0);
                    assert_eq!(h.view::<f32>().unwrap().sum(), (0..120).sum::<i32>() as f32);
                }
            });
        }
    });
}
