//! DLPack 1.3 exchange on the ABI types of `dlpack-rs`: export of [`HostArray`] (and of any
//! owner-backed memory, for adapters) as versioned or legacy managed tensors, and validated
//! import of either struct into a [`DlpackTensor`] handle or straight into a `HostArray`.
//!
//! Ownership rule: a [`DlpackTensor`] owns one managed tensor and calls its deleter exactly once
//! (when dropped, when the last `HostArray` made from it drops, or never, after
//! [`DlpackTensor::into_raw`] passed it to a consumer, who then owns that duty).
//!
//! This module holds the handle and what both directions share; `import` checks what producers
//! send, `export` writes ferry's own managed tensors and their deleters.
//!
//! [`HostArray`]: crate::HostArray

mod export;
mod import;

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use dlpack_rs::ffi::{DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor};

pub use export::{ExportParts, export_owner};

use crate::{DType, DTypeDesc, Device, Owner};

// DLPack shapes and strides are `int64_t`; ferry keeps `usize`/`isize` and hands its own buffers
// to consumers, which is only the same memory layout on 64-bit targets.
const _: () =
    assert!(size_of::<usize>() == size_of::<i64>() && size_of::<isize>() == size_of::<i64>());

/// The DLPack version ferry produces.
pub const DLPACK_VERSION: (u32, u32) = (1, 3);

bitflags::bitflags! {
    /// The `flags` field of a versioned managed tensor (`DLPACK_FLAG_BITMASK_*` in the DLPack
    /// 1.3 header); legacy tensors have none. Bits a producer sets that DLPack does not define
    /// yet are kept as they came (`from_bits_retain`) and mean nothing to ferry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct DlpackFlags: u64 {
        /// `DLPACK_FLAG_BITMASK_READ_ONLY`: the tensor is read only; the consumer must not
        /// write to its data.
        const READ_ONLY = 1;
        /// `DLPACK_FLAG_BITMASK_IS_COPIED`: the tensor is a copy made by the producer, solely
        /// owned by the consumer until the producer's deleter is invoked.
        const IS_COPIED = 2;
        /// `DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED`: a sub-byte dtype (fp4, fp6) is stored
        /// padded, one element per byte, instead of the default packed.
        const IS_SUBBYTE_TYPE_PADDED = 4;
    }
}

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

/// Evaluates `$body` with `$p` bound to the typed pointer inside a [`Handle`], for code written
/// once over [`ManagedStruct`].
macro_rules! on_managed {
    ($handle:expr, $p:ident => $body:expr) => {
        match $handle {
            Handle::Versioned($p) => $body,
            Handle::Legacy($p) => $body,
        }
    };
}
use on_managed;

/// What import and export read of the two managed-tensor structs, so each is written once.
trait ManagedStruct: Sized + 'static {
    /// ferry's deleter for this struct: how an import recognises ferry's own exports.
    const FERRY_DELETER: unsafe extern "C" fn(*mut Self);
    fn wrap(ptr: NonNull<Self>) -> Handle;
    fn dl_tensor(&self) -> &DLTensor;
    /// The deleter field, read without forming a reference to the whole struct.
    ///
    /// # Safety
    /// `p` points at a live managed tensor of this struct's major version or another (DLPack
    /// keeps every field up to `flags` in place across major versions).
    unsafe fn deleter(p: NonNull<Self>) -> Option<unsafe extern "C" fn(*mut Self)>;
    /// The version field, read like [`deleter`](Self::deleter); `None` for legacy tensors.
    ///
    /// # Safety
    /// As for [`deleter`](Self::deleter).
    unsafe fn version(p: NonNull<Self>) -> Option<DLPackVersion>;
    /// The producer's flags, unknown bits kept; empty for legacy tensors.
    fn flags(&self) -> DlpackFlags;

    /// Whether ferry's `export` allocated this tensor (recognised by its deleter).
    fn is_ferry_export(&self) -> bool {
        // SAFETY: `self` is a live managed tensor of this struct's layout.
        let deleter = unsafe { Self::deleter(NonNull::from(self)) };
        deleter.is_some_and(|d| std::ptr::fn_addr_eq(d, Self::FERRY_DELETER))
    }
}

macro_rules! managed_struct {
    ($t:ty => $variant:ident, $ferry_deleter:path, $($item:item)*) => {
        impl ManagedStruct for $t {
            const FERRY_DELETER: unsafe extern "C" fn(*mut Self) = $ferry_deleter;
            fn wrap(ptr: NonNull<Self>) -> Handle {
                Handle::$variant(ptr)
            }
            fn dl_tensor(&self) -> &DLTensor {
                &self.dl_tensor
            }
            unsafe fn deleter(p: NonNull<Self>) -> Option<unsafe extern "C" fn(*mut Self)> {
                // SAFETY: `p` is live (the contract) and the place expression reads only the
                // `deleter` field, which every major version keeps in place.
                unsafe { (*p.as_ptr()).deleter }
            }
            $($item)*
        }
    };
}

managed_struct!(DLManagedTensorVersioned => Versioned, export::delete_versioned,
    unsafe fn version(p: NonNull<Self>) -> Option<DLPackVersion> {
        // SAFETY: `p` is live (the contract) and the place expression reads only `version`,
        // which every major version keeps in place.
        Some(unsafe { (*p.as_ptr()).version })
    }
    fn flags(&self) -> DlpackFlags {
        DlpackFlags::from_bits_retain(self.flags)
    }
);
managed_struct!(DLManagedTensor => Legacy, export::delete_legacy,
    unsafe fn version(_: NonNull<Self>) -> Option<DLPackVersion> {
        None
    }
    fn flags(&self) -> DlpackFlags {
        DlpackFlags::empty()
    }
);

/// The address of the deleter of the managed tensor at `p` (0 for none).
///
/// # Safety
/// `p` points at a live managed tensor of any major version.
unsafe fn deleter_address<M: ManagedStruct>(p: NonNull<M>) -> usize {
    // SAFETY: forwarded contract.
    unsafe { M::deleter(p) }.map_or(0, |deleter| deleter as usize)
}

/// Calls the deleter of the managed tensor at `p`, if it has one (DLPack allows NULL).
///
/// # Safety
/// `p` points at a live managed tensor of any major version, owned by the caller, whose deleter
/// has not run yet; `p` is dangling afterwards.
unsafe fn release<M: ManagedStruct>(p: NonNull<M>) {
    // SAFETY: forwarded contract; the deleter is called at most once, here, as its owner.
    unsafe {
        if let Some(deleter) = M::deleter(p) {
            deleter(p.as_ptr());
        }
    }
}

/// An owned, validated DLPack managed tensor on any device.
///
/// Host-readable tensors become [`HostArray`](crate::HostArray)s with
/// [`DlpackTensor::into_host`]; device tensors (CUDA, ROCm, ...) stay handles that adapters copy
/// to host or hand to their framework.
pub struct DlpackTensor {
    handle: Option<Handle>,
    /// Element `[0, .., 0]` (`data + byte_offset`).
    data: *mut u8,
    dtype: DType,
    device: Device,
    flags: DlpackFlags,
    version: (u32, u32),
    /// Row-major strides computed for producers that sent NULL strides (pre-1.2).
    computed_strides: Option<Vec<isize>>,
}

// SAFETY: a DLPack tensor is a plain memory description; the producer's deleter must be callable
// from any thread, which `from_versioned`/`from_legacy` require of their callers (and ferry's
// own deleters only drop `Send + Sync` owners).
unsafe impl Send for DlpackTensor {}
// SAFETY: shared access only reads the immutable metadata.
unsafe impl Sync for DlpackTensor {}

impl Drop for DlpackTensor {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // SAFETY: `handle` is the live managed tensor this value owns, released exactly once
            // here (`take` leaves None behind).
            on_managed!(handle, p => unsafe { release(p) });
        }
    }
}

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

impl DlpackTensor {
    fn dl_tensor(&self) -> &DLTensor {
        let handle = self
            .handle
            .expect("a DlpackTensor always holds its handle until consumed");
        // SAFETY: the handle is live while `self` owns it, with a major version of 1 (checked
        // at import, or written by ferry); the reference borrows `self`.
        on_managed!(handle, p => unsafe { p.as_ref() }.dl_tensor())
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

    /// The producer's `byte_offset`: where element `[0, .., 0]` lies past its `data` field. A
    /// consumer that hands the raw tensor on must honour it (libtorch 2.9's `fromDLPack`
    /// ignores it).
    pub fn byte_offset(&self) -> u64 {
        self.dl_tensor().byte_offset
    }

    /// The producer's flags (empty for legacy tensors from other producers), unknown bits
    /// included.
    pub fn flags(&self) -> DlpackFlags {
        self.flags
    }

    /// Whether the producer forbids writes.
    pub fn is_read_only(&self) -> bool {
        self.flags.contains(DlpackFlags::READ_ONLY)
    }

    /// Whether the producer copied the data for this exchange.
    pub fn is_copied(&self) -> bool {
        self.flags.contains(DlpackFlags::IS_COPIED)
    }

    /// DLPack version of the struct ((0, 0) for legacy tensors).
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// Whether ferry made this tensor ([`HostArray::to_dlpack`](crate::HostArray::to_dlpack),
    /// `into_dlpack`, a counted export), recognised by its deleter: memory a ferry array may
    /// still read, which an adapter hands its framework for writing only once
    /// [`into_host`](Self::into_host) gives back an array ferry holds alone.
    pub fn made_by_ferry(&self) -> bool {
        let handle = self
            .handle
            .expect("a DlpackTensor always holds its handle until consumed");
        // SAFETY: the handle is live while `self` owns it.
        on_managed!(handle, p => unsafe { export::made_by_ferry(p) })
    }

    /// The address of the producer's deleter (0 where it has none): which library made the
    /// tensor, for a consumer that treats some producers' memory apart (ferry's Python module
    /// copies PyTorch's, whose export keeps the tensor alive but not its memory).
    pub fn deleter_address(&self) -> usize {
        let handle = self
            .handle
            .expect("a DlpackTensor always holds its handle until consumed");
        // SAFETY: the handle is live while `self` owns it; only the deleter field is read.
        on_managed!(handle, p => unsafe { deleter_address(p) })
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
}

/// The dtype descriptor of a `DLTensor`, code kept raw.
fn desc_of(t: &DLTensor) -> DTypeDesc {
    DTypeDesc {
        code: t.dtype.code,
        bits: t.dtype.bits,
        lanes: t.dtype.lanes,
    }
}

/// The device of a `DLTensor`, type kept raw.
fn device_of(t: &DLTensor) -> Device {
    Device {
        device_type: t.device.device_type as i32,
        device_id: t.device.device_id,
    }
}

/// Keeps a value alive as an [`Owner`] (helper for adapters).
pub fn owner<T: Any + Send + Sync>(value: T) -> Owner {
    Arc::new(value)
}
