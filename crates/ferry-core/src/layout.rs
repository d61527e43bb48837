//! Layout arithmetic on shapes and element strides: extents with overflow checks, contiguity,
//! and the axis simplification the copy kernels run on.

use crate::{DType, Error, Result};

/// Most dimensions ferry accepts (NumPy's limit).
pub const MAX_NDIM: usize = 64;

/// Row-major (C-order) strides, in elements, for `shape`.
///
/// Returns `None` when the element count overflows `isize`.
pub fn row_major_strides(shape: &[usize]) -> Option<Vec<isize>> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc: isize = 1;
    for (stride, &len) in strides.iter_mut().zip(shape).rev() {
        *stride = acc;
        acc = acc.checked_mul(isize::try_from(len.max(1)).ok()?)?;
    }
    element_count(shape)?;
    Some(strides)
}

/// Product of `shape`, or `None` if it, or the product of its non-zero lengths, overflows
/// `isize`.
#[inline]
pub fn element_count(shape: &[usize]) -> Option<usize> {
    // The product of the non-zero lengths must fit too (ndarray's rule for every array it
    // views, empty ones included): `[isize::MAX, 0]` holds no element but is refused.
    let mut nonzero: usize = 1;
    for &len in shape.iter().filter(|&&len| len != 0) {
        nonzero = nonzero.checked_mul(len)?;
    }
    if nonzero > isize::MAX as usize {
        return None;
    }
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// Whether `strides` are row-major for `shape` (axes of length 1 may have any stride; an empty
/// array is contiguous).
pub fn is_row_major(shape: &[usize], strides: &[isize]) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut expected: isize = 1;
    for (&len, &stride) in shape.iter().zip(strides).rev() {
        if len != 1 {
            if stride != expected {
                return false;
            }
            expected = expected.wrapping_mul(len as isize);
        }
    }
    true
}

/// Smallest and largest element offset reachable from the first element, or `None` for an empty
/// array. Both are in elements and relative to index `[0, 0, ...]`.
///
/// Errors when the extent overflows `isize`.
pub fn offset_range(shape: &[usize], strides: &[isize]) -> Result<Option<(isize, isize)>> {
    if shape.contains(&0) {
        return Ok(None);
    }
    nonempty_range(shape, strides)
        .map(Some)
        .ok_or_else(|| overflow(shape, strides, 8))
}

/// [`offset_range`] of a layout with no zero length: `None` when the extent overflows `isize`.
#[inline]
fn nonempty_range(shape: &[usize], strides: &[isize]) -> Option<(isize, isize)> {
    // Reaches of one sign only grow the partial sums toward the final `lo` or `hi`, so checked
    // `isize` steps fail exactly when the final extent does not fit.
    let (mut lo, mut hi) = (0isize, 0isize);
    for (&len, &stride) in shape.iter().zip(strides) {
        let reach = stride.checked_mul(isize::try_from(len - 1).ok()?)?;
        if reach < 0 {
            lo = lo.checked_add(reach)?;
        } else {
            hi = hi.checked_add(reach)?;
        }
    }
    hi.checked_sub(lo)?;
    Some((lo, hi))
}

#[cold]
#[inline(never)]
pub(crate) fn overflow(shape: &[usize], strides: &[isize], itemsize_bits: u32) -> Error {
    Error::LayoutOverflow {
        shape: shape.iter().map(|&d| d as i64).collect(),
        strides: strides.iter().map(|&s| s as i64).collect(),
        itemsize_bits,
    }
}

/// Bytes `n` elements of `dtype` take when packed (sub-byte dtypes share bytes), or `None` when
/// that does not fit `isize`.
#[inline]
pub fn packed_bytes(n: usize, dtype: DType) -> Option<usize> {
    let bits = (n as u128).checked_mul(u128::from(dtype.desc().total_bits()))?;
    let bytes = bits.div_ceil(8);
    (bytes <= isize::MAX as u128).then_some(bytes as usize)
}

/// Checks that a layout can describe a [`HostArray`](crate::HostArray) of `dtype`: shape and
/// strides of one length (at most [`MAX_NDIM`]), elements of at least one bit, an element
/// count and packed byte size that fit `isize` (NumPy's rule, so every size ferry derives from
/// a shape fits), an extent (lowest to highest reachable byte) that fits `isize`, and packed
/// sub-byte dtypes in row-major order. Returns the layout's [`offset_range`].
#[inline]
pub fn check_layout(
    dtype: DType,
    shape: &[usize],
    strides: &[isize],
) -> Result<Option<(isize, isize)>> {
    let bits = dtype.desc().total_bits();
    let unsupported = |reason| unsupported_layout(dtype, shape, strides, reason);
    if shape.len() != strides.len() || shape.len() > MAX_NDIM {
        return Err(unsupported(
            "shape and strides must have the same length, at most 64",
        ));
    }
    if bits == 0 {
        return Err(unsupported("elements of zero bits"));
    }
    let too_big = || overflow(shape, strides, bits);
    let n = element_count(shape).ok_or_else(too_big)?;
    packed_bytes(n, dtype).ok_or_else(too_big)?;
    let range = if n == 0 {
        None
    } else {
        Some(nonempty_range(shape, strides).ok_or_else(too_big)?)
    };
    if dtype.size_in_bytes().is_none() && !is_row_major(shape, strides) {
        return Err(unsupported(
            "packed sub-byte elements must be row-major; unpack them in their framework first",
        ));
    }
    let size = dtype.size_in_bytes().unwrap_or(1) as i128;
    if let Some((lo, hi)) = range
        && (hi as i128 - lo as i128 + 1) * size > isize::MAX as i128
    {
        return Err(overflow(shape, strides, bits));
    }
    Ok(range)
}

/// [`Error::UnsupportedLayout`], out of [`check_layout`]'s hot path.
#[cold]
#[inline(never)]
fn unsupported_layout(
    dtype: DType,
    shape: &[usize],
    strides: &[isize],
    reason: &'static str,
) -> Error {
    Error::UnsupportedLayout {
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        dtype,
        reason,
    }
}

/// The bytes a layout of `dtype` reaches, after [`check_layout`]: the offset of its lowest
/// byte from element `[0, .., 0]` (zero or negative) and the span's length; `None` when the
/// layout is empty. Packed sub-byte layouts (row-major) span their packed bytes.
pub fn byte_span(
    dtype: DType,
    shape: &[usize],
    strides: &[isize],
) -> Result<Option<(isize, usize)>> {
    let Some((lo, hi)) = check_layout(dtype, shape, strides)? else {
        return Ok(None);
    };
    // No overflow: check_layout bounded the extent in bytes by isize::MAX.
    Ok(Some(match dtype.size_in_bytes() {
        Some(size) => (lo * size as isize, (hi - lo + 1) as usize * size),
        None => (0, packed_bytes(hi as usize + 1, dtype).unwrap_or(0)),
    }))
}

/// Checks that a layout whose element `[0, .., 0]` is element `offset` of a storage of
/// `storage_bytes` bytes reaches only that storage (in bits, so packed sub-byte dtypes are
/// checked exactly). [`StorageLayout::locate`](crate::StorageLayout::locate) runs it for every
/// array built over someone else's storage, so a layout a framework got wrong is an error, not
/// a stray read; [`check_layout`] (which `HostArray::from_raw_parts` runs) checks the rest.
pub fn check_in_storage(
    dtype: DType,
    shape: &[usize],
    strides: &[isize],
    offset: usize,
    storage_bytes: usize,
) -> Result<()> {
    if shape.len() != strides.len() {
        return check_layout(dtype, shape, strides).map(|_| ());
    }
    let range = offset_range(shape, strides)?;
    check_range_in_storage(dtype, shape, strides, range, offset, storage_bytes)
}

/// [`check_in_storage`] for a layout whose [`offset_range`] (or [`check_layout`]'s answer) is
/// already known to be `range`.
pub(crate) fn check_range_in_storage(
    dtype: DType,
    shape: &[usize],
    strides: &[isize],
    range: Option<(isize, isize)>,
    offset: usize,
    storage_bytes: usize,
) -> Result<()> {
    let Some((lo, hi)) = range else {
        return Ok(());
    };
    let bits = i128::from(dtype.desc().total_bits());
    let first = offset as i128 + lo as i128;
    // One past the last bit reached.
    let end_bits = (offset as i128 + hi as i128 + 1) * bits;
    if first < 0 || end_bits > storage_bytes as i128 * 8 {
        return Err(Error::OutsideStorage {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
            dtype,
            storage_bytes,
        });
    }
    Ok(())
}

/// Whether two different indices can reach the same element (sufficient test: sorted by
/// absolute stride, each stride must exceed the extent of all smaller ones).
pub fn may_overlap(shape: &[usize], strides: &[isize]) -> bool {
    if shape.contains(&0) {
        return false;
    }
    let mut axes: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(len, _)| **len > 1)
        .map(|(&len, &s)| (s.unsigned_abs(), len))
        .collect();
    axes.sort_unstable();
    let mut extent: usize = 0; // largest offset reachable with the smaller axes
    for (stride, len) in axes {
        if stride <= extent {
            return true;
        }
        extent = match stride
            .checked_mul(len - 1)
            .and_then(|e| e.checked_add(extent))
        {
            Some(e) => e,
            None => return true,
        };
    }
    false
}

/// A layout reduced for copying into row-major order: axes of length 1 dropped and axes that
/// are contiguous with their successor merged. The destination is row-major for `shape`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Simplified {
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

pub(crate) fn simplify(shape: &[usize], strides: &[isize]) -> Simplified {
    let mut out = Simplified {
        shape: Vec::with_capacity(shape.len()),
        strides: Vec::with_capacity(shape.len()),
    };
    for (&len, &stride) in shape.iter().zip(strides) {
        if len == 1 {
            continue;
        }
        if let (Some(last_len), Some(last_stride)) = (out.shape.last_mut(), out.strides.last_mut())
            && *last_stride == stride.wrapping_mul(len as isize)
        {
            *last_len *= len;
            *last_stride = stride;
            continue;
        }
        out.shape.push(len);
        out.strides.push(stride);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_contiguity() {
        assert_eq!(row_major_strides(&[2, 3, 4]).unwrap(), vec![12, 4, 1]);
        assert_eq!(row_major_strides(&[]).unwrap(), Vec::<isize>::new());
        assert!(row_major_strides(&[usize::MAX, 2]).is_none());
        assert!(is_row_major(&[2, 3], &[3, 1]));
        assert!(is_row_major(&[2, 1], &[1, 77]));
        assert!(!is_row_major(&[2, 3], &[1, 2]));
        assert!(is_row_major(&[0, 3], &[1, 2]));
    }

    #[test]
    fn offset_ranges() {
        assert_eq!(offset_range(&[2, 3], &[3, 1]).unwrap(), Some((0, 5)));
        assert_eq!(offset_range(&[2, 3], &[-3, 1]).unwrap(), Some((-3, 2)));
        assert_eq!(offset_range(&[0, 3], &[-3, 1]).unwrap(), None);
        assert!(offset_range(&[3, 3], &[isize::MAX, isize::MAX]).is_err());
    }

    #[test]
    fn storage_spans_are_checked_in_bits() {
        let f4 = DType::Raw(crate::raw_dtypes::FLOAT4_E2M1FN);
        assert!(check_in_storage(f4, &[2], &[1], 0, 1).is_ok());
        assert!(check_in_storage(f4, &[3], &[1], 0, 1).is_err());
        assert!(check_in_storage(f4, &[1 << 24], &[1], 0, 1).is_err());
        assert!(check_in_storage(DType::F32, &[2, 2], &[2, 1], 0, 16).is_ok());
        assert!(check_in_storage(DType::F32, &[2, 2], &[2, 1], 1, 16).is_err());
        assert!(check_in_storage(DType::F32, &[2], &[-1], 0, 16).is_err());
        assert!(check_in_storage(DType::F32, &[2], &[-1], 1, 16).is_ok());
        assert!(check_in_storage(DType::F32, &[0], &[1], 99, 0).is_ok());
    }

    #[test]
    fn packed_sizes_that_overflow_are_refused() {
        let c32 = DType::from_desc(crate::DTypeDesc {
            code: crate::DTypeDesc::COMPLEX,
            bits: 32,
            lanes: 1,
        });
        assert!(check_layout(c32, &[(1 << 62) + 1], &[0]).is_err());
        assert!(check_layout(DType::U8, &[1 << 62], &[0]).is_ok());
        assert_eq!(
            packed_bytes(3, DType::Raw(crate::raw_dtypes::FLOAT4_E2M1FN)),
            Some(2)
        );
    }

    #[test]
    fn overlap_detection() {
        assert!(!may_overlap(&[2, 3], &[3, 1]));
        assert!(may_overlap(&[2, 3], &[0, 1]));
        assert!(!may_overlap(&[1, 3], &[0, 1]));
        assert!(may_overlap(&[2, 3], &[2, 1]));
        assert!(!may_overlap(&[2, 3], &[-3, -1]));
    }

    #[test]
    fn simplify_merges_contiguous_axes() {
        let s = simplify(&[2, 1, 3, 4], &[12, 99, 4, 1]);
        assert_eq!(
            s,
            Simplified {
                shape: vec![24],
                strides: vec![1]
            }
        );
        let t = simplify(&[4, 3], &[1, 4]);
        assert_eq!(
            t,
            Simplified {
                shape: vec![4, 3],
                strides: vec![1, 4]
            }
        );
    }
}
