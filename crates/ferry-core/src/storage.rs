//! The one checked way to describe memory that someone else allocated — a framework tensor's
//! storage, a memory-mapped file, a buffer a framework handed over — as a [`HostArray`]:
//! implement [`Storage`] (or [`StorageMut`]) once, then [`HostArray::from_storage`] (or
//! [`HostArray::from_storage_mut`]) refuses every layout that reaches outside the storage.

use std::ops::Range;
use std::sync::Arc;

use crate::array::{Access, Dims};
use crate::layout::{byte_span, check_in_storage, check_layout, check_range_in_storage};
use crate::{DType, Element, Error, HostArray, MemoryKind, Owner, Result};

/// Host memory ferry may read for as long as a value of this type lives.
///
/// # Safety
///
/// Implementors promise that for every value `s`:
/// - `s.bytes()` returns the same `(ptr, len)` on every call, and `[ptr, ptr + len)` is one
///   allocation (or `len == 0`) that the CPU can read;
/// - those bytes are not inside `s` itself, and they stay allocated and at that address while
///   `s` lives, wherever `s` is moved (they are on the heap, or someone else's);
/// - nothing writes them while `s` lives: `s` is a snapshot (a copy-on-write clone of the
///   framework's storage, an immutable buffer, a copy) or writers are locked out until `s`
///   drops — a view of memory someone else can write is a snapshot (ARCHITECTURE.md's safety
///   model);
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

// SAFETY: a Vec's buffer is one heap allocation of `len` initialised elements that stays in
// place while the Vec lives, wherever the Vec moves, and is not resized (nothing can: the Vec
// is moved into the array's owner and never handed out again); `as_ptr` is non-null (dangling
// for capacity 0, with len 0). `Element` types have no padding and no uninitialised bytes.
unsafe impl<T: Element> Storage for Vec<T> {
    fn bytes(&self) -> (*const u8, usize) {
        (self.as_ptr().cast(), std::mem::size_of_val(self.as_slice()))
    }
}

// SAFETY: as for `Storage`; the Vec owns its buffer alone and `as_mut_ptr` (same address as
// `as_ptr`) carries write permission.
unsafe impl<T: Element> StorageMut for Vec<T> {
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
        self.first_byte()
    }

    /// The byte element `[0, .., 0]` starts at, refused for a packed sub-byte element that
    /// starts inside a byte.
    fn first_byte(&self) -> Result<usize> {
        StorageLayoutRef::from(self).first_byte()
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
            .filter(|_| bits > 0)
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
        StorageLayoutRef::from(self).unsupported(reason)
    }
}

/// A [`StorageLayout`] over borrowed shape and stride slices, for adapters that read a tensor's
/// layout from the framework on every view: [`HostArray::from_storage_ref`] builds the array from
/// it without allocating for up to four axes, where a `StorageLayout`'s two `Vec`s would be
/// allocated and freed again on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLayoutRef<'a> {
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: &'a [usize],
    /// Step of each axis in elements; negative and zero allowed.
    pub strides: &'a [isize],
    /// Index of element `[0, .., 0]` in the storage, in elements of `dtype` (for packed
    /// sub-byte dtypes it must fall on a byte boundary).
    pub offset: usize,
}

impl<'a> From<&'a StorageLayout> for StorageLayoutRef<'a> {
    fn from(layout: &'a StorageLayout) -> StorageLayoutRef<'a> {
        StorageLayoutRef {
            dtype: layout.dtype,
            shape: &layout.shape,
            strides: &layout.strides,
            offset: layout.offset,
        }
    }
}

impl StorageLayoutRef<'_> {
    /// The byte element `[0, .., 0]` starts at, refused for a packed sub-byte element that
    /// starts inside a byte.
    fn first_byte(&self) -> Result<usize> {
        let bits = self.dtype.desc().total_bits() as usize;
        let Some(start_bits) = self.offset.checked_mul(bits) else {
            return Err(self.unsupported(
                "the offset of element [0, .., 0] in the storage, in bits, does not fit the address space",
            ));
        };
        if !start_bits.is_multiple_of(8) {
            return Err(self
                .unsupported("a view of packed sub-byte elements must start on a byte boundary"));
        }
        Ok(start_bits / 8)
    }

    fn unsupported(&self, reason: &'static str) -> Error {
        Error::UnsupportedLayout {
            shape: self.shape.to_vec(),
            strides: self.strides.to_vec(),
            dtype: self.dtype,
            reason,
        }
    }

    /// The array over this layout in the storage whose bytes are `[base, base + len)`, after
    /// every check [`StorageLayout::locate`] and [`check_layout`] make, each made once (a view
    /// of a framework tensor runs this on every call).
    ///
    /// # Safety
    ///
    /// `base` and `len` are what `owner`'s [`Storage::bytes`] returns (for `Access::Exclusive`,
    /// what its [`StorageMut::bytes_mut`] returns), so the [`Storage`] promises hold for them
    /// while `owner` lives.
    unsafe fn into_array(
        self,
        (base, len): (*const u8, usize),
        memory: MemoryKind,
        access: Access,
        owner: Owner,
    ) -> Result<HostArray> {
        let range = check_layout(self.dtype, self.shape, self.strides)?;
        check_range_in_storage(
            self.dtype,
            self.shape,
            self.strides,
            range,
            self.offset,
            len,
        )?;
        // In bounds: element [0, .., 0] is inside the storage (checked above) unless the layout
        // is empty, where nothing is read and the offset does not matter.
        let data = match range {
            Some(_) => base.wrapping_add(self.first_byte()?),
            None => std::ptr::null(),
        };
        let dims = (Dims::from_slice(self.shape), Dims::from_slice(self.strides));
        // SAFETY: the layout passed `check_layout`; every byte it reaches lies inside the
        // storage (checked above), one allocation that the caller's contract keeps allocated, in
        // place, and written only as `Storage` allows while `owner` lives, so those bytes are in
        // the address space and `data` is non-null for a non-empty layout (`Storage` promises a
        // non-null pointer when `len > 0`, and a non-empty layout inside the storage needs
        // `len > 0`); write permission for `Exclusive` comes from the caller's `bytes_mut`.
        Ok(unsafe { HostArray::from_checked_parts(data, self.dtype, dims, memory, access, owner) })
    }
}

impl HostArray {
    /// A read-only array over `layout` in `storage`, which the array keeps alive (no copy).
    /// Refuses, with [`Error::OutsideStorage`], a layout that reaches a byte outside the
    /// storage — sub-byte dtypes are checked in bits — and every layout
    /// [`from_raw_parts`](HostArray::from_raw_parts) refuses.
    pub fn from_storage<S: Storage>(storage: S, layout: StorageLayout) -> Result<HostArray> {
        HostArray::from_storage_ref(storage, StorageLayoutRef::from(&layout))
    }

    /// [`from_storage`](HostArray::from_storage) with the layout borrowed: what adapters call on
    /// every view, since it allocates nothing for the shape and strides of up to four axes.
    pub fn from_storage_ref<S: Storage>(
        storage: S,
        layout: StorageLayoutRef<'_>,
    ) -> Result<HostArray> {
        let storage = Arc::new(storage);
        let bytes = storage.bytes();
        let memory = storage.memory();
        // SAFETY: `bytes` is what the owner, `storage`, returns from `Storage::bytes`; ReadOnly:
        // ferry never writes.
        unsafe { layout.into_array(bytes, memory, Access::ReadOnly, storage) }
    }

    /// Like [`from_storage`](HostArray::from_storage), for a storage the array then owns
    /// alone: the array is [`Access::Exclusive`], so [`view_mut`](HostArray::view_mut) may
    /// write it.
    pub fn from_storage_mut<S: StorageMut>(storage: S, layout: StorageLayout) -> Result<HostArray> {
        let mut storage = Arc::new(storage);
        let unique = Arc::get_mut(&mut storage).expect("a new Arc is unique");
        let (base, len) = unique.bytes_mut();
        let memory = unique.memory();
        // SAFETY: `(base, len)` is what the owner, `storage`, returns from
        // `StorageMut::bytes_mut`, which also promises that only the storage (now held by this
        // array alone) reaches the memory and that `base` carries write permission.
        unsafe {
            StorageLayoutRef::from(&layout).into_array(
                (base.cast_const(), len),
                memory,
                Access::Exclusive,
                storage,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Dimension;

    use super::*;
    use crate::raw_dtypes;

    fn layout(dtype: DType, shape: &[usize], strides: &[isize], offset: usize) -> StorageLayout {
        StorageLayout {
            dtype,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
        }
    }

    #[test]
    fn views_inside_the_storage_read_what_plain_indexing_reads() {
        let values: Vec<i32> = (0..12).collect();
        // A transposed 3x2 window starting at element 1, and a flipped row.
        for (shape, strides, offset) in [
            (vec![3, 2], vec![1, 4], 1),
            (vec![4], vec![-1], 3),
            (vec![2, 0], vec![1, 1], 12),
        ] {
            let l = layout(DType::I32, &shape, &strides, offset);
            let a = HostArray::from_storage(values.clone(), l).unwrap();
            assert!(a.is_read_only());
            let v = a.view::<i32>().unwrap();
            for (index, &got) in v.indexed_iter() {
                let flat = offset as isize
                    + index
                        .slice()
                        .iter()
                        .zip(&strides)
                        .map(|(&i, &s)| i as isize * s)
                        .sum::<isize>();
                assert_eq!(
                    got, values[flat as usize],
                    "{shape:?} {strides:?} at {index:?}"
                );
            }
        }
    }

    #[test]
    fn borrowed_layouts_of_many_axes_view_and_refuse_like_owned_ones() {
        // Six axes: more than a host array keeps inline.
        let values: Vec<u16> = (0..64).collect();
        let shape = [2, 1, 2, 2, 2, 2];
        let strides = [32, 0, 1, 16, 4, 2];
        let borrowed = StorageLayoutRef {
            dtype: DType::U16,
            shape: &shape,
            strides: &strides,
            offset: 0,
        };
        let owned = layout(DType::U16, &shape, &strides, 0);
        assert_eq!(StorageLayoutRef::from(&owned), borrowed);
        let a = HostArray::from_storage_ref(values.clone(), borrowed).unwrap();
        let b = HostArray::from_storage(values.clone(), owned).unwrap();
        assert_eq!((a.shape(), a.strides()), (&shape[..], &strides[..]));
        assert_eq!(a.view::<u16>().unwrap(), b.view::<u16>().unwrap());
        // The last element reached is 55 + offset, so offset 9 reaches one past the storage.
        let past_the_end = StorageLayoutRef {
            offset: 9,
            ..borrowed
        };
        assert!(matches!(
            HostArray::from_storage_ref(values, past_the_end),
            Err(Error::OutsideStorage { .. })
        ));
    }

    #[test]
    fn layouts_reaching_outside_the_storage_are_refused() {
        let values = vec![0f32; 6];
        for (shape, strides, offset) in [
            (vec![7], vec![1], 0),
            (vec![2, 3], vec![3, 1], 1),
            (vec![2], vec![-1], 0),
            (vec![1], vec![1], 6),
            (vec![3], vec![isize::MAX], 0),
        ] {
            let err = HostArray::from_storage(
                values.clone(),
                layout(DType::F32, &shape, &strides, offset),
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::OutsideStorage { .. } | Error::LayoutOverflow { .. }
                ),
                "{shape:?} {strides:?} +{offset}: {err}"
            );
        }
    }

    #[test]
    fn sub_byte_views_are_checked_in_bits_and_start_on_a_byte() {
        let fp4 = DType::Raw(raw_dtypes::FLOAT4_E2M1FN);
        let packed = vec![0u8; 2]; // four fp4 elements
        let fits = layout(fp4, &[2], &[1], 2);
        assert_eq!(fits.byte_range(2).unwrap(), 1..2);
        assert!(HostArray::from_storage(packed.clone(), fits).is_ok());
        let too_long = layout(fp4, &[3], &[1], 2);
        assert!(matches!(
            too_long.locate(2),
            Err(Error::OutsideStorage { .. })
        ));
        let odd_start = layout(fp4, &[1], &[1], 1);
        assert!(matches!(
            odd_start.locate(2),
            Err(Error::UnsupportedLayout { .. })
        ));
    }

    #[test]
    fn byte_ranges_and_rebasing_follow_the_lowest_element() {
        // Element [0, 0] is element 5; a negative stride reaches back to element 1.
        let l = layout(DType::U16, &[2, 3], &[-4, 1], 5);
        assert_eq!(l.locate(20).unwrap(), 10);
        assert_eq!(l.byte_range(20).unwrap(), 2..16);
        // A copy of bytes 2..16 holds the same view with element [0, 0] at index 4.
        assert_eq!(l.clone().rebase(2).unwrap().offset, 4);
        // Inside an element, or after the view's first element: refused.
        assert!(l.clone().rebase(3).is_err());
        assert!(l.rebase(12).is_err());
        // A zero-bit dtype cannot be rebased (and no constructor accepts it).
        let zero_bits = DType::from_desc(crate::DTypeDesc {
            code: 2,
            bits: 0,
            lanes: 1,
        });
        assert!(layout(zero_bits, &[1], &[1], 0).rebase(0).is_err());
    }

    #[test]
    fn owned_storage_is_writable_and_shared_storage_is_not() {
        let mut a = HostArray::from_storage_mut(
            vec![1u8, 2, 3],
            StorageLayout::row_major(DType::U8, vec![3]).unwrap(),
        )
        .unwrap();
        a.view_mut::<u8>().unwrap()[0] = 9;
        assert_eq!(a.view::<u8>().unwrap()[0], 9);
        let clone = a.clone();
        assert!(a.view_mut::<u8>().is_err(), "a clone shares it");
        drop(clone);
        let b = HostArray::from_storage(
            vec![1u8],
            StorageLayout::row_major(DType::U8, vec![1]).unwrap(),
        )
        .unwrap();
        assert!(!b.is_writable());
    }
}
