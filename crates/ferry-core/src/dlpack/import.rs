//! DLPack import: takes ownership of a producer's managed tensor, checks its metadata before
//! anything reads the data, and wraps it as a [`DlpackTensor`] or a [`HostArray`].

use std::ptr::NonNull;
use std::sync::Arc;

use dlpack_rs::ffi::{DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor};

use super::{
    DLPACK_VERSION, DlpackFlags, DlpackTensor, Handle, ManagedStruct, RawDlpack, desc_of,
    device_of, on_managed, release,
};
use crate::array::{Access, Dims};
use crate::layout::{MAX_NDIM, check_layout, row_major_strides};
use crate::{DType, DTypeDesc, Error, HostArray, Owner, Result};

/// What [`check_tensor`] derives from a producer's `DLTensor`: the address of element
/// `[0, .., 0]`, the dtype and, for NULL strides, computed row-major strides.
type Checked = (*mut u8, DType, Option<Vec<isize>>);

impl DlpackTensor {
    /// Takes ownership of a versioned managed tensor, validating it before touching its data.
    ///
    /// On any error the deleter has already been called (exactly once) and nothing is leaked.
    /// A tensor whose major version is not 1 has only its deleter touched, as the spec demands.
    ///
    /// # Safety
    ///
    /// - `ptr` is NULL or points at a `DLManagedTensorVersioned` that the caller owns (its
    ///   deleter has not run and nobody else will call it).
    /// - If its major version is 1: `shape` (and `strides` unless NULL) point at `ndim` readable
    ///   `int64_t`s, and for host-readable devices every element the layout reaches is readable
    ///   memory that lives until the deleter runs (and is not written by others unless the
    ///   READ_ONLY flag is clear and the caller accepts shared mutation).
    /// - The deleter may be called from any thread.
    #[inline]
    pub unsafe fn from_versioned(ptr: *mut DLManagedTensorVersioned) -> Result<DlpackTensor> {
        // SAFETY: forwarded contract.
        unsafe { Self::take(ptr) }
    }

    /// Takes ownership of a legacy (unversioned) managed tensor; see
    /// [`from_versioned`](Self::from_versioned). Legacy tensors carry no flags.
    ///
    /// # Safety
    ///
    /// As for [`from_versioned`](Self::from_versioned), for a `DLManagedTensor`.
    pub unsafe fn from_legacy(ptr: *mut DLManagedTensor) -> Result<DlpackTensor> {
        // SAFETY: forwarded contract.
        unsafe { Self::take(ptr) }
    }

    /// Takes ownership of either kind of raw pointer.
    ///
    /// # Safety
    ///
    /// As for [`from_versioned`](Self::from_versioned) / [`from_legacy`](Self::from_legacy).
    pub unsafe fn from_raw(raw: RawDlpack) -> Result<DlpackTensor> {
        // SAFETY: forwarded contract.
        unsafe {
            match raw {
                RawDlpack::Versioned(p) => Self::from_versioned(p),
                RawDlpack::Legacy(p) => Self::from_legacy(p),
            }
        }
    }

    /// [`from_versioned`](Self::from_versioned) and [`from_legacy`](Self::from_legacy), written
    /// once.
    ///
    /// # Safety
    /// As for [`from_versioned`](Self::from_versioned), for an `M`.
    #[inline]
    unsafe fn take<M: ManagedStruct>(ptr: *mut M) -> Result<DlpackTensor> {
        let Some(p) = NonNull::new(ptr) else {
            return Err(Error::invalid_dlpack("the managed tensor pointer is NULL"));
        };
        // SAFETY: `p` points at a managed tensor the caller owns, of any major version.
        let version = match unsafe { M::version(p) } {
            Some(DLPackVersion { major, minor }) if major != DLPACK_VERSION.0 => {
                // SAFETY: the spec allows calling the deleter of any version; we own it.
                unsafe { release(p) };
                return Err(Error::UnsupportedDlpackVersion { major, minor });
            }
            Some(DLPackVersion { major, minor }) => (major, minor),
            None => (0, 0),
        };
        // SAFETY: the caller owns the live managed tensor, whose layout is `M`'s now that its
        // major version is known to be 1 (or it is legacy).
        let m = unsafe { p.as_ref() };
        let (t, flags) = (m.dl_tensor(), m.flags());
        // Checked even when ferry made it: whoever held the tensor could rewrite its fields
        // (what ferry takes back from its own exports comes from their contexts instead).
        // SAFETY: the caller's contract: `shape` and `strides` are readable as `check_tensor`
        // requires.
        let checked = unsafe { check_tensor(t, flags) };
        match checked {
            Ok((data, dtype, computed_strides)) => Ok(DlpackTensor {
                handle: Some(M::wrap(p)),
                data,
                dtype,
                device: device_of(t),
                flags,
                version,
                computed_strides,
            }),
            Err(e) => {
                // SAFETY: the caller handed us ownership; release it once on this error path
                // (`m` and `t` are not used after it).
                unsafe { release(p) };
                Err(e)
            }
        }
    }

    /// A [`HostArray`] over the same memory, without copying; the producer is kept alive until
    /// the last view drops, then its deleter runs once.
    ///
    /// Errors with [`Error::NotHostMemory`] (after releasing the tensor) for device memory:
    /// check [`device`](Self::device) first to copy such tensors through an adapter instead.
    #[inline]
    pub fn into_host(mut self) -> Result<HostArray> {
        let Some(memory) = self.device.memory_kind() else {
            return Err(self.not_host_memory());
        };
        if let Some(own) = self.take_own_export() {
            return Ok(own);
        }
        if let Some(parts) = self.counted_export_parts() {
            // One of ferry's counted exports comes back holding the exported array's own owner,
            // and the export is released at once: every holder of the memory stays on one
            // count, so `owner_is_unique` (who may lend the memory for writing) sees the
            // exporter and every other import of it; wrapping the export would make the import
            // look held alone. Its memory, layout and access are the exported array's own: the
            // import is that array's clone (Exclusive memory stays ferry's own, writable only
            // through a holder that holds it alone, and copied for immutable readers while
            // anything else holds it).
            drop(self);
            let memory = parts.device.memory_kind().ok_or_else(|| {
                Error::invalid_dlpack("a counted export of device memory".to_string())
            })?;
            // SAFETY: the export was made from a checked host array whose memory `owner` keeps
            // alive; data, dtype, device, layout and access are that array's, read from the
            // export's context (not from the managed struct its holder may have changed), so
            // the import is as sound as a clone of it.
            return Ok(unsafe {
                HostArray::from_checked_parts(
                    parts.data,
                    parts.dtype,
                    (parts.shape, parts.strides),
                    memory,
                    parts.access,
                    parts.owner,
                )
            });
        }
        // The producer keeps its own handle on the memory unless it copied it for this exchange
        // (IS_COPIED): only then may ferry write without the caller's `unsafe` opt-in.
        let access = if self.is_read_only() {
            Access::ReadOnly
        } else if self.is_copied() {
            Access::Exclusive
        } else {
            Access::Shared
        };
        let (data, dtype) = (self.data, self.dtype);
        // The shape and strides, copied out of the producer's tensor (inline for up to four
        // axes) before the tensor moves into the owner, which then needs no second reference.
        let dims = (
            Dims::from_slice(self.shape()),
            Dims::from_slice(self.strides()),
        );
        let owner: Owner = Arc::new(self);
        // SAFETY: the layout passed `check_tensor` at import (layout, non-null data, reached
        // bytes inside the address space), or is a ferry export of a checked array; the producer
        // promised (from_versioned contract) that the memory lives until its deleter runs, which
        // `owner` delays until the last clone of the array drops; READ_ONLY is carried over, and
        // the memory is Exclusive only when the producer handed it over (IS_COPIED), else Shared.
        Ok(unsafe { HostArray::from_checked_parts(data, dtype, dims, memory, access, owner) })
    }

    /// [`Error::NotHostMemory`] for this tensor, out of [`into_host`](Self::into_host)'s hot
    /// path.
    #[cold]
    #[inline(never)]
    fn not_host_memory(&self) -> Error {
        Error::NotHostMemory {
            device: self.device,
            shape: self.shape().to_vec(),
            dtype: self.dtype,
        }
    }

    /// What this tensor is made of if it is one of ferry's counted exports.
    fn counted_export_parts(&self) -> Option<super::export::CountedParts> {
        let handle = self.handle?;
        // SAFETY: the handle is live (owned by `self`, whose deleter has not run).
        on_managed!(handle, p => unsafe { super::export::counted_export_parts(p) })
    }

    /// If this tensor is one ferry exported from a `HostArray`, takes that array back out
    /// (the export context then holds nothing) instead of wrapping the tensor again; `self` is
    /// then only dropped.
    fn take_own_export(&mut self) -> Option<HostArray> {
        let handle = self.handle?;
        // SAFETY: the handle is live and owned by `self`, which `&mut self` borrows exclusively,
        // so nothing else reads the export context while the array is taken out; `into_host`,
        // the only caller, returns the array at once and drops `self` unread.
        on_managed!(handle, p => unsafe { super::export::take_host(p) })
    }
}

impl HostArray {
    /// Imports a versioned DLPack tensor; see [`DlpackTensor::from_versioned`] and
    /// [`DlpackTensor::into_host`].
    ///
    /// # Safety
    ///
    /// As for [`DlpackTensor::from_versioned`].
    pub unsafe fn from_dlpack_versioned(ptr: *mut DLManagedTensorVersioned) -> Result<HostArray> {
        // SAFETY: forwarded contract.
        unsafe { DlpackTensor::from_versioned(ptr) }?.into_host()
    }

    /// Imports a legacy DLPack tensor; see [`DlpackTensor::from_legacy`].
    ///
    /// # Safety
    ///
    /// As for [`DlpackTensor::from_legacy`].
    pub unsafe fn from_dlpack_legacy(ptr: *mut DLManagedTensor) -> Result<HostArray> {
        // SAFETY: forwarded contract.
        unsafe { DlpackTensor::from_legacy(ptr) }?.into_host()
    }
}

/// Checks a producer's `DLTensor` before anything reads its data.
///
/// # Safety
/// `shape` (and `strides` unless NULL) point at `ndim` readable `int64_t`s when `ndim` is in
/// range; nothing else is dereferenced.
#[inline]
unsafe fn check_tensor(t: &DLTensor, flags: DlpackFlags) -> Result<Checked> {
    let ndim = t.ndim;
    if !(0..=MAX_NDIM as i32).contains(&ndim) {
        return Err(Error::invalid_dlpack(format!(
            "ndim {ndim} is outside 0..={MAX_NDIM}"
        )));
    }
    let ndim = ndim as usize;
    let desc = desc_of(t);
    let dtype = DType::from_desc(desc);
    if desc.bits == 0 || desc.lanes == 0 {
        return Err(Error::invalid_dlpack(format!(
            "dtype {desc} has zero bits or zero lanes"
        )));
    }
    if !desc.total_bits().is_multiple_of(8) && flags.contains(DlpackFlags::IS_SUBBYTE_TYPE_PADDED) {
        return Err(Error::invalid_dlpack(format!(
            "dtype {desc} is flagged as padded sub-byte data, which ferry does not read; ask for packed data"
        )));
    }
    let device = device_of(t);
    let read_i64s = |p: *const i64, what: &str| -> Result<&[i64]> {
        if ndim == 0 {
            return Ok(&[]);
        }
        if p.is_null() {
            return Err(Error::invalid_dlpack(format!(
                "{what} is NULL for ndim {ndim}"
            )));
        }
        // SAFETY: function contract: `ndim` readable int64_t entries.
        Ok(unsafe { std::slice::from_raw_parts(p, ndim) })
    };
    let raw_shape = read_i64s(t.shape, "shape")?;
    if let Some(bad) = raw_shape.iter().find(|&&d| d < 0) {
        return Err(Error::invalid_dlpack(format!(
            "shape {raw_shape:?} has negative extent {bad} (dtype {desc}, device {device})"
        )));
    }
    // SAFETY: `raw_shape` holds non-negative i64s (checked above), whose bit patterns are the
    // same usize values; i64 and usize share size and alignment (asserted in the parent module).
    let shape: &[usize] =
        unsafe { std::slice::from_raw_parts(raw_shape.as_ptr().cast::<usize>(), raw_shape.len()) };
    let computed = if ndim > 0 && t.strides.is_null() {
        // Pre-1.2 producers may send NULL for compact row-major data.
        Some(row_major_strides(shape).ok_or_else(|| overflow(raw_shape, &[], desc))?)
    } else {
        None
    };
    let strides: &[isize] = match &computed {
        Some(s) => s,
        None => {
            let raw_strides = read_i64s(t.strides, "strides")?;
            // SAFETY: i64 and isize share size, alignment and every value (asserted in the
            // parent module).
            unsafe { std::slice::from_raw_parts(raw_strides.as_ptr().cast::<isize>(), ndim) }
        }
    };
    // Made only for the error messages.
    let raw_strides = || -> Vec<i64> { strides.iter().map(|&s| s as i64).collect() };
    // Element count, packed size and extent: any overflow is reported in the producer's terms.
    let range = check_layout(dtype, shape, strides).map_err(|e| match e {
        Error::UnsupportedLayout { .. } => e,
        _ => overflow(raw_shape, &raw_strides(), desc),
    })?;
    let byte_offset = isize::try_from(t.byte_offset).map_err(|_| {
        Error::invalid_dlpack(format!("byte_offset {} (as signed: {}) is out of range; it must be a small non-negative number", t.byte_offset, t.byte_offset as i64))
    })?;
    // `check_layout` gives no range exactly for an empty layout.
    let empty = range.is_none();
    if t.data.is_null() && !empty {
        return Err(Error::invalid_dlpack(format!(
            "data is NULL for shape {shape:?}, which has elements (dtype {desc}, device {device})"
        )));
    }
    let base = t.data as usize;
    let first = base.checked_add(byte_offset as usize).ok_or_else(|| {
        Error::invalid_dlpack(format!(
            "data {base:#x} + byte_offset {byte_offset} overflows the address space"
        ))
    })?;
    if !empty {
        let size = i128::from(desc.total_bits().div_ceil(8));
        if let Some((lo, hi)) = range {
            let lowest = first as i128 + lo as i128 * size;
            let end = first as i128 + (hi as i128 + 1) * size;
            if lowest < 0 || end > usize::MAX as i128 {
                return Err(Error::invalid_dlpack(format!(
                    "shape {shape:?} with strides {strides:?} from data {base:#x} + byte_offset {byte_offset} reaches outside the address space"
                )));
            }
        }
    }
    Ok((first as *mut u8, dtype, computed))
}

#[cold]
#[inline(never)]
fn overflow(shape: &[i64], strides: &[i64], desc: DTypeDesc) -> Error {
    Error::LayoutOverflow {
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        itemsize_bits: desc.total_bits(),
    }
}
