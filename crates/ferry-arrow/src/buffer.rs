//! Memory across the boundary, without copying: an Arrow [`Buffer`] over a [`HostArray`]'s
//! bytes that keeps the array's owner alive, and a read-only [`HostArray`] over an Arrow
//! [`Buffer`] that keeps the buffer alive. Bit-packed booleans are the one exception: one
//! recorded copy each way.

use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer};
use ferry_core::{CopyReason, DType, HostArray, Owner, Storage, StorageLayout, record_copy};

use crate::Result;

/// An Arrow buffer as ferry storage: the bytes of `Buffer`'s slice, kept alive by it.
struct ArrowBytes(Buffer);

// SAFETY: a `Buffer` is a reference-counted handle to bytes on the heap (Arrow's allocation,
// a foreign one kept by its `Allocation`, or an FFI producer's) that stay at their address
// while any handle lives; `as_ptr`/`len` are fixed for a handle. Arrow buffers are immutable
// while shared: the only ways to write them (`into_mutable`, `into_vec`) need the handle to be
// unique, and this one is a clone kept here, so they fail. `as_ptr` of an empty buffer is
// dangling but non-null, and its length is 0.
unsafe impl Storage for ArrowBytes {
    fn bytes(&self) -> (*const u8, usize) {
        (self.0.as_ptr(), self.0.len())
    }
}

/// A read-only [`HostArray`] of `layout` over `buffer` (which it keeps alive), refused if the
/// layout reaches outside the buffer.
pub(crate) fn host_over_buffer(buffer: Buffer, layout: StorageLayout) -> Result<HostArray> {
    Ok(HostArray::from_storage(ArrowBytes(buffer), layout)?)
}

/// What keeps a ferry array's memory alive inside Arrow: an opaque keep-alive (no access to
/// the memory, and it makes the array's `view_mut` refuse while Arrow holds it).
struct HeldByArrow(#[allow(dead_code)] AssertUnwindSafe<Owner>);

/// A row-major (or permuted row-major) array's elements as one Arrow buffer over the same
/// memory. `array` must be dense (its byte span holds exactly its elements) and its data
/// aligned for its element type (arrow-rs asserts it on typed access).
pub(crate) fn buffer_over_host(array: &HostArray) -> Buffer {
    let (start, len) = array.byte_span();
    let Some(ptr) = NonNull::new(start.cast_mut()).filter(|_| len > 0) else {
        return empty();
    };
    let owner = Arc::new(HeldByArrow(AssertUnwindSafe(array.keep_alive())));
    // SAFETY: `[start, start + len)` is the array's byte span, one readable allocation kept
    // alive by the array's owner, which `owner` holds until Arrow drops its last handle to the
    // buffer. Arrow only reads through a custom allocation (it never hands one out as
    // mutable). ferry does not write it either while `owner` lives: `keep_alive` makes the
    // array's owner shared, so `view_mut` refuses; other writers are those the array's own
    // `Access` already admits (the `tensor.numpy()` contract).
    unsafe { Buffer::from_custom_allocation(ptr, len, owner) }
}

/// An empty buffer aligned for every Arrow type (a `Vec<u8>`'s dangling pointer is not).
fn empty() -> Buffer {
    Buffer::from(MutableBuffer::new(0))
}

/// Arrow's bit-packed booleans unpacked to one byte each (one recorded copy, allocated
/// fallibly: `OutOfMemory`, never an abort).
pub(crate) fn unpack_bools(values: &BooleanArray) -> Result<(Vec<bool>, ferry_core::CopyRecord)> {
    let n = values.len();
    let mut bools = Vec::new();
    bools
        .try_reserve_exact(n)
        .map_err(|_| bools_out_of_memory(n, n))?;
    bools.extend(values.values().iter());
    let record = record_copy(bools.len() as u64, CopyReason::Repacked);
    Ok((bools, record))
}

/// `len` booleans, in order, bit-packed for Arrow (no validity bitmap) in a buffer allocated
/// fallibly: `OutOfMemory`, never an abort. One recorded copy.
pub(crate) fn pack_bits(
    len: usize,
    bits: impl Iterator<Item = bool>,
) -> Result<(BooleanArray, ferry_core::CopyRecord)> {
    let bytes = len.div_ceil(8);
    let mut buffer =
        MutableBuffer::try_from_len_zeroed(bytes).map_err(|_| bools_out_of_memory(bytes, len))?;
    let packed = buffer.as_slice_mut();
    for (i, bit) in bits.take(len).enumerate() {
        if bit {
            packed[i / 8] |= 1 << (i % 8);
        }
    }
    let record = record_copy(bytes as u64, CopyReason::Repacked);
    let values = BooleanBuffer::new(buffer.into(), 0, len);
    Ok((BooleanArray::new(values, None), record))
}

/// The error for `bytes` bytes of `len` booleans that cannot be allocated.
fn bools_out_of_memory(bytes: usize, len: usize) -> crate::Error {
    crate::Error::Core(ferry_core::Error::OutOfMemory {
        bytes,
        shape: vec![len],
        dtype: DType::Bool,
    })
}

/// A `bool` array's elements, in row-major (logical) order whatever its layout, bit-packed
/// for Arrow (one recorded copy).
pub(crate) fn pack_bools(array: &HostArray) -> Result<(BooleanArray, ferry_core::CopyRecord)> {
    debug_assert_eq!(array.dtype(), DType::Bool);
    // Each byte is checked in the load that packs it (memory exported writable may change
    // between a check and a read).
    let bytes = array.bool_bytes()?;
    let mut invalid = None;
    let bits = bytes.iter().enumerate().map(|(position, &byte)| {
        if byte > 1 && invalid.is_none() {
            invalid = Some((position, byte));
        }
        byte == 1
    });
    let packed = pack_bits(bytes.len(), bits)?;
    if let Some((position, value)) = invalid {
        return Err(ferry_core::Error::InvalidBool {
            shape: array.shape().to_vec(),
            position,
            value,
        }
        .into());
    }
    Ok(packed)
}
