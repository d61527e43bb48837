//! DLPack 1.3 exchange on the ABI types of `dlpack-rs`: export of [`HostArray`] (and of any
//! owner-backed memory, for adapters) as versioned or legacy managed tensors, and validated
//! import of either struct into a [`DlpackTensor`] handle or straight into a `HostArray`.
//!
//! Ownership rule: a [`DlpackTensor`] owns one managed tensor and calls its deleter exactly once
//! (when dropped, when the last `HostArray` made from it drops, or never, after
//! [`DlpackTensor::into_raw`] passed it to a consumer, who then owns that duty).

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use dlpack_rs::ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
};

use crate::array::{Access, RawParts};
use crate::layout::{MAX_NDIM, element_count, offset_range, row_major_strides};
use crate::{DType, DTypeDesc, Device, Error, HostArray, Owner, Result};

// DLPack shapes and strides are `int64_t`; ferry keeps `usize`/`isize` and hands its own buffers
// to consumers, which is only the same memory layout on 64-bit targets.
const _: () =
    assert!(size_of::<usize>() == size_of::<i64>() && size_of::<isize>() == size_of::<i64>());

/// The DLPack version ferry produces.
pub const DLPACK_VERSION: (u32, u32) = (1, 3);
/// `DLPACK_FLAG_BITMASK_READ_ONLY`
pub const FLAG_READ_ONLY: u64 = 1;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`
pub const FLAG_IS_COPIED: u64 = 2;
/// `DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED`
pub const FLAG_IS_SUBBYTE_TYPE_PADDED: u64 = 4;

/// A raw managed-tensor pointer handed to or taken from a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDlpack {
    /// `DLManagedTensorVersioned*` (DLPack ≥ 1.0).
    Versioned(*mut DLManagedTensorVersioned),
    /// `DLManagedTensor*` (legacy, no version or flags).
    Legacy(*mut DLManagedTensor),
}

#[derive(Clone, Copy)]
enum Handle {
    Versioned(NonNull<DLManagedTensorVersioned>),
    Legacy(NonNull<DLManagedTensor>),
}

/// An owned, validated DLPack managed tensor on any device.
///
/// Host-readable tensors become [`HostArray`]s with [`DlpackTensor::into_host`]; device tensors
/// (CUDA, ROCm, ...) stay handles that adapters copy to host or hand to their framework.
pub struct DlpackTensor {
    handle: Option<Handle>,
    /// Element `[0, .., 0]` (`data + byte_offset`).
    data: *mut u8,
    dtype: DType,
    device: Device,
    flags: u64,
    version: (u32, u32),
    /// Row-major strides computed for producers that sent NULL strides (pre-1.2).
    computed_strides: Option<Vec<isize>>,
}

// SAFETY: a DLPack tensor is a plain memory description; the producer's deleter must be callable
// from any thread, which `from_versioned`/`from_legacy` require of their callers.
unsafe impl Send for DlpackTensor {}
// SAFETY: shared access only reads the immutable metadata.
unsafe impl Sync for DlpackTensor {}

impl fmt::Debug for DlpackTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlpackTensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape())
            .field("strides", &self.strides())
            .field("device", &self.device)
            .field("flags", &self.flags)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Drop for DlpackTensor {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // SAFETY: `handle` is the managed tensor this value owns, released exactly once here
            // (`take` leaves None behind).
            unsafe { call_deleter(handle) };
        }
    }
}

/// # Safety
/// `handle` points at a live managed tensor whose deleter has not run yet.
unsafe fn call_deleter(handle: Handle) {
    // SAFETY: per the function contract, and the DLPack rule that the deleter may be NULL.
    unsafe {
        match handle {
            Handle::Versioned(p) => {
                if let Some(d) = (*p.as_ptr()).deleter {
                    d(p.as_ptr());
                }
            }
            Handle::Legacy(p) => {
                if let Some(d) = (*p.as_ptr()).deleter {
                    d(p.as_ptr());
                }
            }
        }
    }
}

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
    pub unsafe fn from_versioned(ptr: *mut DLManagedTensorVersioned) -> Result<DlpackTensor> {
        let Some(p) = NonNull::new(ptr) else {
            return Err(Error::invalid_dlpack("the managed tensor pointer is NULL"));
        };
        // SAFETY: `p` points at a managed tensor the caller owns; the header fields up to `flags`
        // are ABI-stable across versions.
        let m = unsafe { &*p.as_ptr() };
        let DLPackVersion { major, minor } = m.version;
        if major != DLPACK_VERSION.0 {
            // SAFETY: the spec allows calling the deleter of any version; we own it.
            unsafe { call_deleter(Handle::Versioned(p)) };
            return Err(Error::UnsupportedDlpackVersion { major, minor });
        }
        let ours = m
            .deleter
            .is_some_and(|d| std::ptr::fn_addr_eq(d, delete_versioned as unsafe extern "C" fn(_)));
        if ours {
            // ferry's own export: its metadata was valid when written and nobody else owns it.
            return Ok(Self::trusted(
                Handle::Versioned(p),
                &m.dl_tensor,
                m.flags,
                (major, minor),
            ));
        }
        // SAFETY: same contract, version 1.x layout.
        unsafe { Self::validated(Handle::Versioned(p), &m.dl_tensor, m.flags, (major, minor)) }
    }

    /// Takes ownership of a legacy (unversioned) managed tensor; see
    /// [`from_versioned`](Self::from_versioned). Legacy tensors carry no flags.
    ///
    /// # Safety
    ///
    /// As for [`from_versioned`](Self::from_versioned), for a `DLManagedTensor`.
    pub unsafe fn from_legacy(ptr: *mut DLManagedTensor) -> Result<DlpackTensor> {
        let Some(p) = NonNull::new(ptr) else {
            return Err(Error::invalid_dlpack("the managed tensor pointer is NULL"));
        };
        // SAFETY: `p` points at a managed tensor the caller owns.
        let m = unsafe { &*p.as_ptr() };
        if m.deleter
            .is_some_and(|d| std::ptr::fn_addr_eq(d, delete_legacy as unsafe extern "C" fn(_)))
        {
            return Ok(Self::trusted(Handle::Legacy(p), &m.dl_tensor, 0, (0, 0)));
        }
        // SAFETY: forwarded contract.
        unsafe { Self::validated(Handle::Legacy(p), &m.dl_tensor, 0, (0, 0)) }
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

    /// Wraps a tensor ferry exported itself (valid by construction: `export` wrote it from a
    /// validated layout, with strides always present and `byte_offset` 0).
    fn trusted(handle: Handle, t: &DLTensor, flags: u64, version: (u32, u32)) -> DlpackTensor {
        DlpackTensor {
            handle: Some(handle),
            data: t.data.cast(),
            dtype: DType::from_desc(DTypeDesc {
                code: t.dtype.code,
                bits: t.dtype.bits,
                lanes: t.dtype.lanes,
            }),
            device: Device {
                device_type: t.device.device_type as i32,
                device_id: t.device.device_id,
            },
            flags,
            version,
            computed_strides: None,
        }
    }

    /// Validates `t` (owned through `handle`); calls the deleter and errors on bad metadata.
    ///
    /// # Safety
    /// `handle` is owned by the caller and `t` is its DLTensor, readable as in `from_versioned`.
    unsafe fn validated(
        handle: Handle,
        t: &DLTensor,
        flags: u64,
        version: (u32, u32),
    ) -> Result<DlpackTensor> {
        // SAFETY: forwarded contract.
        match unsafe { check_tensor(t, flags) } {
            Ok((data, dtype, computed_strides)) => Ok(DlpackTensor {
                handle: Some(handle),
                data,
                dtype,
                device: Device {
                    device_type: t.device.device_type as i32,
                    device_id: t.device.device_id,
                },
                flags,
                version,
                computed_strides,
            }),
            Err(e) => {
                // SAFETY: the caller handed us ownership; release it once on this error path.
                unsafe { call_deleter(handle) };
                Err(e)
            }
        }
    }

    fn dl_tensor(&self) -> &DLTensor {
        let handle = self
            .handle
            .expect("a DlpackTensor always holds its handle until consumed");
        // SAFETY: the handle is live while `self` owns it; the reference borrows `self`.
        unsafe {
            match handle {
                Handle::Versioned(p) => &(*p.as_ptr()).dl_tensor,
                Handle::Legacy(p) => &(*p.as_ptr()).dl_tensor,
            }
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Length of each axis.
    pub fn shape(&self) -> &[usize] {
        let t = self.dl_tensor();
        if t.ndim == 0 {
            return &[];
        }
        // SAFETY: validated at construction: `ndim` entries, each non-negative, so their i64 bit
        // patterns are the same usize values (64-bit targets only, asserted above).
        unsafe { std::slice::from_raw_parts(t.shape.cast::<usize>(), t.ndim as usize) }
    }

    /// Step of each axis in elements.
    pub fn strides(&self) -> &[isize] {
        if let Some(s) = &self.computed_strides {
            return s;
        }
        let t = self.dl_tensor();
        if t.ndim == 0 {
            return &[];
        }
        // SAFETY: validated at construction: non-NULL with `ndim` entries; i64 and isize agree.
        unsafe { std::slice::from_raw_parts(t.strides.cast::<isize>(), t.ndim as usize) }
    }

    /// Address of element `[0, .., 0]` (`data + byte_offset`), a device address for device
    /// tensors.
    pub fn data_ptr(&self) -> *mut c_void {
        self.data.cast()
    }

    /// The producer's flags (0 for legacy tensors).
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// Whether the producer forbids writes.
    pub fn is_read_only(&self) -> bool {
        self.flags & FLAG_READ_ONLY != 0
    }

    /// Whether the producer copied the data for this exchange.
    pub fn is_copied(&self) -> bool {
        self.flags & FLAG_IS_COPIED != 0
    }

    /// DLPack version of the struct ((0, 0) for legacy tensors).
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// Whether this is a versioned (≥ 1.0) managed tensor.
    pub fn is_versioned(&self) -> bool {
        matches!(self.handle, Some(Handle::Versioned(_)))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.shape().contains(&0)
    }

    /// Gives up ownership: the returned pointer's deleter is now the receiver's to call.
    pub fn into_raw(mut self) -> RawDlpack {
        match self
            .handle
            .take()
            .expect("a DlpackTensor always holds its handle until consumed")
        {
            Handle::Versioned(p) => RawDlpack::Versioned(p.as_ptr()),
            Handle::Legacy(p) => RawDlpack::Legacy(p.as_ptr()),
        }
    }

    /// A [`HostArray`] over the same memory, without copying; the producer is kept alive until
    /// the last view drops, then its deleter runs once.
    ///
    /// Errors with [`Error::NotHostMemory`] (after releasing the tensor) for device memory:
    /// check [`device`](Self::device) first to copy such tensors through an adapter instead.
    pub fn into_host(mut self) -> Result<HostArray> {
        let Some(memory) = self.device.memory_kind() else {
            return Err(Error::NotHostMemory {
                device: self.device,
                shape: self.shape().to_vec(),
                dtype: self.dtype,
            });
        };
        if let Some(own) = self.take_own_export() {
            return Ok(own);
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
        let parts = RawParts {
            data: self.data,
            dtype: self.dtype,
            shape: self.shape().to_vec(),
            strides: self.strides().to_vec(),
            memory,
            access,
        };
        let owner: Owner = Arc::new(self);
        // SAFETY: the layout was validated at import; the producer promised (from_versioned
        // contract) that the memory lives until its deleter runs, which `owner` delays until the
        // last clone of the array drops; READ_ONLY is carried over, and the memory is Exclusive
        // only when the producer handed it over (IS_COPIED), else Shared.
        unsafe { HostArray::from_raw_parts(parts, owner) }
    }

    /// If this tensor is one ferry exported from a `HostArray`, takes that array back out
    /// (releasing the export context) instead of wrapping the tensor again.
    fn take_own_export(&mut self) -> Option<HostArray> {
        let handle = self.handle?;
        // SAFETY: the handle is live; we only compare the deleter and, when it is ours, the
        // context is an `ExportCtx` we allocated.
        unsafe {
            let ctx = match handle {
                Handle::Versioned(p) => {
                    let m = &*p.as_ptr();
                    let ours = m.deleter.is_some_and(|d| {
                        std::ptr::fn_addr_eq(d, delete_versioned as unsafe extern "C" fn(_))
                    });
                    ours.then_some(m.manager_ctx)
                }
                Handle::Legacy(p) => {
                    let m = &*p.as_ptr();
                    let ours = m.deleter.is_some_and(|d| {
                        std::ptr::fn_addr_eq(d, delete_legacy as unsafe extern "C" fn(_))
                    });
                    ours.then_some(m.manager_ctx)
                }
            }?;
            let keep = match handle {
                Handle::Versioned(_) => {
                    &mut (*ctx.cast::<ExportCtx<DLManagedTensorVersioned>>()).keep
                }
                Handle::Legacy(_) => &mut (*ctx.cast::<ExportCtx<DLManagedTensor>>()).keep,
            };
            if !matches!(keep, Keep::Host(_)) {
                return None;
            }
            let Keep::Host(array) = std::mem::replace(keep, Keep::Taken) else {
                unreachable!()
            };
            // The context (now holding nothing) is freed by the deleter when `self` drops.
            Some(array)
        }
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

    /// Exports as a DLPack 1.3 versioned managed tensor sharing this array's memory. Strides are
    /// always written and READ_ONLY is set for read-only arrays. IS_COPIED is never set: the
    /// consumer shares the memory with `self` (see [`into_dlpack`](Self::into_dlpack)). The
    /// deleter releases exactly this array's hold on its owner.
    pub fn to_dlpack(&self) -> DlpackTensor {
        export::<DLManagedTensorVersioned>(Keep::Host(self.clone()), self.export_meta(false))
    }

    /// Like [`to_dlpack`](Self::to_dlpack), handing this array over: IS_COPIED is set when ferry
    /// copied the data to produce it, the memory is ferry's own ([`Access::Exclusive`]) and
    /// nothing else holds it, so the consumer owns it exclusively (DLPack's meaning of the flag).
    pub fn into_dlpack(self) -> DlpackTensor {
        let exclusive =
            self.copies() > 0 && self.access() == Access::Exclusive && self.owner_is_unique();
        let meta = self.export_meta(exclusive);
        export::<DLManagedTensorVersioned>(Keep::Host(self), meta)
    }

    /// Exports as a legacy (pre-1.0) `DLManagedTensor` for old consumers; like
    /// [`to_dlpack`](Self::to_dlpack) without version or flags.
    pub fn to_dlpack_legacy(&self) -> DlpackTensor {
        export::<DLManagedTensor>(Keep::Host(self.clone()), self.export_meta(false))
    }

    fn export_meta(&self, exclusive_copy: bool) -> ExportMeta {
        let mut flags = 0;
        if self.is_read_only() {
            flags |= FLAG_READ_ONLY;
        }
        if exclusive_copy {
            flags |= FLAG_IS_COPIED;
        }
        ExportMeta {
            data: self.as_ptr().cast_mut(),
            dtype: self.dtype(),
            device: self.device(),
            flags,
        }
    }
}

/// Memory an adapter exports over DLPack (device memory included).
#[derive(Debug, Clone)]
pub struct ExportParts {
    /// Address of element `[0, .., 0]` (device address for device memory).
    pub data: *mut c_void,
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Step of each axis in elements.
    pub strides: Vec<isize>,
    /// Where the memory lives.
    pub device: Device,
    /// DLPack flags (READ_ONLY, IS_COPIED).
    pub flags: u64,
}

/// Exports foreign memory (for example a framework's CUDA buffer) as a versioned DLPack tensor
/// whose deleter drops `owner`.
///
/// # Safety
///
/// Every element the layout reaches lives in memory of `parts.device` that stays valid while
/// `owner` is alive, and the layout's extent fits the address space.
pub unsafe fn export_owner(parts: ExportParts, owner: Owner) -> Result<DlpackTensor> {
    HostArray::validate_layout(parts.dtype, &parts.shape, &parts.strides)?;
    let ExportParts {
        data,
        dtype,
        shape,
        strides,
        device,
        flags,
    } = parts;
    let meta = ExportMeta {
        data: data.cast(),
        dtype,
        device,
        flags,
    };
    Ok(export::<DLManagedTensorVersioned>(
        Keep::Foreign {
            owner,
            shape,
            strides,
        },
        meta,
    ))
}

struct ExportMeta {
    data: *mut u8,
    dtype: DType,
    device: Device,
    flags: u64,
}

/// What an exported tensor keeps alive; its shape and strides buffers are what the `DLTensor`
/// points at.
enum Keep {
    Host(HostArray),
    Foreign {
        #[expect(
            dead_code,
            reason = "held only to keep the memory alive until the deleter runs"
        )]
        owner: Owner,
        shape: Vec<usize>,
        strides: Vec<isize>,
    },
    /// The array was taken back by a ferry import of ferry's own export.
    Taken,
}

impl Keep {
    fn shape_strides(&self) -> (&[usize], &[isize]) {
        match self {
            Keep::Host(a) => (a.shape(), a.strides()),
            Keep::Foreign { shape, strides, .. } => (shape, strides),
            Keep::Taken => (&[], &[]),
        }
    }
}

/// The allocation behind one exported tensor: the managed struct first, then what it keeps.
#[repr(C)]
struct ExportCtx<M> {
    managed: M,
    keep: Keep,
}

/// The two managed-tensor structs, so export is written once.
trait ManagedStruct: Sized + 'static {
    fn new(tensor: DLTensor, ctx: *mut c_void, flags: u64) -> Self;
    fn wrap(ptr: NonNull<Self>) -> Handle;
}

impl ManagedStruct for DLManagedTensorVersioned {
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void, flags: u64) -> Self {
        DLManagedTensorVersioned {
            version: DLPackVersion {
                major: DLPACK_VERSION.0,
                minor: DLPACK_VERSION.1,
            },
            manager_ctx,
            deleter: Some(delete_versioned),
            flags,
            dl_tensor,
        }
    }
    fn wrap(ptr: NonNull<Self>) -> Handle {
        Handle::Versioned(ptr)
    }
}

impl ManagedStruct for DLManagedTensor {
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void, _flags: u64) -> Self {
        DLManagedTensor {
            dl_tensor,
            manager_ctx,
            deleter: Some(delete_legacy),
        }
    }
    fn wrap(ptr: NonNull<Self>) -> Handle {
        Handle::Legacy(ptr)
    }
}

fn export<M: ManagedStruct>(keep: Keep, meta: ExportMeta) -> DlpackTensor {
    let (shape, strides) = keep.shape_strides();
    let ndim = shape.len();
    let empty_tensor = DLTensor {
        data: std::ptr::null_mut(),
        device: DLDevice {
            device_type: 0,
            device_id: 0,
        },
        ndim: 0,
        dtype: DLDataType {
            code: 0,
            bits: 0,
            lanes: 0,
        },
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    };
    let mut ctx = Box::new(ExportCtx {
        managed: M::new(empty_tensor, std::ptr::null_mut(), meta.flags),
        keep: Keep::Taken,
    });
    let desc = meta.dtype.desc();
    let (shape_ptr, strides_ptr) = if ndim == 0 {
        (std::ptr::null_mut(), std::ptr::null_mut())
    } else {
        // i64 and usize/isize share a layout (asserted above); shape entries are ≤ isize::MAX.
        (
            shape.as_ptr().cast_mut().cast::<i64>(),
            strides.as_ptr().cast_mut().cast::<i64>(),
        )
    };
    let tensor = DLTensor {
        data: meta.data.cast(),
        device: DLDevice {
            device_type: meta.device.device_type as u32,
            device_id: meta.device.device_id,
        },
        ndim: ndim as i32,
        dtype: DLDataType {
            code: desc.code,
            bits: desc.bits,
            lanes: desc.lanes,
        },
        shape: shape_ptr,
        strides: strides_ptr,
        byte_offset: 0,
    };
    let raw_ctx: *mut ExportCtx<M> = &mut *ctx;
    ctx.managed = M::new(tensor, raw_ctx.cast(), meta.flags);
    // The shape/strides buffers are heap allocations owned by `keep`; moving `keep` into the
    // context moves only their handles, so the pointers above stay valid.
    ctx.keep = keep;
    let raw = Box::into_raw(ctx);
    // SAFETY: `raw` is a fresh, non-null Box allocation whose first field is the managed struct
    // (repr(C)), so a pointer to it is a pointer to the managed struct.
    let managed = unsafe { NonNull::new_unchecked(raw.cast::<M>()) };
    DlpackTensor {
        handle: Some(M::wrap(managed)),
        data: meta.data,
        dtype: meta.dtype,
        device: meta.device,
        flags: meta.flags,
        version: if matches!(M::wrap(managed), Handle::Versioned(_)) {
            DLPACK_VERSION
        } else {
            (0, 0)
        },
        computed_strides: None,
    }
}

unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: ferry's deleter is only installed on structs that `export` allocated as the first
    // field of an `ExportCtx`, and DLPack calls it once; freeing the context drops the kept array.
    unsafe {
        drop(Box::from_raw(
            (*managed)
                .manager_ctx
                .cast::<ExportCtx<DLManagedTensorVersioned>>(),
        ))
    };
}

unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: as in `delete_versioned`.
    unsafe {
        drop(Box::from_raw(
            (*managed).manager_ctx.cast::<ExportCtx<DLManagedTensor>>(),
        ))
    };
}

/// Checks a producer's `DLTensor` before anything reads its data: returns the address of element
/// `[0, .., 0]`, the dtype and, for NULL strides, computed row-major strides.
///
/// # Safety
/// `shape` (and `strides` unless NULL) point at `ndim` readable `int64_t`s when `ndim` is in
/// range; nothing else is dereferenced.
unsafe fn check_tensor(t: &DLTensor, flags: u64) -> Result<(*mut u8, DType, Option<Vec<isize>>)> {
    let ndim = t.ndim;
    if !(0..=MAX_NDIM as i32).contains(&ndim) {
        return Err(Error::invalid_dlpack(format!(
            "ndim {ndim} is outside 0..={MAX_NDIM}"
        )));
    }
    let ndim = ndim as usize;
    let desc = DTypeDesc {
        code: t.dtype.code,
        bits: t.dtype.bits,
        lanes: t.dtype.lanes,
    };
    let dtype = DType::from_desc(desc);
    if desc.bits == 0 || desc.lanes == 0 {
        return Err(Error::invalid_dlpack(format!(
            "dtype {desc} has zero bits or zero lanes"
        )));
    }
    if !desc.total_bits().is_multiple_of(8) && flags & FLAG_IS_SUBBYTE_TYPE_PADDED != 0 {
        return Err(Error::invalid_dlpack(format!(
            "dtype {desc} is flagged as padded sub-byte data, which ferry does not read; ask for packed data"
        )));
    }
    let device = Device {
        device_type: t.device.device_type as i32,
        device_id: t.device.device_id,
    };
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
    let shape: Vec<usize> = raw_shape.iter().map(|&d| d as usize).collect();
    let (strides, computed) = if ndim > 0 && t.strides.is_null() {
        // Pre-1.2 producers may send NULL for compact row-major data.
        let s = row_major_strides(&shape).ok_or_else(|| overflow(raw_shape, &[], desc))?;
        (s.clone(), Some(s))
    } else {
        let raw_strides = read_i64s(t.strides, "strides")?;
        (raw_strides.iter().map(|&s| s as isize).collect(), None)
    };
    let raw_strides: Vec<i64> = strides.iter().map(|&s| s as i64).collect();
    element_count(&shape).ok_or_else(|| overflow(raw_shape, &raw_strides, desc))?;
    HostArray::validate_layout(dtype, &shape, &strides).map_err(|e| match e {
        Error::UnsupportedLayout { .. } => e,
        _ => overflow(raw_shape, &raw_strides, desc),
    })?;
    let byte_offset = isize::try_from(t.byte_offset).map_err(|_| {
        Error::invalid_dlpack(format!("byte_offset {} (as signed: {}) is out of range; it must be a small non-negative number", t.byte_offset, t.byte_offset as i64))
    })?;
    let empty = shape.contains(&0);
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
        if let Some((lo, hi)) = offset_range(&shape, &strides)? {
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

fn overflow(shape: &[i64], strides: &[i64], desc: DTypeDesc) -> Error {
    Error::LayoutOverflow {
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        itemsize_bits: desc.total_bits(),
    }
}

/// Keeps a value alive as an [`Owner`] (helper for adapters).
pub fn owner<T: Any + Send + Sync>(value: T) -> Owner {
    Arc::new(value)
}
