//! tch-specific checks beyond the generic suite: grad and conjugate handling, storage offsets,
//! fp8, libtorch's own DLPack both ways, zero-copy imports kept alive by libtorch.

use ferry::tch_adapter as ft;
use ferry::{CopyPolicy, DType, HostArray, ToHost, copy_totals, raw_dtypes};
use tch::{Device, Kind, Tensor};

#[test]
fn views_are_zero_copy_with_offsets() {
    // The base is dropped: the view is the only handle on the storage (one shared with a
    // live tensor is copied, `shared_storages_are_copied`).
    let v = Tensor::arange(24, (Kind::Float, Device::Cpu))
        .reshape([4, 6])
        .narrow(0, 1, 2)
        .narrow(1, 2, 3);
    assert!(ft::storage_offset(&v).unwrap() > 0);
    let before = copy_totals();
    let h = v.to_host().unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(
        h.view::<f32>().unwrap(),
        ferry::ndarray::arr2(&[[8.0f32, 9.0, 10.0], [14.0, 15.0, 16.0]]).into_dyn()
    );
    assert!(h.is_read_only());
}

#[test]
fn views_of_every_rank_read_what_libtorch_holds() {
    // 0 axes; 4 (a host array keeps them inline); 18 (past the 16 axes one shim call reports
    // in place, where the view asks tch for its sizes and strides).
    let ranks: [Vec<i64>; 3] = [vec![], vec![2, 1, 3, 2], [vec![1; 16], vec![3, 2]].concat()];
    for shape in ranks {
        let count: i64 = shape.iter().product();
        let t = if shape.len() >= 2 {
            Tensor::arange(count, (Kind::Float, Device::Cpu))
                .reshape(&shape)
                .transpose(-1, -2)
        } else {
            Tensor::arange(count, (Kind::Float, Device::Cpu)).reshape(&shape)
        };
        let h = t.to_host().unwrap();
        assert_eq!(h.copies(), 0, "rank {}", shape.len());
        let sizes: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let strides: Vec<isize> = t.stride().iter().map(|&s| s as isize).collect();
        assert_eq!((h.shape(), h.strides()), (&sizes[..], &strides[..]));
        // What libtorch holds: arange in row-major order over `shape`, the last two axes
        // swapped (computed here: tch's own Vec conversion trips memcheck inside libtorch).
        let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        let values = (0..count).map(|v| v as f32).collect();
        let mut expected = ferry::ndarray::ArrayD::from_shape_vec(dims, values).unwrap();
        if shape.len() >= 2 {
            expected.swap_axes(shape.len() - 2, shape.len() - 1);
        }
        assert_eq!(h.view::<f32>().unwrap(), expected, "rank {}", shape.len());
    }
}

#[test]
fn grad_is_detached_and_conjugates_resolved() {
    let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let h = w.to_host().unwrap();
    assert_eq!(h.copies(), 0, "detach shares memory");
    assert_eq!(h.view::<f32>().unwrap().sum(), 4.0);

    let re = Tensor::from_slice(&[1.0f32, 2.0]);
    let im = Tensor::from_slice(&[3.0f32, -4.0]);
    let z = Tensor::complex(&re, &im);
    let zc = z.conj();
    let h = zc.to_host().unwrap();
    assert_eq!(h.dtype(), DType::C64);
    assert_eq!(
        h.copies(),
        1,
        "resolving the conjugate bit copies, and says so"
    );
    let v = h.view::<ferry::num_complex::Complex32>().unwrap();
    assert_eq!(v[[1]], ferry::num_complex::Complex32::new(2.0, 4.0));
}

#[test]
fn fp8_comes_out_raw() {
    let t = Tensor::from_slice(&[0.5f32, 1.0, -2.0]).to_kind(Kind::Float8e4m3fn);
    let h = t.to_host().unwrap();
    assert_eq!(h.dtype(), DType::Raw(raw_dtypes::FLOAT8_E4M3FN));
    assert_eq!(h.copies(), 0);
    assert_eq!(h.as_bytes().unwrap().len(), 3);
}

#[test]
fn libtorch_dlpack_both_ways() {
    let t = Tensor::arange(6, (Kind::Int64, Device::Cpu))
        .reshape([2, 3])
        .transpose(0, 1);
    let d = ft::to_dlpack(&t).unwrap();
    assert_eq!(d.shape(), &[3, 2]);
    assert_eq!(
        d.strides(),
        &[1, 3],
        "libtorch's own exporter keeps the strides"
    );
    let h = d.into_host().unwrap();
    assert_eq!(
        h.view::<i64>().unwrap(),
        ferry::ndarray::arr2(&[[0i64, 3], [1, 4], [2, 5]]).into_dyn()
    );

    // ferry → libtorch: an array ferry holds alone moves in without a copy, kept alive by
    // libtorch's deleter; a borrowed one is copied into memory libtorch allocates.
    let data: Vec<f64> = (0..6).map(f64::from).collect();
    let a = HostArray::from_vec(vec![2, 3], data).unwrap();
    let before = copy_totals();
    let copied = ft::from_host(&a, Device::Cpu).unwrap();
    assert_eq!(copy_totals().since(before).copies, 1);
    assert_ne!(copied.data_ptr().cast::<u8>().cast_const(), a.as_ptr());
    let ptr = a.as_ptr();
    let before = copy_totals();
    let t = ft::into_tensor(a, Device::Cpu).unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(
        t.data_ptr().cast::<u8>().cast_const(),
        ptr,
        "libtorch reads ferry's buffer"
    );
    assert_eq!(t.sum(Kind::Double).double_value(&[]), 15.0);
}

/// Pinned and managed host memory (what a CUDA `to_host` returns) reaches libtorch as kDLCPU,
/// shared: `at::fromDLPackVersioned` throws "Unsupported device_type: 3" (13 for managed) for
/// the DLPack label such memory has, which broke every CUDA → host → tch hand-off. Made here
/// with ordinary memory labelled pinned.
#[test]
fn pinned_and_managed_host_arrays_reach_libtorch_as_cpu_memory() {
    use ferry::{Access, MemoryKind, RawParts};
    let mut data: Vec<f32> = (0..6).map(|i| i as f32).collect();
    for memory in [MemoryKind::CudaHost, MemoryKind::CudaManaged] {
        for access in [Access::Exclusive, Access::Shared] {
            let parts = RawParts {
                data: data.as_mut_ptr().cast_const().cast(),
                dtype: DType::F32,
                shape: vec![2, 3],
                strides: vec![3, 1],
                memory,
                access,
            };
            // SAFETY: the 24 bytes live until the end of the test, after every tensor made from
            // them, and nothing else reads or writes them meanwhile (libtorch may write: it
            // does not here).
            let pinned =
                unsafe { HostArray::from_raw_parts(parts, ferry::dlpack::owner(())) }.unwrap();
            assert_ne!(pinned.device(), ferry::Device::CPU);
            let t = ft::from_host(&pinned, Device::Cpu).unwrap();
            assert_eq!(t.sum(Kind::Float).double_value(&[]), 15.0);
            // Handed over (ferry keeps no handle): memory ferry owns is shared with libtorch as
            // kDLCPU memory; a producer's (`Shared`) is copied, as ferry hands libtorch only
            // memory it holds alone.
            let ptr = pinned.as_ptr();
            let u = ft::from_dlpack(pinned.into_dlpack(), Device::Cpu).unwrap();
            let shared = u.data_ptr().cast::<u8>().cast_const() == ptr;
            assert_eq!(shared, access == Access::Exclusive, "{access:?}");
            assert_eq!(u.sum(Kind::Float).double_value(&[]), 15.0);
        }
    }
}

#[test]
fn negative_strides_and_read_only_arrays_are_copied_once() {
    let a = HostArray::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
    let mut flipped = a.to_array::<f32>().unwrap();
    flipped.invert_axis(ferry::ndarray::Axis(0));
    let flipped = HostArray::from_array(flipped);
    assert!(flipped.strides()[0] < 0);
    let before = copy_totals();
    let t = ft::from_host(&flipped, Device::Cpu).unwrap();
    assert_eq!(copy_totals().since(before).copies, 1);
    assert_eq!(
        t.to_host()
            .unwrap()
            .to_contiguous(CopyPolicy::IfNeeded)
            .unwrap()
            .view::<f32>()
            .unwrap(),
        flipped.view::<f32>().unwrap()
    );

    let ro = a.into_read_only();
    let before = copy_totals();
    let t = ft::from_host(&ro, Device::Cpu).unwrap();
    assert_eq!(
        copy_totals().since(before).copies,
        1,
        "libtorch could write: read-only memory is not shared"
    );
    assert_ne!(t.data_ptr().cast::<u8>().cast_const(), ro.as_ptr());
}

#[test]
fn unsupported_dtypes_are_refused() {
    let a = HostArray::from_vec(vec![2], vec![1u32, 2]).unwrap();
    let err = ft::from_host(&a, Device::Cpu).unwrap_err();
    assert!(
        matches!(
            err,
            ferry::Error::UnsupportedDtype {
                dtype: DType::U32,
                ..
            }
        ),
        "{err}"
    );
    let cuda = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    assert_eq!(cuda.to_host_with(CopyPolicy::Never).unwrap().copies(), 0);
}

/// A quantized libtorch tensor is refused as what it is, with its shape and the way out.
#[test]
fn quantized_tch_tensors_are_refused_as_quantized() {
    let t =
        tch::Tensor::from_slice(&[1f32, 2.0, 3.0]).quantize_per_tensor(0.1, 0, tch::Kind::QInt8);
    let err = ferry::to_host(&t).unwrap_err();
    assert!(
        matches!(err, ferry::Error::Quantized { backend: "tch", ref shape, .. } if shape == &[3]),
        "{err}"
    );
    assert!(err.to_string().contains("dequantize"), "{err}");
    let back = ferry::to_host(&t.dequantize()).unwrap();
    assert_eq!(back.shape(), [3]);
}

/// `load_cuda` loads libtorch's CUDA library (which `--as-needed` linking drops, tch-rs #980)
/// with feature `cuda`, after which libtorch has its CUDA kernels: making a CUDA tensor then
/// fails only for want of a GPU, never with "Could not run ... from the 'CUDA' backend".
/// Without the feature it is a typed error.
#[test]
fn load_cuda_loads_libtorch_cuda_with_the_feature_and_is_a_typed_error_without() {
    let loaded = ft::load_cuda();
    if cfg!(feature = "cuda") {
        loaded.unwrap();
        ft::load_cuda().unwrap(); // once is enough; again is fine
        if let Err(e) = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0))) {
            assert!(!e.to_string().contains("'CUDA' backend"), "{e}");
        }
    } else {
        assert!(
            matches!(loaded, Err(ferry::Error::NotCompiled { .. })),
            "{loaded:?}"
        );
    }
}
