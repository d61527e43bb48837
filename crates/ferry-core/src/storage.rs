//! The one checked way to describe memory that someone else allocated — a framework tensor's
//! storage, a memory-mapped file, a buffer a framework handed over — as a [`HostArray`]:
//! implement [`Storage`] (or [`StorageMut`]) once, then [`HostArray::from_storage`] (or
//! [`HostArray::from_storage_mut`]) refuses every layout that reaches outside the storage.

use std::ops::Range;
use std::sync::Arc;

use crate::array::{Access, RawParts};
use crate::layout::{byte_span, check_in_storage};
use crate::{DType, Error, HostArray, MemoryKind, Owner, Result};

/// Host memory ferry may read for as long as a value of this type lives.
///
/// # Safety
///
/// Implementors promise that for every value `s`:
/// - `s.bytes()` returns the same `(ptr, len)` on every call, and `[ptr, ptr + len)` is one
///   allocation (or `len == 0`) that the CPU can read;
/// - those bytes stay allocated, at that address, and are not written by anyone while `s`
///   lives (the storage is frozen or copy-on-write, or writers are locked out: a framework that
///   may still write the memory must not implement this trait for it);
/// - `ptr` is non-null when `len > 0`;
/// - [`memory`](Storage::memory) says truthfully what kind of host memory the bytes are in.
pub unsafe trait Storage: Send + Sync + 'static {
    /// The storage's first byte and its length in bytes.
    fn bytes(&self) -> (*const u8, usize);

    /// What kind of host memory the bytes are in (plain CPU memory unless said otherwise).
    fn memory(&self) -> MemoryKind {
        MemoryKind::Cpu
    }
}

/// Host memory that a value of this type owns alone, so ferry may also write it.
///
/// # Safety
///
/// Everything [`Storage`] promises, and: nobody but this value can reach the memory (it was
/// allocated for it, or handed over with its ownership), and `bytes_mut` returns the same
/// `(ptr, len)` as [`Storage::bytes`], with `ptr` derived from a mutable access to the memory
/// (write permission).
pub unsafe trait StorageMut: Storage {
    /// The storage's first byte, writable, and its length in bytes.
    fn bytes_mut(&mut self) -> (*mut u8, usize);
}

// SAFETY: a Vec's buffer is one allocation of `len` initialised elements that stays in place
// while the Vec lives and is not resized (nothing can: the Vec is moved into the array's owner
// and never handed out again); `as_ptr` is non-null (dangling for capacity 0, with len 0).
unsafe impl<T: Copy + Send + Sync + 'static> Storage for Vec<T> {
    fn bytes(&self) -> (*const u8, usize) {
        (self.as_ptr().cast(), std::mem::size_of_val(self.as_slice()))
    }
}

// SAFETY: as for `Storage`; the Vec owns its buffer alone and `as_mut_ptr` (same address as
// `as_ptr`) carries write permission.
unsafe impl<T: Copy + Send + Sync + 'static> StorageMut for Vec<T> {
    fn bytes_mut(&mut self) -> (*mut u8, usize) {
        let len = std::mem::size_of_val(self.as_slice());
        (self.as_mut_ptr().cast(), len)
    }
}

/// Where a view starts in a storage and how it steps through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLayout {
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Step of each axis in elements; negative and zero allowed.
    pub strides: Vec<isize>,
    /// Index of element `[0, .., 0]` in the storage, in elements of `dtype` (for packed
    /// sub-byte dtypes it must fall on a byte boundary).
    pub offset: usize,
}

impl StorageLayout {
    /// A row-major layout of `shape` starting at the storage's first byte.
    pub fn row_major(dtype: DType, shape: Vec<usize>) -> Result<StorageLayout> {
        let strides = crate::layout::row_major_strides(&shape)
            .ok_or_else(|| crate::layout::overflow(&shape, &[], dtype.desc().total_bits()))?;
        Ok(StorageLayout {
            dtype,
            shape,
            strides,
            offset: 0,
        })
    }

    /// The byte of element `[0, .., 0]` in a storage of `storage_len` bytes, after checking
    /// that every element the layout reaches lies inside the storage (in bits for sub-byte
    /// dtypes) and that it starts on a byte boundary. (The rest of the layout's validity is
    /// [`check_layout`](crate::layout::check_layout)'s, which every constructor runs.)
    pub fn locate(&self, storage_len: usize) -> Result<usize> {
        check_in_storage(
            self.dtype,
            &self.shape,
            &self.strides,
            self.offset,
            storage_len,
        )?;
        let bits = self.dtype.desc().total_bits() as usize;
        match self.offset.checked_mul(bits) {
            Some(start_bits) if start_bits.is_multiple_of(8) => Ok(start_bits / 8),
            _ => Err(self
                .unsupported("a view of packed sub-byte elements must start on a byte boundary")),
        }
    }

    /// The bytes of a storage of `storage_len` bytes that the layout reaches, lowest to
    /// highest, after the checks of [`locate`](Self::locate); empty for an empty layout. This is
    /// the span a device copy needs to move.
    pub fn byte_range(&self, storage_len: usize) -> Result<Range<usize>> {
        let first = self.locate(storage_len)?;
        Ok(match byte_span(self.dtype, &self.shape, &self.strides)? {
            // In the storage (checked by `locate`), so neither end wraps.
            Some((lo, len)) => {
                let start = first.wrapping_add_signed(lo);
                start..start + len
            }
            None => first.min(storage_len)..first.min(storage_len),
        })
    }

    /// The same view over a buffer that holds the storage's bytes from `start` on (a copy of
    /// [`byte_range`](Self::byte_range), rounded down to `start`). Refused when `start` lies
    /// after element `[0, .., 0]`'s first byte or inside an element.
    pub fn rebase(mut self, start: usize) -> Result<StorageLayout> {
        let bits = self.dtype.desc().total_bits() as usize;
        let skipped = start
            .checked_mul(8)
            .filter(|b| b.is_multiple_of(bits))
            .map(|b| b / bits)
            .filter(|&elements| elements <= self.offset);
        let Some(skipped) = skipped else {
            return Err(self.unsupported(
                "the copied bytes do not start on an element at or before the view's first one",
            ));
        };
        self.offset -= skipped;
        Ok(self)
    }

    fn unsupported(&self, reason: &'static str) -> Error {
        Error::UnsupportedLayout {
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            dtype: self.dtype,
            reason,
        }
    }

    /// The address of element `[0, .., 0]` in a storage starting at `base` of `len` bytes, after
    /// [`locate`](Self::locate)'s checks; null for an empty array.
    fn first_element(&self, base: *const u8, len: usize) -> Result<*const u8> {
        let first = self.locate(len)?;
        if self.shape.contains(&0) {
            return Ok(std::ptr::null());
        }
        // In bounds: `locate` put element [0, .., 0] inside the storage.
        Ok(base.wrapping_add(first))
    }
}

impl HostArray {
    /// A read-only array over `layout` in `storage`, which the array keeps alive (no copy).
    /// Refuses, with [`Error::OutsideStorage`], a layout that reaches a byte outside the
    /// storage — sub-byte dtypes are checked in bits — and every layout
    /// [`from_raw_parts`](HostArray::from_raw_parts) refuses.
    pub fn from_storage<S: Storage>(storage: S, layout: StorageLayout) -> Result<HostArray> {
        let (base, len) = storage.bytes();
        let data = layout.first_element(base, len)?;
        let memory = storage.memory();
        let owner: Owner = Arc::new(storage);
        let parts = parts(data, layout, memory, Access::ReadOnly);
        // SAFETY: `data` and every element the layout reaches lie inside `storage`'s bytes
        // (checked above), which `Storage` promises stay allocated, in place and unwritten
        // while `storage` lives; `owner` is `storage`. ReadOnly: ferry never writes.
        unsafe { HostArray::from_raw_parts(parts, owner) }
    }

    /// Like [`from_storage`](HostArray::from_storage), for a storage the array then owns
    /// alone: the array is [`Access::Exclusive`], so [`view_mut`](HostArray::view_mut) may
    /// write it.
    pub fn from_storage_mut<S: StorageMut>(
        mut storage: S,
        layout: StorageLayout,
    ) -> Result<HostArray> {
        let (base, len) = storage.bytes_mut();
        let data = layout.first_element(base.cast_const(), len)?;
        let memory = storage.memory();
        let owner: Owner = Arc::new(storage);
        let parts = parts(data, layout, memory, Access::Exclusive);
        // SAFETY: as in `from_storage`; in addition `StorageMut` promises that only `storage`
        // (now `owner`, held by this array alone) reaches the memory and that `base`, from
        // which `data` derives, carries write permission.
        unsafe { HostArray::from_raw_parts(parts, owner) }
    }
}

fn parts(data: *const u8, layout: StorageLayout, memory: MemoryKind, access: Access) -> RawParts {
    RawParts {
        data,
        dtype: layout.dtype,
        shape: layout.shape,
        strides: layout.strides,
        memory,
        access,
    }
}
