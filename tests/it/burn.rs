//! Burn-specific checks beyond the generic suite: both CPU backends (Flex and the deprecated
//! NdArray) zero-copy, the batched read, bool storage, quantized refusal, zero-copy sharing of
//! host memory with Flex.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ferry::burn_adapter as fb;
use ferry::{CopyPolicy, DType, Error, HostArray, ToHost, copy_totals};

#[allow(deprecated)]
fn devices() -> [(&'static str, Device); 2] {
    [("flex", Device::flex()), ("ndarray", Device::ndarray())]
}

#[test]
fn both_cpu_backends_come_out_zero_copy_with_real_strides() {
    for (name, device) in devices() {
        let t = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|i| i as f32).collect::<Vec<_>>(), [3, 4]),
            &device,
        );
        let tt = t.clone().transpose();
        let before = copy_totals();
        let host = tt.to_host().unwrap();
        assert_eq!(copy_totals().since(before).copies, 0, "{name}");
        assert!(
            !host.is_standard_layout(),
            "{name}: transposed view keeps its strides {:?}",
            host.strides()
        );
        let own = tt.clone().into_data();
        assert_eq!(
            host.to_array::<f32>().unwrap().as_slice().unwrap(),
            own.as_slice::<f32>().unwrap(),
            "{name}"
        );
        assert!(
            host.is_read_only(),
            "{name}: a view of burn memory is read-only"
        );

        let ints = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 4], [2, 2]),
            (&device, burn::tensor::DType::I64),
        );
        let hi = ints.to_host().unwrap();
        assert_eq!(hi.dtype(), DType::I64, "{name}");
        assert_eq!(hi.copies(), 0, "{name}");

        let bools =
            Tensor::<1, Bool>::from_data(TensorData::new(vec![true, false, true], [3]), &device);
        let hb = bools.to_host().unwrap();
        assert_eq!(
            hb.view::<bool>().unwrap().as_slice().unwrap(),
            &[true, false, true],
            "{name}"
        );
    }
}

#[test]
fn batched_read_equals_one_by_one() {
    let device = Device::flex();
    let tensors: Vec<Tensor<2>> = (0..5)
        .map(|k| {
            Tensor::<2>::from_data(
                TensorData::new((0..6).map(|i| (i * k) as f32).collect::<Vec<_>>(), [2, 3]),
                &device,
            )
        })
        .collect();
    let batch = fb::to_host_batch(&tensors).unwrap();
    assert_eq!(batch.len(), tensors.len());
    for (t, h) in tensors.iter().zip(&batch) {
        let single = t.to_host().unwrap();
        assert_eq!(h.view::<f32>().unwrap(), single.view::<f32>().unwrap());
        assert_eq!(h.copies(), 0, "CPU tensors in a batch are views too");
    }
}

#[test]
fn host_memory_is_shared_with_flex_without_copying() {
    let a = HostArray::from_vec(vec![3, 4], (0..12).map(|i| i as f32).collect()).unwrap();
    let transposed = HostArray::from_array(a.to_array::<f32>().unwrap().reversed_axes());
    for host in [a.clone(), transposed] {
        let values = host.to_array::<f32>().unwrap();
        let before = copy_totals();
        let t: Tensor<2> = fb::from_host(&host, &Device::flex()).unwrap();
        assert_eq!(
            copy_totals().since(before).copies,
            0,
            "Flex wraps host memory, strides included"
        );
        let back = t.to_host().unwrap();
        assert_eq!(back.as_ptr(), host.as_ptr(), "same memory");
        assert_eq!(back.view::<f32>().unwrap(), host.view::<f32>().unwrap());
        // Burn computes on it (in place where it may) and never writes into it.
        let doubled = (t * 2.0).into_data();
        let expected: Vec<f32> = values.iter().map(|v| v * 2.0).collect();
        assert_eq!(doubled.as_slice::<f32>().unwrap(), expected.as_slice());
        assert_eq!(
            host.to_array::<f32>().unwrap(),
            values,
            "the shared host memory is unchanged"
        );
    }
}

#[test]
#[allow(deprecated)]
fn owned_buffers_move_into_ndarray() {
    let data: Vec<i32> = (0..8).collect();
    let a = HostArray::from_vec(vec![2, 4], data).unwrap();
    let ptr = a.as_ptr();
    let before = copy_totals();
    let t: Tensor<2, Int> = fb::into_tensor(a, &Device::ndarray()).unwrap();
    assert_eq!(copy_totals().since(before).copies, 0);
    assert_eq!(t.to_host().unwrap().as_ptr(), ptr);
    let half = HostArray::from_vec(vec![1, 1], vec![ferry::half::f16::ONE]).unwrap();
    let err = fb::from_host::<2, burn::tensor::Float>(&half, &Device::ndarray()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedDtype { .. }), "{err}");
}

#[test]
fn refusals_are_typed() {
    let a = HostArray::from_vec(vec![4], vec![1.0f32; 4]).unwrap();
    let err = fb::from_host::<2, burn::tensor::Float>(&a, &Device::flex()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TensorRank {
                backend: "burn",
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    // The message names the type that fits, since `ferry::Burn` alone is rank 2.
    assert!(err.to_string().contains("`ferry::Burn<1>`"), "{err}");
    let err = fb::from_host::<1, Int>(&a, &Device::flex()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedDtype {
                dtype: DType::F32,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Float"), "{err}");
    let c = a.cast::<ferry::num_complex::Complex32>().unwrap();
    assert!(matches!(
        fb::from_host::<1, burn::tensor::Float>(&c, &Device::flex()),
        Err(Error::UnsupportedDtype { .. })
    ));
    let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &Device::flex());
    assert_eq!(t.to_host_with(CopyPolicy::Never).unwrap().copies(), 0);
}

/// Quantized tensors are refused with a typed error that says to dequantize, alone and in a
/// batch, on Flex (which stores them natively); dequantizing first is the way out.
#[test]
fn quantized_tensors_are_refused_with_a_hint_to_dequantize() {
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue};
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::Native);
    let t = Tensor::<2>::from_data(
        TensorData::new(vec![-3.0f32, -1.5, 0.0, 1.5, 3.0, 4.5], [2, 3]),
        &Device::flex(),
    );
    let q = t.clone().quantize_dynamic(&scheme);
    let err = q.to_host().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Quantized {
                backend: "burn",
                ref shape,
                ..
            } if shape == &[2, 3]
        ),
        "{err}"
    );
    assert!(err.to_string().contains("dequantize"), "{err}");
    let err = fb::to_host_batch(&[t.clone(), q.clone()]).unwrap_err();
    assert!(err.to_string().contains("dequantize"), "{err}");
    let back = q.dequantize().to_host().unwrap();
    assert_eq!(back.shape(), [2, 3]);
}

/// Tensors ferry cannot view in place (here Burn's autodiff backend over Flex; on a GPU, CUDA or
/// wgpu) are read through Burn: one copy each, all issued in one `Transaction`, into buffers
/// that are the arrays' own. `Never` refuses them.
#[test]
fn batched_reads_of_other_backends_copy_once_each_in_one_transaction() {
    let device = Device::autodiff(Device::flex());
    let tensors: Vec<Tensor<2>> = (0..4)
        .map(|k| {
            Tensor::<2>::from_data(
                TensorData::new((0..6).map(|i| (i + k) as f32).collect::<Vec<_>>(), [2, 3]),
                &device,
            )
        })
        .collect();
    let before = copy_totals();
    let batch = fb::to_host_batch(&tensors).unwrap();
    assert_eq!(copy_totals().since(before).copies, tensors.len() as u64);
    for (k, h) in batch.into_iter().enumerate() {
        assert_eq!(h.copies(), 1, "one copy through Burn's read");
        assert_eq!(h.copy_log()[0].reason, ferry::CopyReason::DeviceTransfer);
        assert!(h.is_writable(), "a fresh copy is the array's own");
        let expected: Vec<f32> = (0..6).map(|i| (i + k) as f32).collect();
        assert_eq!(
            h.view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            expected
        );
    }
    let single = tensors[1].to_host().unwrap();
    assert_eq!(single.copies(), 1);
    assert!(matches!(
        tensors[0].to_host_with(CopyPolicy::Never),
        Err(Error::NeedsCopy { .. })
    ));
}
