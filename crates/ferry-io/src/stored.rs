//! What the file formats share: arrays over a freshly read, aligned buffer or over a private
//! memory map of the file.

use std::path::Path;
use std::sync::Arc;

use ferry_core::layout::{element_count, packed_bytes, row_major_strides};
use ferry_core::{
    Access, CopyReason, DType, Error, HostArray, MemoryKind, Owner, RawParts, Result,
    StorageLayout, record_copy,
};

/// A dense `shape` of `dtype` whose element count or byte size does not fit `isize`.
fn overflow(dtype: DType, shape: &[usize]) -> Error {
    Error::LayoutOverflow {
        shape: shape.iter().map(|&len| len as i64).collect(),
        strides: Vec::new(),
        itemsize_bits: dtype.desc().total_bits(),
    }
}

/// In which order a stored array's elements follow each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// C order: the last axis varies fastest.
    RowMajor,
    /// Fortran order: the first axis varies fastest.
    #[cfg_attr(
        not(feature = "npy"),
        expect(dead_code, reason = "only .npy files store Fortran order")
    )]
    ColumnMajor,
}

/// Element strides of a dense array of `shape` stored in `order`.
pub(crate) fn dense_strides(dtype: DType, shape: &[usize], order: Order) -> Result<Vec<isize>> {
    let too_big = || overflow(dtype, shape);
    match order {
        Order::RowMajor => row_major_strides(shape).ok_or_else(too_big),
        Order::ColumnMajor => {
            let reversed: Vec<usize> = shape.iter().rev().copied().collect();
            let mut strides = row_major_strides(&reversed).ok_or_else(too_big)?;
            strides.reverse();
            Ok(strides)
        }
    }
}

/// Bytes a dense array of `shape` and `dtype` takes, or a layout overflow error.
pub(crate) fn dense_nbytes(dtype: DType, shape: &[usize]) -> Result<usize> {
    element_count(shape)
        .and_then(|n| packed_bytes(n, dtype))
        .ok_or_else(|| overflow(dtype, shape))
}

/// `n` zeroed words from the allocator (zeroed pages are only mapped when written, so a buffer
/// a stream then fills only partly costs what was read), or `None` where they cannot be had.
fn zeroed_words(n: usize) -> Option<Vec<u64>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u64>(n).ok()?;
    // SAFETY: `layout` has a non-zero size.
    let words = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<u64>();
    if words.is_null() {
        return None;
    }
    // SAFETY: the global allocator gave `n` u64s with the Vec's layout (`Layout::array`), all
    // zeroed, which is a valid u64; the Vec takes the allocation over with length and
    // capacity `n`.
    Some(unsafe { Vec::from_raw_parts(words, n, n) })
}

/// An array over a fresh buffer (aligned to 8 bytes, enough for every typed dtype) that `fill`
/// writes the stored bytes into.
pub(crate) fn read_dense(
    dtype: DType,
    shape: Vec<usize>,
    order: Order,
    fill: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<HostArray> {
    let strides = dense_strides(dtype, &shape, order)?;
    let nbytes = dense_nbytes(dtype, &shape)?;
    // The size comes from the file's own header: allocated fallibly, so a header that asks for
    // more than exists is `OutOfMemory`, never an abort.
    let mut words = zeroed_words(nbytes.div_ceil(8)).ok_or_else(|| Error::OutOfMemory {
        bytes: nbytes,
        shape: shape.clone(),
        dtype,
    })?;
    // SAFETY: `words` owns at least `nbytes` initialised bytes; u8 has no alignment needs.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), nbytes) };
    fill(bytes)?;
    let layout = StorageLayout {
        dtype,
        shape,
        strides,
        offset: 0,
    };
    // `words` holds the dense elements (row- or column-major over `nbytes`), owned by the array
    // alone; from_storage_mut checks the layout against its bytes.
    HostArray::from_storage_mut(words, layout)
}

/// An array over `bytes`, stored densely in `order`, which `owner` keeps alive: zero-copy when
/// `bytes` is aligned for the dtype, else one aligned (writable) copy, recorded.
///
/// # Safety
///
/// - `bytes` is readable memory that stays valid while `owner` is alive and that nobody else
///   changes.
/// - For [`Access::Exclusive`], nobody but `owner` reaches it either, and `bytes` carries write
///   permission (derived from `as_mut_ptr`, not from a shared reference).
pub(crate) unsafe fn view_dense(
    owner: Owner,
    bytes: *const [u8],
    dtype: DType,
    shape: Vec<usize>,
    order: Order,
    access: Access,
) -> Result<HostArray> {
    let nbytes = dense_nbytes(dtype, &shape)?;
    if bytes.len() != nbytes {
        return Err(Error::ShapeMismatch {
            expected: nbytes,
            found: bytes.len(),
            shape,
        });
    }
    // Complex numbers align like their parts; everything else like its size (at most 8).
    let align = dtype.size_in_bytes().map_or(1, |size| {
        let part = if dtype.is_complex() { size / 2 } else { size };
        part.clamp(1, 8)
    });
    if !(bytes.cast::<u8>() as usize).is_multiple_of(align) {
        let record = record_copy(nbytes as u64, CopyReason::Misaligned);
        return Ok(read_dense(dtype, shape, order, |dst| {
            // SAFETY: `bytes` is readable and unchanged while `owner` lives (contract).
            dst.copy_from_slice(unsafe { &*bytes });
            Ok(())
        })?
        .with_copy(record));
    }
    let strides = dense_strides(dtype, &shape, order)?;
    let parts = RawParts {
        data: bytes.cast::<u8>(),
        dtype,
        shape,
        strides,
        memory: MemoryKind::Cpu,
        access,
    };
    // SAFETY: the dense layout reaches exactly `bytes` (length checked above), which the caller
    // keeps valid while `owner` lives and unchanged by others; for Exclusive access it is
    // unshared and carries write permission (contract).
    unsafe { HostArray::from_raw_parts(parts, owner) }
}

/// The file at `path`, opened for reading, and its size in bytes.
pub(crate) fn open_sized(path: &Path) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    Ok((file, size))
}

/// A private (copy-on-write) memory map of the file at `path`. ferry marks arrays over it
/// read-only; a consumer that ignores DLPack's READ_ONLY flag (PyTorch does) and writes anyway
/// changes only its own copy of a page, never the file, and does not fault.
///
/// # Safety
///
/// Nobody may modify or truncate the file while the map (or an array made from it) is alive.
pub(crate) unsafe fn map_file(path: &Path) -> Result<Arc<memmap2::MmapMut>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    // SAFETY: forwarded contract: the file stays unchanged while the map lives.
    let map = unsafe { memmap2::MmapOptions::new().map_copy(&file) }
        .map_err(|e| Error::io("mapping", path, e))?;
    Ok(Arc::new(map))
}
