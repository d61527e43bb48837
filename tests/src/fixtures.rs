//! Test layouts (contiguous, transposed, sliced with offset, negative stride, broadcast, 0-d,
//! empty, size-1 axes with odd strides) over a buffer, and the plain-indexing reference.

use ferry::{DType, Element, HostArray, MemoryKind, RawParts, half, num_complex};

/// One strided layout over a buffer of `buffer_len` elements, starting at element `offset`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// What the layout exercises.
    pub name: &'static str,
    /// Elements in the backing buffer.
    pub buffer_len: usize,
    /// Index of element `[0, .., 0]` in the buffer.
    pub offset: usize,
    /// Axis lengths.
    pub shape: Vec<usize>,
    /// Axis steps in elements.
    pub strides: Vec<isize>,
}

/// Every layout the conformance suite runs.
pub fn layouts() -> Vec<Layout> {
    let l = |name, buffer_len, offset, shape: &[usize], strides: &[isize]| Layout {
        name,
        buffer_len,
        offset,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
    };
    vec![
        l("contiguous", 15, 0, &[3, 5], &[5, 1]),
        l("transposed", 15, 0, &[5, 3], &[1, 5]),
        l("sliced with offset", 30, 7, &[3, 4], &[6, 1]),
        l("negative stride (flip)", 15, 10, &[3, 5], &[-5, 1]),
        l("both axes flipped", 15, 14, &[3, 5], &[-5, -1]),
        l("broadcast (zero stride)", 5, 0, &[4, 5], &[0, 1]),
        l("0-d", 3, 2, &[], &[]),
        l("empty", 0, 0, &[0, 3], &[3, 1]),
        l(
            "size-1 axes with odd strides",
            6,
            1,
            &[1, 3, 1],
            &[99, 2, -7],
        ),
        l("3-d permuted", 60, 0, &[5, 3, 4], &[1, 20, 5]),
        l("step 2 slice", 20, 1, &[5, 2], &[4, 2]),
    ]
}

/// Flat buffer positions of every element of `layout` in row-major logical order.
pub fn reference_positions(layout: &Layout) -> Vec<usize> {
    let n: usize = layout.shape.iter().product();
    (0..n)
        .map(|flat| {
            let mut rem = flat;
            let mut pos = layout.offset as isize;
            for axis in (0..layout.shape.len()).rev() {
                pos += (rem % layout.shape[axis]) as isize * layout.strides[axis];
                rem /= layout.shape[axis];
            }
            pos as usize
        })
        .collect()
}

/// A distinct, exactly representable value per index for every element type.
pub trait Sample: Element {
    /// The value stored at buffer position `i`.
    fn sample(i: usize) -> Self;
}

macro_rules! sample_int {
    ($($t:ty),*) => {$( impl Sample for $t { fn sample(i: usize) -> Self { (i % 100) as $t + 1 } } )*};
}
sample_int!(u8, u16, u32, u64, i8, i16, i32, i64);
impl Sample for f32 {
    fn sample(i: usize) -> Self {
        i as f32 * 0.5 - 3.0
    }
}
impl Sample for f64 {
    fn sample(i: usize) -> Self {
        i as f64 * 0.25 - 7.0
    }
}
impl Sample for half::f16 {
    fn sample(i: usize) -> Self {
        half::f16::from_f32(i as f32 * 0.5)
    }
}
impl Sample for half::bf16 {
    fn sample(i: usize) -> Self {
        half::bf16::from_f32(i as f32 - 4.0)
    }
}
impl Sample for bool {
    fn sample(i: usize) -> Self {
        i.is_multiple_of(3)
    }
}
impl Sample for num_complex::Complex32 {
    fn sample(i: usize) -> Self {
        num_complex::Complex32::new(i as f32, -(i as f32) * 2.0)
    }
}
impl Sample for num_complex::Complex64 {
    fn sample(i: usize) -> Self {
        num_complex::Complex64::new(i as f64 * 0.5, 1.0 / (i as f64 + 1.0))
    }
}

/// A buffer of samples and a `HostArray` describing `layout` over it (the buffer is the owner).
pub fn strided_array<T: Sample>(layout: &Layout) -> (Vec<T>, HostArray) {
    let buffer: Vec<T> = (0..layout.buffer_len).map(T::sample).collect();
    let mut own = buffer.clone();
    let base = own.as_mut_ptr();
    let owner = ferry::dlpack::owner(own);
    let data = if layout.buffer_len == 0 {
        std::ptr::null()
    } else {
        base.wrapping_add(layout.offset).cast::<u8>().cast_const()
    };
    let parts = RawParts {
        data,
        dtype: T::DTYPE,
        shape: layout.shape.clone(),
        strides: layout.strides.clone(),
        memory: MemoryKind::Cpu,
        access: ferry::Access::Exclusive,
    };
    // SAFETY: every layout in `layouts()` stays inside its buffer, which `owner` keeps alive and
    // nobody else reaches (moving the Vec does not move its heap buffer); `base` comes from
    // `as_mut_ptr`.
    let array =
        unsafe { HostArray::from_raw_parts(parts, owner) }.expect("fixture layouts are valid");
    (buffer, array)
}

/// The values of `layout` over `buffer`, by plain indexing, in row-major order.
pub fn reference_values<T: Copy>(buffer: &[T], layout: &Layout) -> Vec<T> {
    reference_positions(layout)
        .into_iter()
        .map(|p| buffer[p])
        .collect()
}

/// Calls `$body` once per typed dtype with `$T` bound to its element type (which implements
/// [`Sample`]).
#[macro_export]
macro_rules! for_each_dtype {
    ($T:ident => $body:block) => {{
        {
            type $T = bool;
            $body
        }
        {
            type $T = u8;
            $body
        }
        {
            type $T = u16;
            $body
        }
        {
            type $T = u32;
            $body
        }
        {
            type $T = u64;
            $body
        }
        {
            type $T = i8;
            $body
        }
        {
            type $T = i16;
            $body
        }
        {
            type $T = i32;
            $body
        }
        {
            type $T = i64;
            $body
        }
        {
            type $T = ferry::half::f16;
            $body
        }
        {
            type $T = ferry::half::bf16;
            $body
        }
        {
            type $T = f32;
            $body
        }
        {
            type $T = f64;
            $body
        }
        {
            type $T = ferry::num_complex::Complex32;
            $body
        }
        {
            type $T = ferry::num_complex::Complex64;
            $body
        }
    }};
}

/// The dtypes `for_each_dtype!` covers, to check that it misses none.
pub fn all_typed() -> &'static [DType] {
    &DType::TYPED
}
