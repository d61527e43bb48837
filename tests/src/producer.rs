//! A counting DLPack producer: builds managed tensors with any metadata (hostile included) over a
//! real buffer, and counts deleter calls so tests can prove each runs exactly once.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry::dlpack_rs::ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
};

/// Metadata for one produced tensor; every field may be hostile.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Version written into the versioned header.
    pub version: (u32, u32),
    /// `ndim` as sent (may disagree with `shape.len()`).
    pub ndim: i32,
    /// Shape entries; `None` sends a NULL pointer.
    pub shape: Option<Vec<i64>>,
    /// Stride entries; `None` sends a NULL pointer.
    pub strides: Option<Vec<i64>>,
    /// (code, bits, lanes)
    pub dtype: (u8, u8, u16),
    /// (device_type, device_id)
    pub device: (u32, i32),
    /// Versioned flags.
    pub flags: u64,
    /// byte_offset as sent.
    pub byte_offset: u64,
    /// Send NULL as the data pointer.
    pub null_data: bool,
}

impl Spec {
    /// A valid row-major f32 tensor of `shape` on the CPU.
    pub fn f32_row_major(shape: &[i64]) -> Spec {
        let mut strides = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1].max(1);
        }
        Spec {
            version: (1, 3),
            ndim: shape.len() as i32,
            shape: Some(shape.to_vec()),
            strides: Some(strides),
            dtype: (2, 32, 1),
            device: (1, 0),
            flags: 0,
            byte_offset: 0,
            null_data: false,
        }
    }
}

/// Counts deleter calls for the tensors it produces.
#[derive(Debug, Default, Clone)]
pub struct Producer {
    deleted: Arc<AtomicUsize>,
    produced: Arc<AtomicUsize>,
}

struct Ctx {
    _buffer: Vec<u8>,
    _shape: Vec<i64>,
    _strides: Vec<i64>,
    deleted: Arc<AtomicUsize>,
}

impl Producer {
    /// Deleter calls so far.
    pub fn deleted(&self) -> usize {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Tensors produced so far.
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }

    fn tensor(&self, spec: &Spec, buffer: Vec<u8>) -> (DLTensor, Box<Ctx>) {
        let shape = spec.shape.clone().unwrap_or_default();
        let strides = spec.strides.clone().unwrap_or_default();
        let mut ctx = Box::new(Ctx {
            _buffer: buffer,
            _shape: shape,
            _strides: strides,
            deleted: self.deleted.clone(),
        });
        self.produced.fetch_add(1, Ordering::SeqCst);
        let data = if spec.null_data {
            std::ptr::null_mut()
        } else {
            ctx._buffer.as_mut_ptr().cast::<c_void>()
        };
        let t = DLTensor {
            data,
            device: DLDevice {
                device_type: spec.device.0,
                device_id: spec.device.1,
            },
            ndim: spec.ndim,
            dtype: DLDataType {
                code: spec.dtype.0,
                bits: spec.dtype.1,
                lanes: spec.dtype.2,
            },
            shape: if spec.shape.is_some() {
                ctx._shape.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            strides: if spec.strides.is_some() {
                ctx._strides.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            byte_offset: spec.byte_offset,
        };
        (t, ctx)
    }

    /// A versioned managed tensor over `buffer` described by `spec`.
    pub fn versioned(&self, spec: &Spec, buffer: Vec<u8>) -> *mut DLManagedTensorVersioned {
        let (dl_tensor, ctx) = self.tensor(spec, buffer);
        Box::into_raw(Box::new(DLManagedTensorVersioned {
            version: DLPackVersion {
                major: spec.version.0,
                minor: spec.version.1,
            },
            manager_ctx: Box::into_raw(ctx).cast(),
            deleter: Some(delete_versioned),
            flags: spec.flags,
            dl_tensor,
        }))
    }

    /// A legacy managed tensor over `buffer` described by `spec`.
    pub fn legacy(&self, spec: &Spec, buffer: Vec<u8>) -> *mut DLManagedTensor {
        let (dl_tensor, ctx) = self.tensor(spec, buffer);
        Box::into_raw(Box::new(DLManagedTensor {
            dl_tensor,
            manager_ctx: Box::into_raw(ctx).cast(),
            deleter: Some(delete_legacy),
        }))
    }
}

unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
    // SAFETY: only installed on structs made by `Producer::versioned`, called once by contract.
    unsafe {
        let m = Box::from_raw(m);
        let ctx = Box::from_raw(m.manager_ctx.cast::<Ctx>());
        ctx.deleted.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe extern "C" fn delete_legacy(m: *mut DLManagedTensor) {
    // SAFETY: only installed on structs made by `Producer::legacy`, called once by contract.
    unsafe {
        let m = Box::from_raw(m);
        let ctx = Box::from_raw(m.manager_ctx.cast::<Ctx>());
        ctx.deleted.fetch_add(1, Ordering::SeqCst);
    }
}

/// Bytes of `values` in native order (a producer's buffer).
pub fn bytes_of<T: Copy>(values: &[T]) -> Vec<u8> {
    let n = std::mem::size_of_val(values);
    // SAFETY: reading the initialised bytes of a slice of plain `Copy` values.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), n) }.to_vec()
}
