//! [`HostArray`]: a strided, dtype-tagged array in host-readable memory that owns, borrows or
//! keeps alive foreign memory, with typed ndarray views and copy-on-demand conversions.

use std::any::Any;
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use smallvec::SmallVec;

use ndarray::{
    ArcArray, ArrayD, ArrayView, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMutD, Axis, CowArray,
    Dimension, Ix1, Ix2, IxDyn, ShapeBuilder,
};

use crate::copy::{CopyPolicy, CopyReason, CopyRecord, gather, record_copy, try_alloc_uninit};
use crate::layout::{self, element_count, is_row_major, may_overlap};
use crate::{DType, Device, Element, Error, MemoryKind, Result, dispatch_dtype};

/// Axis lengths or strides: inline up to four axes (no allocation to make, clone or drop an
/// array of the usual ranks), on the heap beyond.
pub(crate) type Dims<T> = SmallVec<[T; 4]>;

/// Anything that keeps an array's memory alive. Dropped when the last [`HostArray`] sharing it
/// is dropped.
pub type Owner = Arc<dyn Any + Send + Sync>;

/// A strided array in host-readable memory with a runtime dtype.
///
/// - Data pointer (the element at index `[0, .., 0]`), [`DType`], shape, and strides in
///   elements that may be negative (flipped axes) or zero (broadcast).
/// - An [`Owner`] keep-alive: a `Vec`/`ndarray` the array owns, a framework tensor it borrows, or
///   a DLPack producer whose deleter runs when the last clone drops.
/// - The [`MemoryKind`] (CPU, CUDA-pinned, CUDA-managed, ROCm-pinned: all host-readable).
/// - Copy accounting: [`HostArray::copy_log`] lists every copy ferry made to produce it.
///
/// Cloning shares memory. `HostArray` is `Send + Sync` because its owner must be.
///
/// # Aliasing
///
/// Like `tensor.numpy()` in PyTorch, an array made from a framework tensor shares that tensor's
/// memory. Such arrays are [`Access::ReadOnly`], so ferry never writes into memory it does not
/// own alone; ARCHITECTURE.md's safety model says which framework operations may run on the
/// source tensor while the array lives.
pub struct HostArray {
    data: NonNull<u8>,
    dtype: DType,
    shape: Dims<usize>,
    strides: Dims<isize>,
    memory: MemoryKind,
    access: Access,
    owner: Owner,
    copies: Vec<CopyRecord>,
}

impl Clone for HostArray {
    /// Shares the memory (the owner is reference-counted); shape and strides are copied as
    /// slices (smallvec's derived `clone` goes element by element).
    fn clone(&self) -> HostArray {
        HostArray {
            data: self.data,
            dtype: self.dtype,
            shape: Dims::from_slice(&self.shape),
            strides: Dims::from_slice(&self.strides),
            memory: self.memory,
            access: self.access,
            owner: self.owner.clone(),
            copies: self.copies.clone(),
        }
    }
}

// SAFETY: the pointed-to memory is kept alive by `owner`, which is `Send + Sync`; ferry only
// writes through it from `view_mut`, which needs `&mut self`, `Access::Exclusive` and a uniquely
// held owner, so no other thread can reach the memory during the write.
unsafe impl Send for HostArray {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for HostArray {}

impl fmt::Debug for HostArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostArray")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("strides", &self.strides)
            .field("memory", &self.memory)
            .field("access", &self.access)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}

/// Who may write the memory of a [`HostArray`], and so whether ferry hands out mutable views.
///
/// ferry writes only through [`HostArray::view_mut`], and only into [`Access::Exclusive`]
/// memory whose [`Owner`] no other clone holds. Memory ferry did not allocate (framework
/// storage, a DLPack producer's buffer, a file map) is never `Exclusive` unless its producer
/// handed it over (DLPack's IS_COPIED) or the caller promised it with the `unsafe`
/// [`HostArray::assume_exclusive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only this array's owner reaches the memory (a buffer ferry allocated, or one a producer
    /// handed over): writable through `view_mut` while no other clone holds the owner.
    Exclusive,
    /// Someone else may read or write the memory too (a DLPack producer that did not forbid
    /// writes, a framework tensor made from this array): exported without DLPack's READ_ONLY
    /// flag, but ferry hands out no mutable view.
    Shared,
    /// Nobody may write the memory (framework storage, read-only producers, file maps):
    /// exported with READ_ONLY.
    ReadOnly,
}

impl Access {
    /// The access two parties have when one of them hands this memory to the other without
    /// giving up its own handle: `Exclusive` becomes `Shared`, the rest stay.
    pub fn shared(self) -> Access {
        match self {
            Access::Exclusive => Access::Shared,
            other => other,
        }
    }
}

/// The parts of a [`HostArray`] described by a caller of [`HostArray::from_raw_parts`].
#[derive(Debug, Clone)]
pub struct RawParts {
    /// Address of the element at index `[0, .., 0]`; may be null or dangling for empty arrays.
    /// For [`Access::Exclusive`] it must carry write permission (come from `as_mut_ptr`, not
    /// from a shared reference).
    pub data: *const u8,
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Step of each axis in elements; negative and zero allowed.
    pub strides: Vec<isize>,
    /// What kind of host memory `data` is in.
    pub memory: MemoryKind,
    /// Who may write the memory.
    pub access: Access,
}

/// [`RawParts`] with the shape and strides borrowed, for [`HostArray::from_raw_layout`]: no heap
/// allocation for arrays of up to four axes.
#[derive(Debug, Clone, Copy)]
pub struct RawLayout<'a> {
    /// As [`RawParts::data`].
    pub data: *const u8,
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: &'a [usize],
    /// Step of each axis in elements; negative and zero allowed.
    pub strides: &'a [isize],
    /// What kind of host memory `data` is in.
    pub memory: MemoryKind,
    /// Who may write the memory.
    pub access: Access,
}

impl HostArray {
    /// [`from_raw_parts`](Self::from_raw_parts) from a borrowed shape and strides (copied into
    /// the array), for importers on a hot path (ferry-python's NumPy arguments).
    ///
    /// # Safety
    ///
    /// As for [`from_raw_parts`](Self::from_raw_parts).
    #[inline]
    pub unsafe fn from_raw_layout(layout: RawLayout<'_>, owner: Owner) -> Result<HostArray> {
        // SAFETY: the caller's promise, passed on.
        unsafe {
            HostArray::from_raw_dims(
                layout.data,
                layout.dtype,
                Dims::from_slice(layout.shape),
                Dims::from_slice(layout.strides),
                layout.memory,
                layout.access,
                owner,
            )
        }
    }

    /// Describes foreign memory as a `HostArray` without copying.
    ///
    /// Checks the layout (see [`layout::check_layout`]: element count, byte size and extent fit
    /// `isize`, the extent does not wrap the address space, packed sub-byte dtypes are
    /// row-major) and returns a typed error otherwise.
    ///
    /// # Safety
    ///
    /// - Every element reachable from `parts.data` through `shape` and `strides` lies in one
    ///   allocation that stays valid and readable while `owner` (or any clone of it) is alive.
    /// - `parts.access` is [`Access::ReadOnly`] unless the memory may be written;
    ///   [`Access::Shared`] unless nobody but `owner` reaches the memory, in which case
    ///   `parts.data` carries write permission (derived from a `*mut`/`as_mut_ptr`) and ferry
    ///   writes through it while it holds the only reference to `owner`.
    /// - While the array or a view of it is alive, nobody writes to the memory unless
    ///   `parts.access` is `Shared` and the writer is a party the caller documented (a framework
    ///   tensor made from this memory, the DLPack producer).
    pub unsafe fn from_raw_parts(parts: RawParts, owner: Owner) -> Result<HostArray> {
        let RawParts {
            shape,
            strides,
            dtype,
            data,
            memory,
            access,
        } = parts;
        // SAFETY: the caller's promise, passed on.
        unsafe {
            HostArray::from_raw_dims(
                data,
                dtype,
                Dims::from_vec(shape),
                Dims::from_vec(strides),
                memory,
                access,
                owner,
            )
        }
    }

    /// The checks and the array of [`from_raw_parts`](Self::from_raw_parts).
    ///
    /// # Safety
    ///
    /// As for [`from_raw_parts`](Self::from_raw_parts).
    #[inline]
    unsafe fn from_raw_dims(
        data: *const u8,
        dtype: DType,
        shape: Dims<usize>,
        strides: Dims<isize>,
        memory: MemoryKind,
        access: Access,
        owner: Owner,
    ) -> Result<HostArray> {
        let range = check_layout(dtype, &shape, &strides)?;
        let empty = shape.contains(&0);
        let data = match NonNull::new(data.cast_mut()) {
            Some(p) if !empty => p,
            Some(p) => p,
            None if empty => NonNull::dangling(),
            None => {
                return Err(Error::UnsupportedLayout {
                    shape: shape.to_vec(),
                    strides: strides.to_vec(),
                    dtype,
                    reason: "null data pointer for a non-empty array",
                });
            }
        };
        if let (Some(size), Some((lo, hi))) = (dtype.size_in_bytes(), range) {
            let addr = data.as_ptr() as usize as i128;
            let size = size as i128;
            let (first, last) = (addr + lo as i128 * size, addr + (hi as i128 + 1) * size);
            if first < 0 || last > usize::MAX as i128 || last - first > isize::MAX as i128 {
                return Err(layout::overflow(
                    &shape,
                    &strides,
                    dtype.desc().total_bits(),
                ));
            }
        }
        Ok(HostArray {
            data,
            dtype,
            shape,
            strides,
            memory,
            access,
            owner,
            copies: Vec::new(),
        })
    }

    /// Wraps an owned ndarray without copying; the array becomes the owner.
    pub fn from_array<T: Element>(mut array: ArrayD<T>) -> HostArray {
        let shape = array.shape().to_vec();
        let strides = array.strides().to_vec();
        let data = array.as_mut_ptr().cast::<u8>().cast_const();
        let owner: Owner = Arc::new(array);
        // SAFETY: the elements live in `array`'s heap buffer (moving the array into `owner` does
        // not move it), which nobody else can reach; `data` comes from `as_mut_ptr`; ndarray
        // layouts always fit the address space.
        unsafe {
            Self::from_raw_parts(
                RawParts {
                    data,
                    dtype: T::DTYPE,
                    shape,
                    strides,
                    memory: MemoryKind::Cpu,
                    access: Access::Exclusive,
                },
                owner,
            )
        }
        .expect("an ndarray layout is always valid")
    }

    /// Wraps a shared ndarray without copying. When the `ArcArray` is the only handle to its
    /// data, the buffer becomes this array's own (writable, like [`from_array`](Self::from_array));
    /// otherwise the result is [`Access::ReadOnly`] (the other handles copy on write, so the
    /// memory never changes under it).
    pub fn from_arc_array<T: Element>(array: ArcArray<T, IxDyn>) -> HostArray {
        if array.is_unique() {
            // No copy: a unique ArcArray hands its buffer over.
            return Self::from_array(array.into_owned());
        }
        let (data, shape, strides) = (
            array.as_ptr().cast(),
            array.shape().to_vec(),
            array.strides().to_vec(),
        );
        // SAFETY: the elements of `array`, kept alive by the owner; other handles exist, and
        // ArcArray copies before it writes into a shared buffer, so nobody writes this memory
        // while the array lives.
        unsafe { Self::read_only_ndarray::<T>(data, shape, strides, Arc::new(array)) }
    }

    /// A read-only array over an ndarray's elements.
    ///
    /// # Safety
    ///
    /// `data`, `shape` and `strides` are those of an ndarray of `T` whose buffer `owner` keeps
    /// alive, and nobody writes that buffer while `owner` lives.
    unsafe fn read_only_ndarray<T: Element>(
        data: *const u8,
        shape: Vec<usize>,
        strides: Vec<isize>,
        owner: Owner,
    ) -> HostArray {
        let parts = RawParts {
            data,
            dtype: T::DTYPE,
            shape,
            strides,
            memory: MemoryKind::Cpu,
            access: Access::ReadOnly,
        };
        // SAFETY: the caller's contract; read-only, so ferry never writes.
        unsafe { Self::from_raw_parts(parts, owner) }.expect("an ndarray layout is always valid")
    }

    /// Wraps a `Vec` as a row-major array of `shape` without copying.
    pub fn from_vec<T: Element>(shape: Vec<usize>, data: Vec<T>) -> Result<HostArray> {
        let expected = element_count(&shape)
            .ok_or_else(|| layout::overflow(&shape, &[], T::DTYPE.desc().total_bits()))?;
        if expected != data.len() {
            return Err(Error::ShapeMismatch {
                shape,
                expected,
                found: data.len(),
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("length checked above");
        Ok(Self::from_array(array))
    }

    /// A row-major array of `dtype` from raw native-endian bytes (copied once into a buffer
    /// aligned for the element type).
    pub fn from_bytes(shape: Vec<usize>, dtype: DType, bytes: &[u8]) -> Result<HostArray> {
        let n = element_count(&shape)
            .ok_or_else(|| layout::overflow(&shape, &[], dtype.desc().total_bits()))?;
        let expected = layout::packed_bytes(n, dtype)
            .ok_or_else(|| layout::overflow(&shape, &[], dtype.desc().total_bits()))?;
        if bytes.len() != expected {
            return Err(Error::ShapeMismatch {
                shape,
                expected,
                found: bytes.len(),
            });
        }
        let strides = layout::row_major_strides(&shape).expect("element count checked");
        let (data, owner): (*const u8, Owner) = match dtype {
            DType::Bool | DType::Raw(_) => {
                let mut v = try_alloc_uninit::<u8>(bytes.len())
                    .map_err(|_| out_of_memory(bytes.len(), &shape, dtype))?;
                v.extend_from_slice(bytes);
                (v.as_mut_ptr().cast_const(), Arc::new(v))
            }
            typed => dispatch_dtype!(typed, T => {
                let mut v = try_alloc_uninit::<T>(n)
                    .map_err(|_| out_of_memory(bytes.len(), &shape, dtype))?;
                // SAFETY: `v` has room for n elements of T, which is `bytes.len()` bytes; every
                // bit pattern is a valid T for these non-bool dtypes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
                    v.set_len(n);
                }
                (v.as_mut_ptr().cast::<u8>().cast_const(), Arc::new(v) as Owner)
            }, raw => unreachable!("raw dtypes handled above")),
        };
        let record = record_copy(bytes.len() as u64, CopyReason::Forced);
        let parts = RawParts {
            data,
            dtype,
            shape,
            strides,
            memory: MemoryKind::Cpu,
            access: Access::Exclusive,
        };
        // SAFETY: `owner` holds exactly the row-major elements of `shape`, owned by nobody else,
        // and `data` comes from `as_mut_ptr` on that buffer (moving the Vec into the Arc does not
        // move its heap buffer).
        Ok(unsafe { Self::from_raw_parts(parts, owner) }?.with_copy(record))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Length of each axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Step of each axis, in elements (may be negative or zero).
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    /// What kind of host memory the data is in.
    pub fn memory(&self) -> MemoryKind {
        self.memory
    }

    /// The DLPack device of the memory.
    pub fn device(&self) -> Device {
        self.memory.device()
    }

    /// Address of the element at index `[0, .., 0]` (dangling for empty arrays).
    pub fn as_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    /// Whether nobody may write this array's memory ([`Access::ReadOnly`]; exported with
    /// DLPack's READ_ONLY flag).
    pub fn is_read_only(&self) -> bool {
        self.access == Access::ReadOnly
    }

    /// Whether a consumer that cannot be told "read-only" (a legacy DLPack capsule, a bare
    /// `DLTensor`, PyTorch, which ignores DLPack's READ_ONLY flag) may be handed this memory
    /// as it is: the array is not [`Access::ReadOnly`] and nothing else holds its memory (no
    /// clone, export or keep-alive that ferry or a framework still reads through). Otherwise
    /// such a consumer gets a copy.
    pub fn may_lend_writable(&self) -> bool {
        !self.is_read_only() && self.owner_is_unique()
    }

    /// Who may write this array's memory.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether [`view_mut`](Self::view_mut) would hand out a mutable view now (the memory is
    /// [`Access::Exclusive`], no other clone holds it, and no two indices reach one element).
    pub fn is_writable(&self) -> bool {
        self.access == Access::Exclusive
            && self.owner_is_unique()
            && !may_overlap(&self.shape, &self.strides)
    }

    /// Marks the array read-only (never the reverse: that would be unsound for shared memory).
    pub fn into_read_only(mut self) -> HostArray {
        self.access = Access::ReadOnly;
        self
    }

    /// Marks [`Access::Shared`] memory as this array's alone, so that
    /// [`view_mut`](Self::view_mut) may write it (for example a NumPy array or a foreign DLPack
    /// tensor the caller knows nobody else uses). Exclusive arrays are returned unchanged.
    ///
    /// Errors with [`Error::NotWritable`] for [`Access::ReadOnly`] memory: its producer forbade
    /// writes.
    ///
    /// # Safety
    ///
    /// - While this array, a clone of it or a view from it is alive, nobody else (the DLPack
    ///   producer, the framework tensor the memory came from or went to, another thread holding
    ///   the foreign object) reads or writes the memory.
    /// - The memory is writable (not a read-only mapping or constant data).
    pub unsafe fn assume_exclusive(mut self) -> Result<HostArray> {
        match self.access {
            Access::ReadOnly => Err(Error::NotWritable {
                reason: "its producer marked it read-only",
                shape: self.shape.to_vec(),
                device: self.device(),
            }),
            Access::Shared | Access::Exclusive => {
                self.access = Access::Exclusive;
                Ok(self)
            }
        }
    }

    /// The same memory with the axes in reverse order (NumPy's `.T`, ndarray's
    /// `reversed_axes`): a column-major array becomes row-major. No copy.
    ///
    /// Errors with [`Error::UnsupportedLayout`] for packed sub-byte dtypes (fp4, fp6), whose
    /// elements have no address of their own and must stay row-major.
    pub fn reversed_axes(&self) -> Result<HostArray> {
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        shape.reverse();
        strides.reverse();
        check_layout(self.dtype, &shape, &strides)?;
        Ok(HostArray {
            shape,
            strides,
            ..self.clone()
        })
    }

    /// Whether the strides are row-major (C order) for the shape.
    pub fn is_standard_layout(&self) -> bool {
        is_row_major(&self.shape, &self.strides)
    }

    /// The bytes the elements span, from the lowest to the highest (packed bytes for a
    /// sub-byte dtype): the first byte and the length; length 0 for an empty array.
    pub fn byte_span(&self) -> (*const u8, usize) {
        match layout::byte_span(self.dtype, &self.shape, &self.strides) {
            Ok(Some((lo, len))) => (self.as_ptr().wrapping_offset(lo), len),
            _ => (self.as_ptr(), 0),
        }
    }

    /// The copies ferry made to produce this array, oldest first.
    pub fn copy_log(&self) -> &[CopyRecord] {
        &self.copies
    }

    /// How many copies ferry made to produce this array (0 = it shares its source's memory).
    pub fn copies(&self) -> usize {
        self.copies.len()
    }

    /// Bytes ferry copied to produce this array.
    pub fn bytes_copied(&self) -> u64 {
        self.copies.iter().map(|c| c.bytes).sum()
    }

    /// Appends a copy made by an adapter (for example a device-to-host transfer) to the log.
    pub fn with_copy(mut self, record: CopyRecord) -> HostArray {
        self.copies.push(record);
        self
    }

    /// A handle that keeps this array's memory alive, for adapters that describe the same
    /// memory again (an [`Owner`] for [`from_raw_parts`](Self::from_raw_parts)). It is opaque:
    /// the value inside (a framework tensor, a buffer) is not handed out, so it grants no
    /// access to the memory; holding it makes [`view_mut`](Self::view_mut) refuse, as a clone
    /// does.
    pub fn keep_alive(&self) -> Owner {
        Arc::new(KeepAlive(self.owner.clone()))
    }

    /// This array, with `guard` dropped when the last clone of the result (and every handle
    /// made from it) is dropped: for an exporter that counts what it handed out. Access stays
    /// [`Access::Exclusive`] only while nothing else holds this array's memory (no clone,
    /// export or keep-alive); otherwise it narrows to [`Access::shared`], so the result never
    /// writes memory that another holder reads. Layout, memory and copy log are kept.
    pub fn with_guard<G: Send + Sync + 'static>(self, guard: G) -> HostArray {
        let access = if self.owner_is_unique() {
            self.access
        } else {
            self.access.shared()
        };
        let owner: Owner = Arc::new(Guarded {
            _memory: self.owner,
            _guard: guard,
        });
        HostArray {
            access,
            owner,
            ..self
        }
    }

    /// This array with pinned or managed memory labelled as plain CPU memory (what a DLPack
    /// consumer asking for `kDLCPU` gets: the CPU reads such memory where it is). The memory,
    /// and who frees it, do not change.
    pub fn as_cpu_memory(self) -> HostArray {
        HostArray {
            memory: MemoryKind::Cpu,
            ..self
        }
    }

    /// This array's owner itself, for exports inside the crate that hold it without handing
    /// it out.
    pub(crate) fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Whether this array's owner is held by nothing else (no clone, export, framework tensor
    /// sharing the memory, or keep-alive): what decides whether ferry lets anyone else write
    /// the memory (a writable export, a move into a framework).
    ///
    /// When it answers `true`, everything the other holders did with the memory happened
    /// before the caller's next access: the counts are read with relaxed loads (all `&self`
    /// allows), and the acquire fence after them pairs with the release decrement each dropped
    /// holder made, as `Arc::get_mut` does.
    pub fn owner_is_unique(&self) -> bool {
        let unique = Arc::strong_count(&self.owner) == 1 && Arc::weak_count(&self.owner) == 0;
        if unique {
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        }
        unique
    }

    /// Bytes one element takes (`None` for packed sub-byte dtypes).
    pub fn itemsize(&self) -> Option<usize> {
        self.dtype.size_in_bytes()
    }

    /// Bytes the elements take when packed row-major.
    pub fn nbytes(&self) -> usize {
        layout::packed_bytes(self.len(), self.dtype)
            .expect("checked at construction: the packed size fits isize")
    }

    /// The data as bytes, when the array is row-major (and not empty).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        if !self.is_standard_layout() {
            return None;
        }
        if self.is_empty() {
            return Some(&[]);
        }
        // SAFETY: a row-major non-empty array covers exactly `nbytes` readable bytes starting at
        // `data` (from_raw_parts contract), kept alive by `self.owner` for the borrow of `self`.
        Some(unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.nbytes()) })
    }

    fn check_typed<T: Element>(&self) -> Result<()> {
        if !self.dtype.is_typed() {
            return Err(Error::NoTypedView { dtype: self.dtype });
        }
        if self.dtype != T::DTYPE {
            return Err(Error::DtypeMismatch {
                found: self.dtype,
                wanted: T::DTYPE,
            });
        }
        Ok(())
    }

    fn check_aligned<T: Element>(&self) -> Result<()> {
        if !self.is_empty() && !(self.data.as_ptr() as usize).is_multiple_of(align_of::<T>()) {
            return Err(Error::Misaligned {
                dtype: self.dtype,
                address: self.data.as_ptr() as usize,
                align: align_of::<T>(),
            });
        }
        Ok(())
    }

    /// For `bool`: every byte is 0 or 1.
    fn check_values<T: Element>(&self) -> Result<()> {
        if !T::NEEDS_VALIDATION {
            return Ok(());
        }
        let bytes = self.byte_view();
        match bytes.iter().position(|&b| !T::is_valid_byte(b)) {
            None => Ok(()),
            Some(position) => Err(Error::InvalidBool {
                shape: self.shape.to_vec(),
                position,
                value: bytes.iter().nth(position).copied().unwrap_or(0),
            }),
        }
    }

    /// A `u8` view of a one-byte-element array (used to validate bools, and to read bools that
    /// someone else may write: each byte is checked in the load that converts it).
    pub(crate) fn byte_view(&self) -> ArrayViewD<'_, u8> {
        debug_assert_eq!(self.dtype.size_in_bytes(), Some(1));
        // SAFETY: one-byte elements are always aligned; the layout is readable for `'_`
        // (from_raw_parts contract) and any byte pattern is a valid u8.
        unsafe { self.raw_view::<u8>() }
    }

    /// Builds an ndarray view, moving the pointer to the lowest address for negative strides and
    /// flipping those axes back.
    ///
    /// # Safety
    /// `T` has the array's element size and alignment is satisfied, and every byte pattern in
    /// the array is a valid `T`.
    unsafe fn raw_view<T>(&self) -> ArrayViewD<'_, T> {
        // SAFETY: the caller's promise, passed on; IxDyn has every rank.
        unsafe { self.raw_view_dim::<T, IxDyn>() }
    }

    /// [`raw_view`](Self::raw_view) of rank `D` (which the caller checked is the array's),
    /// built without heap allocations for fixed ranks: the lowest-addressed element, absolute
    /// strides, then the axes with negative strides inverted back.
    ///
    /// # Safety
    ///
    /// As for [`raw_view`](Self::raw_view), and `D` has the array's rank (or is `IxDyn`).
    unsafe fn raw_view_dim<T, D: Dimension>(&self) -> ArrayView<'_, T, D> {
        let ndim = self.ndim();
        let empty = self.is_empty();
        let mut shape = D::zeros(ndim);
        let mut strides = D::zeros(ndim);
        let mut ptr = if empty {
            NonNull::<T>::dangling().as_ptr()
        } else {
            self.data.as_ptr().cast::<T>()
        };
        let mut flipped = false;
        for (axis, (&len, &stride)) in self.shape.iter().zip(&self.strides).enumerate() {
            shape[axis] = len;
            if empty {
                continue;
            }
            if stride < 0 && len > 1 {
                // SAFETY: index len-1 of this axis is an element of the array.
                ptr = unsafe { ptr.offset(stride * (len as isize - 1)) };
                flipped = true;
            }
            strides[axis] = stride.unsigned_abs();
        }
        // SAFETY: `ptr` is the lowest element address (or dangling and aligned when empty), the
        // non-negative strides reach exactly the array's elements, whose extent fits isize
        // (checked in from_raw_parts); the memory lives as long as `self` borrows its owner.
        let mut view = unsafe { ArrayView::from_shape_ptr(shape.strides(strides), ptr) };
        if flipped {
            for (axis, (&len, &stride)) in self.shape.iter().zip(&self.strides).enumerate() {
                if stride < 0 && len > 1 {
                    view.invert_axis(Axis(axis));
                }
            }
        }
        view
    }

    /// Pointer to the lowest-addressed element, absolute strides, and the axes that were flipped.
    fn lowest_address_layout<T>(&self) -> (*mut T, Vec<usize>, Vec<usize>) {
        if self.is_empty() {
            return (
                NonNull::<T>::dangling().as_ptr(),
                vec![0; self.ndim()],
                Vec::new(),
            );
        }
        let mut ptr = self.data.as_ptr().cast::<T>();
        let mut strides = Vec::with_capacity(self.ndim());
        let mut flipped = Vec::new();
        for (axis, (&len, &stride)) in self.shape.iter().zip(&self.strides).enumerate() {
            if stride < 0 && len > 1 {
                // SAFETY: index len-1 of this axis is an element of the array.
                ptr = unsafe { ptr.offset(stride * (len as isize - 1)) };
                flipped.push(axis);
            }
            strides.push(stride.unsigned_abs());
        }
        (ptr, strides, flipped)
    }

    /// The bytes of a `bool` array as a `u8` view, unchecked: for code that reads bools that
    /// someone else may be writing (memory exported writable) and checks each byte in the load
    /// that reads it, where [`view::<bool>`](Self::view) checks them all first.
    /// [`Error::DtypeMismatch`] for other dtypes.
    pub fn bool_bytes(&self) -> Result<ArrayViewD<'_, u8>> {
        self.check_typed::<bool>()?;
        Ok(self.byte_view())
    }

    /// A typed view of any legal layout (negative and zero strides included), without copying.
    ///
    /// Errors: [`Error::DtypeMismatch`], [`Error::NoTypedView`], [`Error::Misaligned`], and for
    /// `bool` [`Error::InvalidBool`] when a byte is neither 0 nor 1.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        self.check_typed::<T>()?;
        self.check_aligned::<T>()?;
        self.check_values::<T>()?;
        // SAFETY: dtype, alignment and value validity were checked just above.
        Ok(unsafe { self.raw_view::<T>() })
    }

    /// A typed view of fixed rank `D` (`Ix1`, `Ix2`, ...), for code that indexes with
    /// `[[i, j]]` or calls `rows()`/`dot()`: [`view`](Self::view), then
    /// [`Error::RankMismatch`] naming the array's shape and the rank asked for.
    pub fn view_dim<T: Element, D: Dimension>(&self) -> Result<ArrayView<'_, T, D>> {
        self.check_rank::<D>()?;
        self.check_typed::<T>()?;
        self.check_aligned::<T>()?;
        self.check_values::<T>()?;
        // SAFETY: rank, dtype, alignment and value validity were checked just above.
        Ok(unsafe { self.raw_view_dim::<T, D>() })
    }

    /// [`view_dim`](Self::view_dim) for one axis.
    pub fn view1<T: Element>(&self) -> Result<ArrayView1<'_, T>> {
        self.view_dim::<T, Ix1>()
    }

    /// [`view_dim`](Self::view_dim) for two axes: `host.view2::<f32>()?.column(0)`.
    pub fn view2<T: Element>(&self) -> Result<ArrayView2<'_, T>> {
        self.view_dim::<T, Ix2>()
    }

    /// The values as `T` in one step: a zero-copy view when the array already holds `T`, else
    /// an explicit [`cast`](Self::cast) (one recorded copy) — instead of naming the type twice
    /// in `cast::<T>()?.view::<T>()?`. Same refusals as `cast` and `view`.
    pub fn view_cast<T: Element>(&self) -> Result<CowArray<'_, T, IxDyn>> {
        if self.dtype == T::DTYPE {
            return self.view::<T>().map(CowArray::from);
        }
        Ok(CowArray::from(self.cast::<T>()?.into_array::<T>()?))
    }

    fn check_rank<D: Dimension>(&self) -> Result<()> {
        match D::NDIM {
            Some(expected) if expected != self.ndim() => Err(Error::RankMismatch {
                shape: self.shape.to_vec(),
                expected,
                found: self.ndim(),
            }),
            _ => Ok(()),
        }
    }

    /// A mutable typed view. Only for memory ferry may write ([`Access::Exclusive`]: its own
    /// buffers, or foreign memory handed over), not held by another `HostArray` clone, export
    /// or keep-alive, and with no two indices reaching the same element.
    pub fn view_mut<T: Element>(&mut self) -> Result<ArrayViewMutD<'_, T>> {
        let unique = Arc::get_mut(&mut self.owner).is_some();
        self.view_mut_checked::<T>(unique)
    }

    /// [`view_mut`](Self::view_mut) for memory that other handles still hold but will not
    /// touch while the view lives: the memory must still be [`Access::Exclusive`], with no
    /// two indices reaching one element; only the check that no other clone, export or
    /// keep-alive holds the owner is left to the caller. For a lender that hands out memory
    /// for a bounded time and refuses every other reader until it is back (ferry's Python
    /// argument types, `ReadwriteArray`).
    ///
    /// # Safety
    ///
    /// - While the returned view lives, nothing reads or writes this array's memory through
    ///   any other handle: no clone of this array, no export or framework tensor made from it,
    ///   no keep-alive's holder, no other thread.
    pub unsafe fn view_mut_lent<T: Element>(&mut self) -> Result<ArrayViewMutD<'_, T>> {
        self.view_mut_checked::<T>(true)
    }

    /// The checks and the view of [`view_mut`](Self::view_mut); `unique` says whether no other
    /// handle reaches the memory while the view lives (a uniquely held owner, or a lender's
    /// promise).
    fn view_mut_checked<T: Element>(&mut self, unique: bool) -> Result<ArrayViewMutD<'_, T>> {
        self.check_typed::<T>()?;
        self.check_aligned::<T>()?;
        let not_writable = |reason| Error::NotWritable {
            reason,
            shape: self.shape.to_vec(),
            device: self.device(),
        };
        match self.access {
            Access::Exclusive => {}
            Access::ReadOnly => {
                return Err(not_writable(
                    "the memory is read-only (a framework's storage, a file map, or flagged read-only by its producer)",
                ));
            }
            Access::Shared => {
                return Err(not_writable(
                    "the memory belongs to its producer, who may still use it (a NumPy array, a foreign DLPack tensor, memory a framework tensor shares); if nobody else uses it, opt in with unsafe assume_exclusive()",
                ));
            }
        }
        if !unique {
            return Err(not_writable(
                "the memory is shared with another HostArray clone",
            ));
        }
        if may_overlap(&self.shape, &self.strides) {
            return Err(not_writable(
                "the strides let several indices reach the same element (broadcast)",
            ));
        }
        self.check_values::<T>()?;
        let (ptr, strides, flipped) = self.lowest_address_layout::<T>();
        // SAFETY: as in `raw_view`, plus: the memory is Exclusive (only the owner reaches it, and
        // `data` carries write permission: from_raw_parts contract) and either the owner is held
        // only by `self` or the caller of `view_mut_lent` promised that its other holders do not
        // touch the memory while the view lives, so no one else reads or writes it during the
        // `&mut self` borrow; no two indices alias (checked by may_overlap).
        let mut view = unsafe {
            ArrayViewMutD::from_shape_ptr(IxDyn(&self.shape).strides(IxDyn(&strides)), ptr)
        };
        for axis in flipped {
            view.invert_axis(Axis(axis));
        }
        Ok(view)
    }

    /// An owned row-major copy as an ndarray (always copies; see [`HostArray::into_array`]).
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        self.check_typed::<T>()?;
        Ok(self.gather_into_array::<T>(CopyReason::Forced)?.0)
    }

    /// The data as an owned row-major ndarray, without copying when this array is the only
    /// handle to an owned buffer that is exactly its memory in standard layout.
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        self.check_typed::<T>()?;
        if T::NEEDS_VALIDATION || !self.is_standard_layout() || self.access != Access::Exclusive {
            return self.into_array_copy::<T>();
        }
        let HostArray {
            data,
            dtype,
            shape,
            strides,
            memory,
            access,
            owner,
            copies,
        } = self;
        let parts = |owner: Owner| HostArray {
            data,
            dtype,
            shape: shape.clone(),
            strides,
            memory,
            access,
            owner,
            copies,
        };
        let owned = match Arc::downcast::<ArrayD<T>>(owner) {
            Ok(owned) => owned,
            Err(owner) => return parts(owner).into_array_copy::<T>(),
        };
        match Arc::try_unwrap(owned) {
            Ok(array)
                if array.as_ptr().cast::<u8>() == data.as_ptr().cast_const()
                    && array.shape() == shape.as_slice()
                    && array.is_standard_layout() =>
            {
                Ok(array)
            }
            // The owner's buffer but another layout of it (this array is a `reversed_axes` or
            // a slice of it), or an owner someone else holds too: copied through this array's
            // own layout, the owner kept alive meanwhile.
            Ok(array) => parts(Arc::new(array)).into_array_copy::<T>(),
            Err(shared) => parts(shared).into_array_copy::<T>(),
        }
    }

    fn into_array_copy<T: Element>(self) -> Result<ArrayD<T>> {
        let reason = if self.is_standard_layout() {
            CopyReason::Forced
        } else {
            CopyReason::NonContiguous
        };
        Ok(self.gather_into_array::<T>(reason)?.0)
    }

    /// A fresh buffer with room for this array's `n` elements of `size` bytes, or
    /// [`Error::LayoutOverflow`] / [`Error::OutOfMemory`] when that many bytes cannot exist.
    fn copy_buffer<T>(&self, n: usize) -> Result<Vec<T>> {
        let bytes = n
            .checked_mul(size_of::<T>().max(1))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| {
                layout::overflow(&self.shape, &self.strides, self.dtype.desc().total_bits())
            })?;
        try_alloc_uninit::<T>(n).map_err(|_| out_of_memory(bytes, &self.shape, self.dtype))
    }

    /// Copies into a fresh row-major `ArrayD<T>` (caller checked the dtype). `bool`s are
    /// copied as bytes and checked in the copy, which nobody else reaches: a check of the source
    /// before copying would race with a writer of memory exported writable.
    fn gather_into_array<T: Element>(&self, reason: CopyReason) -> Result<(ArrayD<T>, CopyRecord)> {
        let n = self.len();
        let buf = if T::NEEDS_VALIDATION {
            let bytes = self.gather_into_vec::<u8>(n, 1)?;
            if let Some(position) = bytes.iter().position(|&b| !T::is_valid_byte(b)) {
                return Err(Error::InvalidBool {
                    shape: self.shape.to_vec(),
                    position,
                    value: bytes[position],
                });
            }
            let mut values = self.copy_buffer::<T>(n)?;
            values.extend(bytes.into_iter().map(T::from_valid_byte));
            values
        } else {
            self.gather_into_vec::<T>(n, size_of::<T>())?
        };
        // n * size_of::<T>() was checked by copy_buffer.
        let record = record_copy((n * size_of::<T>()) as u64, reason);
        Ok((
            ArrayD::from_shape_vec(IxDyn(&self.shape), buf).expect("n elements for this shape"),
            record,
        ))
    }

    /// Gathers the elements, `elem_size` bytes each, in row-major order into a fresh buffer of
    /// `len` values of `T` (`len * size_of::<T>()` is the elements' total size).
    fn gather_into_vec<T>(&self, len: usize, elem_size: usize) -> Result<Vec<T>> {
        let mut buf = self.copy_buffer::<T>(len)?;
        // SAFETY: the source layout is readable (from_raw_parts contract); `buf` is a fresh
        // allocation with room for `len` values of T, which is all the elements' bytes.
        unsafe {
            gather(
                self.data.as_ptr(),
                &self.shape,
                &self.strides,
                elem_size,
                buf.as_mut_ptr().cast(),
            );
            buf.set_len(len);
        }
        Ok(buf)
    }

    /// Writes the elements in row-major order into `dst`, exactly [`nbytes`](Self::nbytes)
    /// bytes that a framework allocated for them, for an adapter that copies into its
    /// framework's own memory; returns the copy's record (also in the per-thread ledger) for
    /// the caller to report. `bool` values are checked in `dst` once written: a caller that
    /// gets [`Error::InvalidBool`] discards `dst` (no framework sees a byte other than 0 or
    /// 1). A `dst` of another length is
    /// [`Error::ShapeMismatch`] (in bytes).
    pub fn write_row_major(
        &self,
        dst: &mut [MaybeUninit<u8>],
        reason: CopyReason,
    ) -> Result<CopyRecord> {
        let bytes = self.nbytes();
        if dst.len() != bytes {
            return Err(Error::ShapeMismatch {
                shape: self.shape.to_vec(),
                expected: bytes,
                found: dst.len(),
            });
        }
        match self.dtype.size_in_bytes() {
            // SAFETY: the layout is readable (from_raw_parts contract); `dst` is a distinct,
            // writable buffer of exactly the elements' bytes (checked above); the kernels
            // read and write unaligned.
            Some(size) => unsafe {
                gather(
                    self.data.as_ptr(),
                    &self.shape,
                    &self.strides,
                    size,
                    dst.as_mut_ptr().cast(),
                );
            },
            None => {
                // Packed sub-byte elements are always row-major (check_layout).
                let packed = self.as_bytes().ok_or_else(|| self.not_row_major_packed())?;
                for (to, &from) in dst.iter_mut().zip(packed) {
                    to.write(from);
                }
            }
        }
        if self.dtype == DType::Bool {
            // Checked in the copy, which only the caller reaches (a check of the source first
            // would race with a writer of memory exported writable).
            // SAFETY: every byte of `dst` was written just above.
            let written = unsafe { &*(std::ptr::from_ref(&dst[..]) as *const [u8]) };
            if let Some(position) = written.iter().position(|&b| b > 1) {
                return Err(Error::InvalidBool {
                    shape: self.shape.to_vec(),
                    position,
                    value: written[position],
                });
            }
        }
        Ok(record_copy(bytes as u64, reason))
    }

    /// A row-major array with the same values: this array itself when it already is row-major
    /// (unless `policy` is `Always`), else a copy ([`Error::NeedsCopy`] under `Never`).
    pub fn to_contiguous(&self, policy: CopyPolicy) -> Result<HostArray> {
        let standard = self.is_standard_layout();
        let reason = match (policy, standard) {
            (CopyPolicy::Always, _) => CopyReason::Forced,
            (_, true) => return Ok(self.clone()),
            (CopyPolicy::Never, false) => return Err(self.needs_copy(CopyReason::NonContiguous)),
            (CopyPolicy::IfNeeded, false) => CopyReason::NonContiguous,
        };
        self.copy_contiguous(reason)
    }

    /// A row-major copy in memory of ferry's own ([`Access::Exclusive`]), recorded as a
    /// [`CopyReason::Snapshot`] copy: for an adapter that must not keep sharing memory whose
    /// owner may still write or free it.
    pub fn snapshot(&self) -> Result<HostArray> {
        self.copy_contiguous(CopyReason::Snapshot)
    }

    /// [`to_contiguous`](Self::to_contiguous) with [`CopyPolicy::IfNeeded`] (errors only when
    /// the copy cannot be allocated).
    pub fn as_standard_layout(&self) -> Result<HostArray> {
        self.to_contiguous(CopyPolicy::IfNeeded)
    }

    /// The arrays joined along their first axis into one row-major array (one recorded
    /// [`CopyReason::Concatenated`] copy; the parts' copy logs come along): the chunks of a
    /// column read from a stream. One part is returned as it is, without a copy.
    ///
    /// Errors: no parts ([`Error::ShapeMismatch`]: there is no dtype or shape to give the
    /// result), 0-d parts, parts whose dtype or axes after the first differ
    /// ([`Error::ConcatMismatch`]), raw dtypes ([`Error::NoTypedView`]), a `bool` part holding
    /// a byte other than 0 or 1 ([`Error::InvalidBool`]), and a result too large to allocate.
    pub fn concat_rows(parts: &[HostArray]) -> Result<HostArray> {
        let Some(first) = parts.first() else {
            return Err(Error::ShapeMismatch {
                shape: Vec::new(),
                expected: 1,
                found: 0,
            });
        };
        if first.ndim() == 0 {
            return Err(Error::RankMismatch {
                shape: Vec::new(),
                expected: 1,
                found: 0,
            });
        }
        for (index, part) in parts.iter().enumerate().skip(1) {
            if part.dtype != first.dtype || part.ndim() == 0 || part.shape[1..] != first.shape[1..]
            {
                return Err(Error::ConcatMismatch {
                    index,
                    shape: part.shape.to_vec(),
                    dtype: part.dtype,
                    first_shape: first.shape.to_vec(),
                    first_dtype: first.dtype,
                });
            }
        }
        if parts.len() == 1 {
            return Ok(first.clone());
        }
        let mut shape = first.shape.to_vec();
        shape[0] = parts.iter().try_fold(0usize, |rows, part| {
            rows.checked_add(part.shape[0])
                .ok_or_else(|| layout::overflow(&part.shape, &[], part.dtype.desc().total_bits()))
        })?;
        let bytes = element_count(&shape)
            .and_then(|n| layout::packed_bytes(n, first.dtype))
            .ok_or_else(|| layout::overflow(&shape, &[], first.dtype.desc().total_bits()))?;
        let mut joined = dispatch_dtype!(first.dtype, T => {
            let views = parts.iter().map(HostArray::view::<T>).collect::<Result<Vec<_>>>()?;
            let mut data = try_alloc_uninit::<T>(bytes / size_of::<T>().max(1))
                .map_err(|_| out_of_memory(bytes, &shape, first.dtype))?;
            for view in &views {
                match view.as_slice() {
                    Some(row_major) => data.extend_from_slice(row_major),
                    None => data.extend(view.iter().copied()),
                }
            }
            HostArray::from_vec(shape, data)?
        }, raw => return Err(Error::NoTypedView { dtype: first.dtype }));
        joined.copies = parts
            .iter()
            .flat_map(|p| p.copies.iter().copied())
            .collect();
        joined
            .copies
            .push(record_copy(bytes as u64, CopyReason::Concatenated));
        Ok(joined)
    }

    /// The [`Error::NeedsCopy`] this array would raise for `reason`.
    pub fn needs_copy(&self, reason: CopyReason) -> Error {
        Error::NeedsCopy {
            reason,
            shape: self.shape.to_vec(),
            strides: self.strides.to_vec(),
            dtype: self.dtype,
        }
    }

    fn copy_contiguous(&self, reason: CopyReason) -> Result<HostArray> {
        let mut out = match (self.dtype, self.dtype.size_in_bytes()) {
            // bool is copied as bytes: validity is checked on typed access, not on copy.
            (DType::Bool, _) | (DType::Raw(_), Some(1)) => self.bytes_as::<u8>(reason)?,
            (DType::Raw(_), Some(size)) => self.raw_copy(size, reason)?,
            (DType::Raw(_), None) => {
                // Packed sub-byte data is always row-major (check_layout): copy its bytes.
                let packed = self.as_bytes().ok_or_else(|| self.not_row_major_packed())?;
                let mut bytes = self.copy_buffer::<u8>(packed.len())?;
                bytes.extend_from_slice(packed);
                let record = record_copy(bytes.len() as u64, reason);
                let mut a = HostArray::from_vec(vec![bytes.len()], bytes)?;
                a.dtype = self.dtype;
                a.shape = self.shape.clone();
                a.strides = layout::row_major_strides(&self.shape)
                    .expect("shape was valid")
                    .into();
                a.copies.push(record);
                a
            }
            (dtype, _) => dispatch_dtype!(dtype, T => {
                let (array, record) = self.gather_into_array::<T>(reason)?;
                HostArray::from_array(array).with_copy(record)
            }, raw => unreachable!("raw dtypes handled above")),
        };
        out.memory = MemoryKind::Cpu;
        let mut log = self.copies.clone();
        log.append(&mut out.copies);
        out.copies = log;
        Ok(out)
    }

    /// The error for packed sub-byte elements that are not row-major (which `check_layout`
    /// never lets an array hold).
    fn not_row_major_packed(&self) -> Error {
        Error::UnsupportedLayout {
            shape: self.shape.to_vec(),
            strides: self.strides.to_vec(),
            dtype: self.dtype,
            reason: "packed sub-byte elements must be row-major",
        }
    }

    /// Copies a one-byte-element array into an owned `u8` buffer and re-tags it.
    fn bytes_as<B: Element>(&self, reason: CopyReason) -> Result<HostArray> {
        let (array, record) = self.retagged::<B>().gather_into_array::<B>(reason)?;
        let mut out = HostArray::from_array(array).with_copy(record);
        out.dtype = self.dtype;
        Ok(out)
    }

    /// Copies raw elements of `size` bytes through the byte kernel into a `u8` buffer.
    fn raw_copy(&self, size: usize, reason: CopyReason) -> Result<HostArray> {
        let n = self.len();
        let total = n.checked_mul(size).ok_or_else(|| {
            layout::overflow(&self.shape, &self.strides, self.dtype.desc().total_bits())
        })?;
        let buf = self.gather_into_vec::<u8>(total, size)?;
        let record = record_copy(total as u64, reason);
        let mut out = HostArray::from_vec(vec![total], buf)?;
        out.dtype = self.dtype;
        out.shape = self.shape.clone();
        out.strides = layout::row_major_strides(&self.shape)
            .expect("shape was valid")
            .into();
        out.copies.push(record);
        Ok(out)
    }

    /// The same memory tagged as another dtype of the same size (internal: byte copies).
    fn retagged<B: Element>(&self) -> HostArray {
        debug_assert_eq!(self.dtype.size_in_bytes(), B::DTYPE.size_in_bytes());
        HostArray {
            dtype: B::DTYPE,
            ..self.clone()
        }
    }

    /// An explicit elementwise conversion to `U` (always a new row-major buffer, recorded as a
    /// [`CopyReason::Cast`] copy). Same dtype: returns this array unchanged.
    pub fn cast<U: Element>(&self) -> Result<HostArray> {
        self.cast_to(U::DTYPE)
    }

    /// [`cast`](Self::cast) to a runtime dtype.
    pub fn cast_to(&self, to: DType) -> Result<HostArray> {
        if to == self.dtype {
            return Ok(self.clone());
        }
        let out = crate::cast::cast_array(self, to)?;
        let mut log = self.copies.clone();
        log.extend_from_slice(&out.copies);
        Ok(HostArray { copies: log, ..out })
    }

    /// [`from_raw_parts`](Self::from_raw_parts) for parts whose checks already ran (DLPack
    /// import's, which are the same): no second pass over the layout, and no allocation for
    /// shape and strides of up to four axes.
    ///
    /// # Safety
    ///
    /// As for [`from_raw_parts`](Self::from_raw_parts), and the parts pass its checks: the
    /// layout passes [`check_layout`], `data` is non-null unless the layout is empty, and every
    /// reached byte lies inside the address space.
    pub(crate) unsafe fn from_checked_parts(
        data: *const u8,
        dtype: DType,
        (shape, strides): (Dims<usize>, Dims<isize>),
        memory: MemoryKind,
        access: Access,
        owner: Owner,
    ) -> HostArray {
        HostArray {
            data: NonNull::new(data.cast_mut()).unwrap_or(NonNull::dangling()),
            dtype,
            shape,
            strides,
            memory,
            access,
            owner,
            copies: Vec::new(),
        }
    }
}

use layout::check_layout;

/// Records why a copy could not be allocated.
fn out_of_memory(bytes: usize, shape: &[usize], dtype: DType) -> Error {
    Error::OutOfMemory {
        bytes,
        shape: shape.to_vec(),
        dtype,
    }
}

/// The owner behind [`HostArray::with_guard`]: the array's own owner, then the guard (fields drop
/// in declaration order, so the guard drops after this handle on the memory is released).
struct Guarded<G> {
    _memory: Owner,
    _guard: G,
}

/// The owner behind [`HostArray::keep_alive`]: keeps the memory alive, hands nothing out.
struct KeepAlive(#[expect(dead_code, reason = "held only to keep the memory alive")] Owner);
