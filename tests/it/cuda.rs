//! CUDA paths on a real GPU: built with `--features cuda` only by `cargo xtask gpu-bundle` and
//! run by the bundle's `run.sh` on a machine with an NVIDIA driver (CI compiles them, with
//! clippy, but has no GPU to run them). Every check compares with the framework's own result.

use ferry::{CopyPolicy, HostArray};

/// The device ordinal the bundle tests on.
const ORDINAL: usize = 0;

/// Row-major bytes of a host array.
fn bytes(host: &HostArray) -> Vec<u8> {
    host.to_contiguous(CopyPolicy::IfNeeded)
        .unwrap()
        .as_bytes()
        .unwrap()
        .to_vec()
}

#[cfg(feature = "candle")]
mod candle {
    use candle_core::{DType as CandleDType, Device, Tensor};
    use ferry::{CopyReason, HostArray, MemoryKind};

    use super::{ORDINAL, bytes};

    fn gpu() -> Device {
        Device::new_cuda(ORDINAL).expect("a CUDA device (the bundle's run.sh checks nvidia-smi)")
    }

    /// Every dtype candle keeps on CUDA that ferry reads (fp6/fp4 have no CPU cast to test).
    const DTYPES: [CandleDType; 10] = [
        CandleDType::U8,
        CandleDType::U32,
        CandleDType::I16,
        CandleDType::I32,
        CandleDType::I64,
        CandleDType::BF16,
        CandleDType::F16,
        CandleDType::F32,
        CandleDType::F64,
        CandleDType::F8E4M3,
    ];

    /// The bytes a strided view reaches in its storage: one element past its farthest offset
    /// from its first (candle's strides are never negative).
    fn span_bytes(t: &Tensor) -> u64 {
        let layout = t.layout();
        if layout.dims().contains(&0) {
            return 0;
        }
        let last: usize = layout
            .dims()
            .iter()
            .zip(layout.stride())
            .map(|(d, s)| (d - 1) * s)
            .sum();
        ((last + 1) * t.dtype().size_in_bytes()) as u64
    }

    /// Candle's own read of `t` (to the CPU device), through ferry's zero-copy CPU view.
    fn own_bytes(t: &Tensor) -> Vec<u8> {
        bytes(&ferry_candle::to_host(&t.to_device(&Device::Cpu).unwrap()).unwrap())
    }

    /// Views of a 6×8 tensor: itself, transposed, narrowed both ways, broadcast.
    fn views(base: &Tensor) -> Vec<(&'static str, Tensor)> {
        vec![
            ("contiguous", base.clone()),
            ("transposed", base.t().unwrap()),
            ("narrowed rows", base.narrow(0, 2, 3).unwrap()),
            ("narrowed columns", base.narrow(1, 3, 4).unwrap()),
            (
                "broadcast row",
                base.narrow(0, 4, 1).unwrap().broadcast_as((5, 8)).unwrap(),
            ),
            ("empty", base.narrow(0, 1, 0).unwrap()),
        ]
    }

    #[test]
    fn candle_cuda_views_come_to_pinned_host_memory_copying_only_the_viewed_span() {
        let gpu = gpu();
        for dtype in DTYPES {
            let base = Tensor::arange(0f32, 48.0, &Device::Cpu)
                .unwrap()
                .reshape((6, 8))
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .to_device(&gpu)
                .unwrap();
            for (name, view) in views(&base) {
                let host = ferry_candle::to_host(&view).unwrap();
                assert_eq!(host.shape(), view.dims(), "{dtype:?} {name}");
                assert_eq!(bytes(&host), own_bytes(&view), "{dtype:?} {name}");
                let span = span_bytes(&view);
                if span == 0 {
                    continue;
                }
                assert_eq!(host.memory(), MemoryKind::CudaHost, "{dtype:?} {name}");
                assert!(
                    host.is_writable(),
                    "{dtype:?} {name}: a fresh copy is its own"
                );
                let log = host.copy_log();
                assert_eq!(log.len(), 1, "{dtype:?} {name}: one copy");
                assert_eq!(log[0].reason, CopyReason::DeviceTransfer);
                assert_eq!(log[0].bytes, span, "{dtype:?} {name}: only the span");
            }
        }
    }

    #[test]
    fn candle_cuda_to_host_waits_for_work_queued_on_another_thread() {
        let gpu = gpu();
        for _ in 0..8 {
            let device = gpu.clone();
            // Produced on thread A, on its per-thread stream (a matmul long enough to still
            // run when B reads) ...
            let product = std::thread::spawn(move || {
                let a = Tensor::ones((2048, 2048), CandleDType::F32, &device).unwrap();
                a.matmul(&a).unwrap()
            })
            .join()
            .unwrap();
            // ... and read on thread B.
            let host = std::thread::spawn(move || ferry_candle::to_host(&product).unwrap())
                .join()
                .unwrap();
            let values = host.view::<f32>().unwrap();
            assert!(values.iter().all(|&v| v == 2048.0));
        }
    }

    #[test]
    fn host_arrays_go_to_candle_cuda_and_back() {
        let gpu = gpu();
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        let host = HostArray::from_vec(vec![4, 6], values.clone()).unwrap();
        let transposed = HostArray::from_array(host.to_array::<f32>().unwrap().reversed_axes());
        for (name, array) in [("row-major", host), ("transposed", transposed)] {
            let t = ferry_candle::from_host(&array, &gpu).unwrap();
            assert!(t.device().is_cuda(), "{name}");
            assert_eq!(own_bytes(&t), bytes(&array), "{name}");
            // And a pinned array from a CUDA read goes back up too.
            let pinned = ferry_candle::to_host(&t).unwrap();
            let again = ferry_candle::from_host(&pinned, &gpu).unwrap();
            assert_eq!(own_bytes(&again), bytes(&array), "{name} via pinned memory");
        }
    }

    #[test]
    fn candle_cuda_dlpack_exports_survive_either_drop_order_and_a_drop_on_a_fresh_thread() {
        let gpu = gpu();
        for order in ["export first", "tensor first", "fresh thread"] {
            let t = Tensor::arange(0f32, 4096.0, &gpu)
                .unwrap()
                .reshape((64, 64))
                .unwrap();
            let expected = own_bytes(&t);
            let export = ferry_candle::to_dlpack(&t).unwrap();
            assert!(export.device().is_cuda(), "{order}");
            let imported = ferry_candle::from_dlpack(export, &gpu).unwrap();
            assert_eq!(own_bytes(&imported), expected, "{order}");
            let export = ferry_candle::to_dlpack(&t).unwrap();
            match order {
                "export first" => {
                    drop(export);
                    drop(t);
                }
                "tensor first" => {
                    drop(t);
                    drop(export);
                }
                _ => {
                    drop(t);
                    std::thread::spawn(move || drop(export)).join().unwrap();
                }
            }
            // The device still works after the owner was released on any thread.
            let after = Tensor::ones(4, CandleDType::F32, &gpu).unwrap();
            assert_eq!(
                own_bytes(&after),
                bytes(&HostArray::from_vec(vec![4], vec![1f32; 4]).unwrap())
            );
        }
    }

    #[test]
    fn device_and_pinned_memory_is_freed_when_dropped_on_a_thread_that_never_used_cuda() {
        let gpu = gpu();
        let Device::Cuda(cuda) = &gpu else {
            unreachable!("gpu() is a CUDA device")
        };
        let ctx = cuda.cuda_stream().context().clone();
        let free_bytes = || {
            ctx.synchronize().unwrap();
            ctx.mem_get_info().unwrap().0
        };
        let before = free_bytes();
        for _ in 0..16 {
            // 64 MiB each: a leak of them all would be 1 GiB.
            let t = Tensor::zeros(16 << 20, CandleDType::F32, &gpu).unwrap();
            let export = ferry_candle::to_dlpack(&t).unwrap();
            let host = ferry_candle::to_host(&t.narrow(0, 0, 1024).unwrap()).unwrap();
            drop(t);
            std::thread::spawn(move || {
                drop(export);
                drop(host);
            })
            .join()
            .unwrap();
        }
        let after = free_bytes();
        assert!(
            before.saturating_sub(after) < 256 << 20,
            "device memory went from {before} to {after} bytes free"
        );
    }

    #[test]
    fn a_tensor_made_on_a_side_stream_imports_on_the_default_one_after_its_work() {
        let gpu = gpu();
        // A second candle device on the same GPU, with a stream of its own.
        let side = Device::new_cuda_with_stream(ORDINAL).expect("a second CUDA stream");
        for _ in 0..4 {
            let a = Tensor::ones((2048, 2048), CandleDType::F32, &side).unwrap();
            let product = a.matmul(&a).unwrap();
            let export = ferry_candle::to_dlpack(&product).unwrap();
            let imported = ferry_candle::from_dlpack(export, &gpu).unwrap();
            let host = ferry_candle::to_host(&imported).unwrap();
            assert!(host.view::<f32>().unwrap().iter().all(|&v| v == 2048.0));
        }
    }

    #[test]
    fn cuda_dlpack_tensors_of_another_ordinal_or_layout_are_typed_errors() {
        let gpu = gpu();
        let t = Tensor::arange(0f32, 12.0, &gpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        // A transposed CUDA export is imported device-to-device only when row-major.
        let export = ferry_candle::to_dlpack(&t.t().unwrap()).unwrap();
        let err = ferry_candle::from_dlpack(export, &gpu).unwrap_err();
        assert!(
            matches!(err, ferry::Error::UnsupportedLayout { .. }),
            "{err}"
        );
        // A CUDA export imported onto the CPU device says where it lives.
        let export = ferry_candle::to_dlpack(&t).unwrap();
        let err = ferry_candle::from_dlpack(export, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ferry::Error::DeviceMismatch { .. }), "{err}");
    }
}

#[cfg(feature = "burn")]
mod burn {
    use burn::tensor::{Bool, DType as BurnDType, Device, Int, Tensor, TensorData};
    use ferry::burn_adapter as fb;
    use ferry::{CopyReason, HostArray};

    use super::{ORDINAL, bytes};

    fn gpu() -> Device {
        Device::cuda(ORDINAL)
    }

    /// Burn's own read of a tensor, as bytes.
    fn own_bytes<const D: usize, K: ferry::burn_adapter::BurnKind>(t: &Tensor<D, K>) -> Vec<u8>
    where
        Tensor<D, K>: Clone,
    {
        t.clone().into_data().as_bytes().to_vec()
    }

    #[test]
    fn burn_cuda_tensors_of_every_layout_and_dtype_come_to_host_equal_to_burns_read() {
        let gpu = gpu();
        for dtype in [
            BurnDType::F32,
            BurnDType::F16,
            BurnDType::BF16,
            BurnDType::F64,
        ] {
            let base = Tensor::<2>::from_data(
                TensorData::new((0..48).map(|i| i as f32).collect::<Vec<_>>(), [6, 8]),
                (&gpu, dtype),
            );
            for (name, view) in [
                ("contiguous", base.clone()),
                ("transposed", base.clone().transpose()),
                ("narrowed", base.clone().narrow(1, 3, 4)),
                ("broadcast", base.clone().narrow(0, 4, 1).expand([5, 8])),
            ] {
                let host = fb::to_host(&view).unwrap();
                assert_eq!(host.shape(), view.dims(), "{dtype:?} {name}");
                assert_eq!(bytes(&host), own_bytes(&view), "{dtype:?} {name}");
                assert_eq!(host.copies(), 1, "{dtype:?} {name}");
                assert_eq!(host.copy_log()[0].reason, CopyReason::DeviceTransfer);
            }
        }
        for dtype in [BurnDType::I32, BurnDType::I64, BurnDType::U8] {
            let ints = Tensor::<2, Int>::from_data(
                TensorData::new((0..12i64).collect::<Vec<_>>(), [3, 4]),
                (&gpu, dtype),
            );
            let view = ints.transpose();
            let host = fb::to_host(&view).unwrap();
            assert_eq!(bytes(&host), own_bytes(&view), "{dtype:?}");
        }
        let bools =
            Tensor::<1, Bool>::from_data(TensorData::new(vec![true, false, true], [3]), &gpu);
        let host = fb::to_host(&bools).unwrap();
        assert_eq!(
            host.view::<bool>().unwrap().as_slice().unwrap(),
            &[true, false, true]
        );
    }

    #[test]
    fn a_mixed_batch_of_cuda_and_cpu_tensors_reads_each_device_in_its_own_transaction() {
        let devices = [gpu(), Device::flex(), gpu(), Device::autodiff(gpu())];
        let tensors: Vec<Tensor<2>> = devices
            .iter()
            .enumerate()
            .map(|(k, device)| {
                Tensor::<2>::from_data(
                    TensorData::new(
                        (0..6).map(|i| (i * 10 + k) as f32).collect::<Vec<_>>(),
                        [2, 3],
                    ),
                    device,
                )
                .transpose()
            })
            .collect();
        let batch = fb::to_host_batch(&tensors).unwrap();
        assert_eq!(batch.len(), tensors.len());
        for (k, (t, h)) in tensors.iter().zip(&batch).enumerate() {
            assert_eq!(bytes(h), own_bytes(t), "tensor {k}");
        }
    }

    #[test]
    fn host_arrays_go_to_burn_cuda_and_back() {
        let gpu = gpu();
        let host = HostArray::from_vec(vec![4, 6], (0..24).map(|i| i as f32).collect()).unwrap();
        let transposed = HostArray::from_array(host.to_array::<f32>().unwrap().reversed_axes());
        for (name, array) in [("row-major", host), ("transposed", transposed)] {
            let t: Tensor<2> = fb::from_host(&array, &gpu).unwrap();
            assert_eq!(t.device(), gpu, "{name}");
            assert_eq!(own_bytes(&t), bytes(&array), "{name}");
            // A Burn CUDA tensor exported over DLPack arrives as host memory.
            let back: Tensor<2> =
                fb::from_dlpack(fb::to_dlpack(&t).unwrap(), &Device::flex()).unwrap();
            assert_eq!(own_bytes(&back), bytes(&array), "{name} over DLPack");
        }
    }
}
