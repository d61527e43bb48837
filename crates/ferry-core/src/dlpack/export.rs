//! DLPack export: [`HostArray`]s and adapter-owned memory ([`export_owner`]) as managed tensors
//! that ferry allocates, and the deleters that free them.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use dlpack_rs::ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
};

use smallvec::SmallVec;

use super::{DLPACK_VERSION, DlpackFlags, DlpackTensor, ManagedStruct};
use crate::array::Access;
use crate::layout::check_layout;
use crate::{DType, Device, HostArray, Owner, Result};

impl HostArray {
    /// Exports as a DLPack 1.3 versioned managed tensor sharing this array's memory. Strides are
    /// always written. READ_ONLY is always set: `self` (and its clones) still read the memory,
    /// and memory ferry reads is memory no consumer may write (hand an array over for writing
    /// with [`into_dlpack`](Self::into_dlpack)). IS_COPIED is never set. The deleter releases
    /// exactly this array's hold on its owner.
    pub fn to_dlpack(&self) -> DlpackTensor {
        let mut meta = self.export_meta(false);
        meta.flags.insert(DlpackFlags::READ_ONLY);
        export::<DLManagedTensorVersioned>(Keep::Host(self.clone()), meta)
    }

    /// Like [`to_dlpack`](Self::to_dlpack), handing this array over. When nothing else holds
    /// its memory (no clone, export or keep-alive), the consumer may write it unless the array
    /// is [`Access::ReadOnly`], and IS_COPIED is set when ferry copied the data to produce it and
    /// the memory is ferry's own ([`Access::Exclusive`]), so the consumer owns it exclusively
    /// (DLPack's meaning of the flag). While anything else holds the memory, ferry still reads
    /// it: READ_ONLY is set.
    pub fn into_dlpack(self) -> DlpackTensor {
        let unique = self.owner_is_unique();
        let exclusive = unique && self.copies() > 0 && self.access() == Access::Exclusive;
        let mut meta = self.export_meta(exclusive);
        if !unique {
            meta.flags.insert(DlpackFlags::READ_ONLY);
        }
        export::<DLManagedTensorVersioned>(Keep::Host(self), meta)
    }

    /// Exports as a legacy (pre-1.0) `DLManagedTensor` for old consumers; like
    /// [`to_dlpack`](Self::to_dlpack) without version or flags. A legacy tensor cannot say
    /// READ_ONLY, so its consumer must not write the memory: ferry still reads it (ferry's own
    /// adapters import legacy tensors as shared, never writable).
    pub fn to_dlpack_legacy(&self) -> DlpackTensor {
        export::<DLManagedTensor>(Keep::Host(self.clone()), self.export_meta(false))
    }

    /// Like [`to_dlpack`](Self::to_dlpack), for an exporter that counts what it hands out:
    /// `live` goes up by one now and down by one when the consumer's deleter runs. The export
    /// keeps only this array's owner (one more hold on it, so no clone of this array hands out
    /// a mutable view while the consumer reads) and its shape and strides, in one allocation:
    /// cheaper than a clone. A ferry import of it holds this array's owner itself and releases
    /// the export at once (so whether the memory is held alone stays one count), with this
    /// array's memory, layout and access as the export made them (not as its holder may have
    /// rewritten the managed struct) and no copy log: a clone of this array, in effect.
    ///
    /// Unlike [`to_dlpack`](Self::to_dlpack), the export lets its consumer write the memory
    /// (DLPack's usual sharing, what NumPy and PyTorch expect of a Python producer) when the
    /// array is not [`Access::ReadOnly`] and nothing else holds its owner: no clone, no
    /// framework tensor sharing it, no other export. Otherwise it is READ_ONLY. A writable
    /// export holds the owner itself, so later exports of the array are READ_ONLY and no
    /// framework shares the memory while the consumer may write it; this array still reads it.
    ///
    /// # Safety
    ///
    /// - Nothing reads this array's memory through this array (or a clone made from it later)
    ///   while the consumer writes it, or only as bytes and numbers that may be torn (never as
    ///   `bool`s formed without checking each byte in the load that reads it).
    /// - A `bool` array is written only with 0 or 1, or the reads above check it.
    pub unsafe fn to_dlpack_counted(&self, live: &'static AtomicUsize) -> DlpackTensor {
        export_shared::<DLManagedTensorVersioned>(self, live)
    }

    /// [`to_dlpack_counted`](Self::to_dlpack_counted) as a legacy (pre-1.0) `DLManagedTensor`.
    ///
    /// # Safety
    ///
    /// As for [`to_dlpack_counted`](Self::to_dlpack_counted), for every array: a legacy
    /// tensor cannot say READ_ONLY, so its consumer may take any of them as writable.
    pub unsafe fn to_dlpack_legacy_counted(&self, live: &'static AtomicUsize) -> DlpackTensor {
        export_shared::<DLManagedTensor>(self, live)
    }

    /// A bare `DLTensor` of this array (DLPack's borrowed form: no flags, no deleter) whose
    /// `shape` and `strides` fields are the given addresses (`ndim` `int64_t`s each, NULL for
    /// 0-d), which the caller keeps valid and unchanged while the tensor is read.
    pub fn dl_tensor(&self, shape: *mut i64, strides: *mut i64) -> DLTensor {
        dl_tensor(&self.export_meta(false), self.ndim(), shape, strides)
    }

    fn export_meta(&self, exclusive_copy: bool) -> ExportMeta {
        let mut flags = DlpackFlags::empty();
        flags.set(DlpackFlags::READ_ONLY, self.is_read_only());
        flags.set(DlpackFlags::IS_COPIED, exclusive_copy);
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
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Step of each axis in elements.
    pub strides: Vec<isize>,
    /// Address of element `[0, .., 0]` (device address for device memory).
    pub data: *mut c_void,
    /// Where the memory lives.
    pub device: Device,
    /// Element type.
    pub dtype: DType,
    /// DLPack flags (READ_ONLY, IS_COPIED).
    pub flags: DlpackFlags,
}

/// Exports foreign memory (for example a framework's CUDA buffer) as a versioned DLPack tensor
/// whose deleter drops `owner`.
///
/// # Safety
///
/// Every element the layout reaches lives in memory of `parts.device` that stays valid while
/// `owner` is alive, and the layout's extent fits the address space.
pub unsafe fn export_owner(parts: ExportParts, owner: Owner) -> Result<DlpackTensor> {
    check_layout(parts.dtype, &parts.shape, &parts.strides)?;
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
    let keep = Keep::Foreign {
        owner,
        shape,
        strides,
    };
    Ok(export::<DLManagedTensorVersioned>(keep, meta))
}

#[derive(Clone, Copy)]
struct ExportMeta {
    data: *mut u8,
    dtype: DType,
    device: Device,
    flags: DlpackFlags,
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

/// The allocation behind one exported tensor: the managed struct first, then what it keeps,
/// and the shape then the strides as DLPack's `int64_t`s, which the `DLTensor` points at (a
/// copy of its own, so a holder that writes through those pointers changes nothing ferry
/// keeps).
#[repr(C)]
struct ExportCtx<M> {
    managed: M,
    keep: Keep,
    dims: SmallVec<[i64; 8]>,
}

/// The shape then the strides of a layout as DLPack's `int64_t`s: usize and isize values keep
/// their bits as i64s (asserted in the parent module); shape entries are ≤ isize::MAX. Up to
/// four axes are filled in place (smallvec's `collect` goes element by element).
fn dlpack_dims(shape: &[usize], strides: &[isize]) -> SmallVec<[i64; 8]> {
    let ndim = shape.len();
    if ndim <= 4 {
        let mut buffer = [0i64; 8];
        for (i, (&d, &s)) in shape.iter().zip(strides).enumerate() {
            buffer[i] = d as i64;
            buffer[ndim + i] = s as i64;
        }
        SmallVec::from_buf_and_len(buffer, 2 * ndim)
    } else {
        let shape = shape.iter().map(|&d| d as i64);
        SmallVec::from_vec(shape.chain(strides.iter().map(|&s| s as i64)).collect())
    }
}

/// The allocation behind a counted export ([`HostArray::to_dlpack_counted`]): the managed
/// struct first, then the owner that keeps the memory alive, the count, the shape then the
/// strides as DLPack's `int64_t`s, which the `DLTensor` points at, and what the export said
/// of the memory (kept apart from the managed struct, whose fields its holder can write).
#[repr(C)]
struct SharedCtx<M> {
    managed: M,
    _owner: Owner,
    _count: LiveCount,
    dims: SmallVec<[i64; 8]>,
    meta: ExportMeta,
    access: Access,
    /// The same shape and strides again, which nothing outside ferry points at (`dims` is
    /// what the `DLTensor` points at, so its holder can rewrite it).
    layout: SmallVec<[i64; 8]>,
}

/// What a ferry import of one of ferry's counted exports is made of, read from the export's
/// own context rather than from the managed struct its consumer handed back.
pub(super) struct CountedParts {
    pub(super) owner: Owner,
    pub(super) data: *mut u8,
    pub(super) dtype: DType,
    pub(super) device: Device,
    pub(super) access: Access,
    pub(super) shape: crate::array::Dims<usize>,
    pub(super) strides: crate::array::Dims<isize>,
}

/// One export counted in an exporter's counter: added when made, taken off when dropped.
struct LiveCount(&'static AtomicUsize);

impl LiveCount {
    fn new(live: &'static AtomicUsize) -> LiveCount {
        live.fetch_add(1, Ordering::SeqCst);
        LiveCount(live)
    }
}

impl Drop for LiveCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether ferry's `export` or `export_shared` made the managed tensor at `p` (by its deleter).
///
/// # Safety
/// `p` points at a live managed tensor of any major version.
pub(super) unsafe fn made_by_ferry<M: Exported>(p: NonNull<M>) -> bool {
    // SAFETY: forwarded contract; only the deleter field is read.
    let deleter = unsafe { M::deleter(p) };
    deleter.is_some_and(|d| {
        std::ptr::fn_addr_eq(d, M::FERRY_DELETER) || std::ptr::fn_addr_eq(d, M::SHARED_DELETER)
    })
}

/// How ferry fills in each managed-tensor struct.
pub(super) trait Exported: ManagedStruct {
    /// The version [`DlpackTensor::version`] reports for this struct.
    const VERSION: (u32, u32);
    /// The deleter of counted exports (a [`SharedCtx`]).
    const SHARED_DELETER: unsafe extern "C" fn(*mut Self);
    /// The struct, with ferry's deleter of [`ExportCtx`]s.
    fn new(tensor: DLTensor, ctx: *mut c_void, flags: DlpackFlags) -> Self;
    fn set_deleter(&mut self, deleter: unsafe extern "C" fn(*mut Self));
}

impl Exported for DLManagedTensorVersioned {
    const VERSION: (u32, u32) = DLPACK_VERSION;
    const SHARED_DELETER: unsafe extern "C" fn(*mut Self) = delete_shared_versioned;
    fn set_deleter(&mut self, deleter: unsafe extern "C" fn(*mut Self)) {
        self.deleter = Some(deleter);
    }
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void, flags: DlpackFlags) -> Self {
        DLManagedTensorVersioned {
            version: DLPackVersion {
                major: DLPACK_VERSION.0,
                minor: DLPACK_VERSION.1,
            },
            manager_ctx,
            deleter: Some(delete_versioned),
            flags: flags.bits(),
            dl_tensor,
        }
    }
}

impl Exported for DLManagedTensor {
    const VERSION: (u32, u32) = (0, 0);
    const SHARED_DELETER: unsafe extern "C" fn(*mut Self) = delete_shared_legacy;
    fn set_deleter(&mut self, deleter: unsafe extern "C" fn(*mut Self)) {
        self.deleter = Some(deleter);
    }
    fn new(dl_tensor: DLTensor, manager_ctx: *mut c_void, _flags: DlpackFlags) -> Self {
        DLManagedTensor {
            dl_tensor,
            manager_ctx,
            deleter: Some(delete_legacy),
        }
    }
}

/// The `DLTensor` of an export: `meta`'s memory, with `ndim` axes whose shape and strides are
/// at the given addresses (NULL for 0-d).
fn dl_tensor(meta: &ExportMeta, ndim: usize, shape: *mut i64, strides: *mut i64) -> DLTensor {
    let desc = meta.dtype.desc();
    DLTensor {
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
        shape,
        strides,
        byte_offset: 0,
    }
}

fn export<M: Exported>(keep: Keep, meta: ExportMeta) -> DlpackTensor {
    let (shape, strides) = keep.shape_strides();
    let dims = dlpack_dims(shape, strides);
    let ndim = shape.len();
    let raw = Box::into_raw(Box::new(ExportCtx {
        managed: M::new(
            dl_tensor(&meta, 0, std::ptr::null_mut(), std::ptr::null_mut()),
            std::ptr::null_mut(),
            meta.flags,
        ),
        keep,
        dims,
    }));
    // SAFETY: `raw` is a fresh, non-null Box allocation that nobody else has seen yet, so
    // reading its `dims` and rewriting its managed struct (now pointing into those dims, which
    // never move again: inline in the allocation or on their own heap buffer, with its own
    // address as `manager_ctx`) races with nothing; the managed struct is its first field
    // (repr(C)), so a pointer to the allocation is a pointer to the managed struct.
    let managed = unsafe {
        let tensor = if ndim == 0 {
            dl_tensor(&meta, 0, std::ptr::null_mut(), std::ptr::null_mut())
        } else {
            let dims = (*raw).dims.as_mut_ptr();
            dl_tensor(&meta, ndim, dims, dims.add(ndim))
        };
        (*raw).managed = M::new(tensor, raw.cast(), meta.flags);
        NonNull::new_unchecked(raw.cast::<M>())
    };
    exported(managed, &meta)
}

/// The `DlpackTensor` owning a managed struct ferry just made from `meta`.
fn exported<M: Exported>(managed: NonNull<M>, meta: &ExportMeta) -> DlpackTensor {
    DlpackTensor {
        handle: Some(M::wrap(managed)),
        data: meta.data,
        dtype: meta.dtype,
        device: meta.device,
        flags: meta.flags,
        version: M::VERSION,
        computed_strides: None,
    }
}

/// A counted export of `array` (see [`HostArray::to_dlpack_counted`]).
fn export_shared<M: Exported>(array: &HostArray, live: &'static AtomicUsize) -> DlpackTensor {
    let mut meta = array.export_meta(false);
    if !array.owner_is_unique() {
        meta.flags.insert(DlpackFlags::READ_ONLY);
    }
    let ndim = array.ndim();
    let (shape, strides) = (array.shape(), array.strides());
    let dims = dlpack_dims(shape, strides);
    let empty = dl_tensor(&meta, 0, std::ptr::null_mut(), std::ptr::null_mut());
    let raw = Box::into_raw(Box::new(SharedCtx {
        managed: M::new(empty, std::ptr::null_mut(), meta.flags),
        _owner: array.owner().clone(),
        _count: LiveCount::new(live),
        layout: dims.clone(),
        dims,
        meta,
        access: array.access(),
    }));
    // SAFETY: `raw` is a fresh, non-null Box allocation that nobody else has seen yet, so
    // taking a mutable pointer to its dims (which never move again: inline in the allocation or
    // on their own heap buffer, and which a holder may write through) and rewriting its managed
    // struct races with nothing; the managed struct is its first field (repr(C)), so a pointer
    // to the allocation is a pointer to the managed struct. The pointers stay valid until the
    // deleter frees the whole context.
    let managed = unsafe {
        let tensor = if ndim == 0 {
            empty
        } else {
            let dims = (*raw).dims.as_mut_ptr();
            dl_tensor(&meta, ndim, dims, dims.add(ndim))
        };
        let mut managed = M::new(tensor, raw.cast(), meta.flags);
        managed.set_deleter(M::SHARED_DELETER);
        (*raw).managed = managed;
        NonNull::new_unchecked(raw.cast::<M>())
    };
    exported(managed, &meta)
}

/// Takes the array back out of one of ferry's own `HostArray` exports (leaving the context
/// holding nothing, for the deleter to free); `None` for any other tensor.
///
/// The managed struct's `shape` and `strides` point into the context's own dims, not into the
/// array, so they stay valid after a take; `into_host`, the only caller, releases the tensor
/// at once.
///
/// # Safety
/// `p` points at a live managed tensor (major version 1, or legacy) that nobody else reads or
/// writes during the call.
pub(super) unsafe fn take_host<M: ManagedStruct>(p: NonNull<M>) -> Option<HostArray> {
    // SAFETY: live per the contract.
    let m = unsafe { p.as_ref() };
    if !m.is_ferry_export() {
        return None;
    }
    // SAFETY: ferry's deleter is only installed on structs that `export` allocated as the first
    // field of an `ExportCtx<M>` (repr(C)), so the struct's own address is the context's (never
    // `manager_ctx`, which its holder can rewrite); `keep` does not overlap the managed struct
    // `m` borrows, and nobody else touches the context during the call.
    let keep = unsafe { &mut (*p.as_ptr().cast::<ExportCtx<M>>()).keep };
    match std::mem::replace(keep, Keep::Taken) {
        Keep::Host(array) => Some(array),
        other => {
            *keep = other;
            None
        }
    }
}

/// The parts of one of ferry's counted exports ([`HostArray::to_dlpack_counted`]) — its owner
/// cloned, and the memory, dtype, access and layout as the export made them — or `None` for any
/// other tensor. Everything comes from the export's context, found by the struct's own address
/// (as its deleter finds it): a holder that rewrote the managed struct's fields (data, flags,
/// `manager_ctx`) or the shape and strides they point at changes nothing here.
///
/// # Safety
/// `p` points at a live managed tensor (major version 1, or legacy).
pub(super) unsafe fn counted_export_parts<M: Exported>(p: NonNull<M>) -> Option<CountedParts> {
    // SAFETY: live per the contract; only the deleter field is read.
    let deleter = unsafe { M::deleter(p) }?;
    if !std::ptr::fn_addr_eq(deleter, M::SHARED_DELETER) {
        return None;
    }
    // SAFETY: the counted deleter is installed only on structs `export_shared` allocated as the
    // first field of a `SharedCtx<M>` (repr(C)), so `p` is the context's address; its fields
    // are written once before the tensor is handed out and only dropped by the deleter, which
    // has not run (the tensor is live).
    let ctx = unsafe { &*p.as_ptr().cast::<SharedCtx<M>>() };
    let ndim = ctx.layout.len() / 2;
    let (shape, strides) = ctx.layout.split_at(ndim);
    Some(CountedParts {
        owner: ctx._owner.clone(),
        data: ctx.meta.data,
        dtype: ctx.meta.dtype,
        device: ctx.meta.device,
        access: ctx.access,
        // i64s made from usize and isize values at export (the parent module asserts they
        // keep their bits).
        shape: shape.iter().map(|&d| d as usize).collect(),
        strides: strides.iter().map(|&s| s as isize).collect(),
    })
}

pub(super) unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: DLPack calls the deleter once, with the pointer ferry handed out.
    unsafe { free_export(managed) }
}

pub(super) unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    // SAFETY: as in `delete_versioned`.
    unsafe { free_export(managed) }
}

/// Frees the context of one of ferry's exports, dropping what it keeps.
///
/// # Safety
/// `managed` is NULL or a managed tensor that `export` allocated, not freed yet.
unsafe fn free_export<M: ManagedStruct>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    // SAFETY: ferry's deleter is only installed on structs that `export` allocated as the first
    // field of an `ExportCtx` (repr(C)), so the struct's own address is the context's (never
    // `manager_ctx`, which its holder can rewrite); DLPack calls it once.
    let ctx = unsafe { Box::from_raw(managed.cast::<ExportCtx<M>>()) };
    // Freeing the context drops the kept array, whose owner may be anyone's (an Arrow buffer
    // over a user's allocation): a panic of its drop must not unwind into the C caller.
    crate::drop_without_unwinding(ctx);
}

unsafe extern "C" fn delete_shared_versioned(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: DLPack calls the deleter once, with the pointer ferry handed out.
    unsafe { free_shared(managed) }
}

unsafe extern "C" fn delete_shared_legacy(managed: *mut DLManagedTensor) {
    // SAFETY: as in `delete_shared_versioned`.
    unsafe { free_shared(managed) }
}

/// Frees the context of a counted export: drops the owner's hold and the count.
///
/// # Safety
/// `managed` is NULL or a managed tensor that `export_shared` allocated, not freed yet.
unsafe fn free_shared<M>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    // SAFETY: this deleter is only installed on structs that `export_shared` allocated as the
    // first field of a `SharedCtx<M>` (repr(C)), and DLPack calls it once.
    let ctx = unsafe { Box::from_raw(managed.cast::<SharedCtx<M>>()) };
    // The owner's hold may be the last: as in `free_export`, its drop must not unwind.
    crate::drop_without_unwinding(ctx);
}
