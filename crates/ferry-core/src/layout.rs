//! Layout arithmetic on shapes and element strides: extents with overflow checks, contiguity,
//! and the axis simplification the copy kernels run on.

use crate::{Error, Result};

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

/// Product of `shape`, or `None` if it overflows `isize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &len in shape {
        n = n.checked_mul(len)?;
    }
    (n <= isize::MAX as usize).then_some(n)
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
pub(crate) fn offset_range(shape: &[usize], strides: &[isize]) -> Result<Option<(isize, isize)>> {
    if shape.contains(&0) {
        return Ok(None);
    }
    let too_big = || overflow(shape, strides, 8);
    let (mut lo, mut hi) = (0i128, 0i128);
    for (&len, &stride) in shape.iter().zip(strides) {
        let reach = (stride as i128)
            .checked_mul(len as i128 - 1)
            .ok_or_else(too_big)?;
        if reach < 0 {
            lo = lo.checked_add(reach).ok_or_else(too_big)?;
        } else {
            hi = hi.checked_add(reach).ok_or_else(too_big)?;
        }
    }
    let fits = |v: i128| v >= isize::MIN as i128 && v <= isize::MAX as i128;
    if !fits(lo) || !fits(hi) || !fits(hi - lo) {
        return Err(too_big());
    }
    Ok(Some((lo as isize, hi as isize)))
}

pub(crate) fn overflow(shape: &[usize], strides: &[isize], itemsize_bits: u32) -> Error {
    Error::LayoutOverflow {
        shape: shape.iter().map(|&d| d as i64).collect(),
        strides: strides.iter().map(|&s| s as i64).collect(),
        itemsize_bits,
    }
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
