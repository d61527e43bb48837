//! [`HostArray`]: a strided, dtype-tagged array in host-readable memory that owns, borrows or
//! keeps alive foreign memory, with typed ndarray views and copy-on-demand conversions.

use std::any::Any;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use ndarray::{ArcArray, ArrayD, ArrayViewD, ArrayViewMutD, Axis, IxDyn, ShapeBuilder};

use crate::copy::{CopyPolicy, CopyReason, CopyRecord, alloc_uninit, gather, record_copy};
use crate::layout::{self, MAX_NDIM, element_count, is_row_major, may_overlap, offset_range};
use crate::{DType, Device, Element, Error, MemoryKind, Result, dispatch_dtype};

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
/// memory: in-place writes the framework makes are visible through the array. Such arrays are
/// marked read-only, so ferry itself never writes into memory it does not own alone.
#[derive(Clone)]
pub struct HostArray {
    data: NonNull<u8>,
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<isize>,
    memory: MemoryKind,
    read_only: bool,
    owner: Owner,
    copies: Vec<CopyRecord>,
}

// SAFETY: the pointed-to memory is kept alive by `owner`, which is `Send + Sync`; ferry only
// writes through it from `view_mut`, which needs `&mut self` and a uniquely held owner.
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
            .field("read_only", &self.read_only)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}

/// The parts of a [`HostArray`] described by a caller of [`HostArray::from_raw_parts`].
#[derive(Debug, Clone)]
pub struct RawParts {
    /// Address of the element at index `[0, .., 0]`; may be null or dangling for empty arrays.
    pub data: *const u8,
    /// Element type.
    pub dtype: DType,
    /// Length of each axis.
    pub shape: Vec<usize>,
    /// Step of each axis in elements; negative and zero allowed.
    pub strides: Vec<isize>,
    /// What kind of host memory `data` is in.
    pub memory: MemoryKind,
    /// Whether ferry must never hand out a mutable view.
    pub read_only: bool,
}

impl HostArray {
    /// Describes foreign memory as a `HostArray` without copying.
    ///
    /// Checks that the layout's extent fits the address space and that sub-byte dtypes are
    /// compact; returns a typed error otherwise.
    ///
    /// # Safety
    ///
    /// - Every element reachable from `parts.data` through `shape` and `strides` lies in one
    ///   allocation that stays valid and readable while `owner` (or any clone of it) is alive.
    /// - Unless `parts.read_only`, nobody else writes to that memory while a view of the array is
    ///   alive, and ferry may write through it while it holds the only reference to `owner`.
    /// - For `DType::Raw` dtypes of fewer than 8 bits, the data is packed row-major.
    pub unsafe fn from_raw_parts(parts: RawParts, owner: Owner) -> Result<HostArray> {
        let RawParts {
            data,
            dtype,
            shape,
            strides,
            memory,
            read_only,
        } = parts;
        check_layout(dtype, &shape, &strides)?;
        let empty = shape.contains(&0);
        let data = match NonNull::new(data.cast_mut()) {
            Some(p) if !empty => p,
            Some(p) => p,
            None if empty => NonNull::dangling(),
            None => {
                return Err(Error::UnsupportedLayout {
                    shape,
                    strides,
                    dtype,
                    reason: "null data pointer for a non-empty array",
                });
            }
        };
        if let (Some(size), Some((lo, hi))) =
            (dtype.size_in_bytes(), offset_range(&shape, &strides)?)
        {
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
            read_only,
            owner,
            copies: Vec::new(),
        })
    }

    /// Wraps an owned ndarray without copying; the array becomes the owner.
    pub fn from_array<T: Element>(array: ArrayD<T>) -> HostArray {
        let shape = array.shape().to_vec();
        let strides = array.strides().to_vec();
        let data = array.as_ptr().cast::<u8>();
        let owner: Owner = Arc::new(array);
        // SAFETY: the elements live in `array`, now inside `owner`, which nobody else can reach;
        // ndarray layouts always fit the address space.
        unsafe {
            Self::from_raw_parts(
                RawParts {
                    data,
                    dtype: T::DTYPE,
                    shape,
                    strides,
                    memory: MemoryKind::Cpu,
                    read_only: false,
                },
                owner,
            )
        }
        .expect("an ndarray layout is always valid")
    }

    /// Wraps a shared ndarray without copying. The result is read-only unless the `ArcArray`
    /// was the only handle to its data.
    pub fn from_arc_array<T: Element>(array: ArcArray<T, IxDyn>) -> HostArray {
        let read_only = !array.is_unique();
        let shape = array.shape().to_vec();
        let strides = array.strides().to_vec();
        let data = array.as_ptr().cast::<u8>();
        let owner: Owner = Arc::new(array);
        // SAFETY: the elements live in the shared buffer kept alive by `owner`; when other
        // handles exist the array is read-only, so ferry never writes into shared memory.
        unsafe {
            Self::from_raw_parts(
                RawParts {
                    data,
                    dtype: T::DTYPE,
                    shape,
                    strides,
                    memory: MemoryKind::Cpu,
                    read_only,
                },
                owner,
            )
        }
        .expect("an ndarray layout is always valid")
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
        let expected = (n as u128 * u128::from(dtype.desc().total_bits())).div_ceil(8) as usize;
        if bytes.len() != expected {
            return Err(Error::ShapeMismatch {
                shape,
                expected,
                found: bytes.len(),
            });
        }
        let record = record_copy(bytes.len() as u64, CopyReason::Forced);
        let strides = layout::row_major_strides(&shape).expect("element count checked");
        let (data, owner): (*const u8, Owner) = match dtype {
            DType::Bool | DType::Raw(_) => {
                let v = bytes.to_vec();
                (v.as_ptr(), Arc::new(v))
            }
            typed => dispatch_dtype!(typed, T => {
                let mut v = alloc_uninit::<T>(n);
                // SAFETY: `v` has room for n elements of T, which is `bytes.len()` bytes; every
                // bit pattern is a valid T for these non-bool dtypes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
                    v.set_len(n);
                }
                (v.as_ptr().cast::<u8>(), Arc::new(v) as Owner)
            }, raw => unreachable!("raw dtypes handled above")),
        };
        let parts = RawParts {
            data,
            dtype,
            shape,
            strides,
            memory: MemoryKind::Cpu,
            read_only: false,
        };
        // SAFETY: `owner` holds exactly the row-major elements of `shape`, owned by nobody else.
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

    /// Whether ferry refuses mutable views of this array's memory.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Marks the array read-only (never the reverse: that would be unsound for shared memory).
    pub fn into_read_only(mut self) -> HostArray {
        self.read_only = true;
        self
    }

    /// The same memory with the axes in reverse order (NumPy's `.T`, ndarray's
    /// `reversed_axes`): a column-major array becomes row-major. No copy.
    pub fn reversed_axes(&self) -> HostArray {
        let mut out = self.clone();
        out.shape.reverse();
        out.strides.reverse();
        out
    }

    /// Whether the strides are row-major (C order) for the shape.
    pub fn is_standard_layout(&self) -> bool {
        is_row_major(&self.shape, &self.strides)
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

    /// The keep-alive owner (for adapters that hand the memory on, e.g. over DLPack).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Bytes one element takes (`None` for packed sub-byte dtypes).
    pub fn itemsize(&self) -> Option<usize> {
        self.dtype.size_in_bytes()
    }

    /// Bytes the elements take when packed row-major.
    pub fn nbytes(&self) -> usize {
        let bits = self.len() as u128 * u128::from(self.dtype.desc().total_bits());
        bits.div_ceil(8) as usize
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
                shape: self.shape.clone(),
                position,
                value: bytes.iter().nth(position).copied().unwrap_or(0),
            }),
        }
    }

    /// A `u8` view of a one-byte-element array (used to validate bools).
    fn byte_view(&self) -> ArrayViewD<'_, u8> {
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
        let (ptr, strides, flipped) = self.lowest_address_layout::<T>();
        // SAFETY: `ptr` is the lowest element address (or dangling and aligned when empty), the
        // non-negative strides reach exactly the array's elements, whose extent fits isize
        // (checked in from_raw_parts); the memory lives as long as `self` borrows its owner.
        let mut view =
            unsafe { ArrayViewD::from_shape_ptr(IxDyn(&self.shape).strides(IxDyn(&strides)), ptr) };
        for axis in flipped {
            view.invert_axis(Axis(axis));
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

    /// A mutable typed view. Only for arrays ferry may write: not read-only, not sharing memory
    /// with another `HostArray` clone, and with no two indices reaching the same element.
    pub fn view_mut<T: Element>(&mut self) -> Result<ArrayViewMutD<'_, T>> {
        self.check_typed::<T>()?;
        self.check_aligned::<T>()?;
        let unique = Arc::get_mut(&mut self.owner).is_some();
        let not_writable = |reason| Error::NotWritable {
            reason,
            shape: self.shape.clone(),
            device: self.device(),
        };
        if self.read_only {
            return Err(not_writable(
                "the memory is read-only (shared with a framework or flagged read-only by its producer)",
            ));
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
        // SAFETY: as in `raw_view`, plus: the owner is held only by `self` and not read-only, so
        // no one else reads or writes the memory during the `&mut self` borrow, and no two
        // indices alias (checked by may_overlap).
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
        self.check_values::<T>()?;
        Ok(self.gather_into_array::<T>(CopyReason::Forced).0)
    }

    /// The data as an owned row-major ndarray, without copying when this array is the only
    /// handle to an owned buffer that is exactly its memory in standard layout.
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        self.check_typed::<T>()?;
        if !T::NEEDS_VALIDATION && self.is_standard_layout() && !self.read_only {
            let (data, shape) = (self.data.as_ptr(), self.shape.clone());
            match Arc::downcast::<ArrayD<T>>(self.owner.clone()) {
                Ok(owned) => {
                    drop(self);
                    match Arc::try_unwrap(owned) {
                        Ok(array)
                            if array.as_ptr().cast::<u8>() == data.cast_const()
                                && array.shape() == shape.as_slice()
                                && array.is_standard_layout() =>
                        {
                            return Ok(array);
                        }
                        Ok(array) => return HostArray::from_array(array).into_array_copy::<T>(),
                        Err(shared) => {
                            return HostArray::from_arc_owner(shared).into_array_copy::<T>();
                        }
                    }
                }
                Err(_) => return self.into_array_copy::<T>(),
            }
        }
        self.into_array_copy::<T>()
    }

    fn from_arc_owner<T: Element>(owner: Arc<ArrayD<T>>) -> HostArray {
        let shape = owner.shape().to_vec();
        let strides = owner.strides().to_vec();
        let data = owner.as_ptr().cast::<u8>();
        // SAFETY: the elements live in the array behind `owner`, which is shared and therefore
        // marked read-only.
        unsafe {
            Self::from_raw_parts(
                RawParts {
                    data,
                    dtype: T::DTYPE,
                    shape,
                    strides,
                    memory: MemoryKind::Cpu,
                    read_only: true,
                },
                owner,
            )
        }
        .expect("an ndarray layout is always valid")
    }

    fn into_array_copy<T: Element>(self) -> Result<ArrayD<T>> {
        let reason = if self.is_standard_layout() {
            CopyReason::Forced
        } else {
            CopyReason::NonContiguous
        };
        self.check_values::<T>()?;
        Ok(self.gather_into_array::<T>(reason).0)
    }

    /// Copies into a fresh row-major `ArrayD<T>` (caller checked dtype and values).
    fn gather_into_array<T: Element>(&self, reason: CopyReason) -> (ArrayD<T>, CopyRecord) {
        let n = self.len();
        let mut buf = alloc_uninit::<T>(n);
        // SAFETY: the source layout is readable (from_raw_parts contract); `buf` has room for n
        // elements of T and is a fresh allocation.
        unsafe {
            gather(
                self.data.as_ptr(),
                &self.shape,
                &self.strides,
                size_of::<T>(),
                buf.as_mut_ptr().cast(),
            );
            buf.set_len(n);
        }
        let record = record_copy((n * size_of::<T>()) as u64, reason);
        (
            ArrayD::from_shape_vec(IxDyn(&self.shape), buf).expect("n elements for this shape"),
            record,
        )
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

    /// [`to_contiguous`](Self::to_contiguous) with [`CopyPolicy::IfNeeded`].
    pub fn as_standard_layout(&self) -> HostArray {
        self.to_contiguous(CopyPolicy::IfNeeded)
            .expect("IfNeeded never refuses a host copy")
    }

    /// The [`Error::NeedsCopy`] this array would raise for `reason`.
    pub fn needs_copy(&self, reason: CopyReason) -> Error {
        Error::NeedsCopy {
            reason,
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            dtype: self.dtype,
        }
    }

    fn copy_contiguous(&self, reason: CopyReason) -> Result<HostArray> {
        let mut out = match (self.dtype, self.dtype.size_in_bytes()) {
            // bool is copied as bytes: validity is checked on typed access, not on copy.
            (DType::Bool, _) | (DType::Raw(_), Some(1)) => self.bytes_as::<u8>(reason),
            (DType::Raw(_), Some(size)) => self.raw_copy(size, reason),
            (DType::Raw(_), None) => {
                // Packed sub-byte data is always compact (from_raw_parts contract): copy bytes.
                let bytes = self
                    .as_bytes()
                    .expect("sub-byte arrays are row-major")
                    .to_vec();
                let record = record_copy(bytes.len() as u64, reason);
                let mut a = HostArray::from_vec(vec![bytes.len()], bytes)?;
                a.dtype = self.dtype;
                a.shape = self.shape.clone();
                a.strides = layout::row_major_strides(&self.shape).expect("shape was valid");
                a.copies.push(record);
                a
            }
            (dtype, _) => dispatch_dtype!(dtype, T => {
                let (array, record) = self.gather_into_array::<T>(reason);
                HostArray::from_array(array).with_copy(record)
            }, raw => unreachable!("raw dtypes handled above")),
        };
        out.memory = MemoryKind::Cpu;
        let mut log = self.copies.clone();
        log.append(&mut out.copies);
        out.copies = log;
        Ok(out)
    }

    /// Copies a one-byte-element array into an owned `u8` buffer and re-tags it.
    fn bytes_as<B: Element>(&self, reason: CopyReason) -> HostArray {
        let (array, record) = self.retagged::<B>().gather_into_array::<B>(reason);
        let mut out = HostArray::from_array(array).with_copy(record);
        out.dtype = self.dtype;
        out
    }

    /// Copies raw elements of `size` bytes through the byte kernel into a `u8` buffer.
    fn raw_copy(&self, size: usize, reason: CopyReason) -> HostArray {
        let n = self.len();
        let mut buf = alloc_uninit::<u8>(n * size);
        // SAFETY: the source layout is readable; `buf` has room for n elements of `size` bytes.
        unsafe {
            gather(
                self.data.as_ptr(),
                &self.shape,
                &self.strides,
                size,
                buf.as_mut_ptr(),
            );
            buf.set_len(n * size);
        }
        let record = record_copy((n * size) as u64, reason);
        let mut out = HostArray::from_vec(vec![n * size], buf).expect("length matches");
        out.dtype = self.dtype;
        out.shape = self.shape.clone();
        out.strides = layout::row_major_strides(&self.shape).expect("shape was valid");
        out.copies.push(record);
        out
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

    /// Checks that a layout is describable for `dtype` (used by constructors and DLPack import).
    pub(crate) fn validate_layout(dtype: DType, shape: &[usize], strides: &[isize]) -> Result<()> {
        check_layout(dtype, shape, strides)
    }
}

fn check_layout(dtype: DType, shape: &[usize], strides: &[isize]) -> Result<()> {
    let bits = dtype.desc().total_bits();
    if shape.len() != strides.len() || shape.len() > MAX_NDIM {
        return Err(Error::UnsupportedLayout {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            dtype,
            reason: "shape and strides must have the same length, at most 64",
        });
    }
    if bits == 0 {
        return Err(Error::UnsupportedLayout {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            dtype,
            reason: "elements of zero bits",
        });
    }
    element_count(shape).ok_or_else(|| layout::overflow(shape, strides, bits))?;
    offset_range(shape, strides).map_err(|_| layout::overflow(shape, strides, bits))?;
    if dtype.size_in_bytes().is_none() && !is_row_major(shape, strides) {
        return Err(Error::UnsupportedLayout {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            dtype,
            reason: "packed sub-byte elements must be row-major; unpack them in their framework first",
        });
    }
    let size = dtype.size_in_bytes().unwrap_or(1) as i128;
    if let Some((lo, hi)) = offset_range(shape, strides)?
        && (hi as i128 - lo as i128 + 1) * size > isize::MAX as i128
    {
        return Err(layout::overflow(shape, strides, bits));
    }
    Ok(())
}
