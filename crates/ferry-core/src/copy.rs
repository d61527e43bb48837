//! Copies: the copy policy, copy accounting, and the kernels that gather any strided layout
//! into a fresh row-major buffer (memcpy for contiguous runs, an AVX 16×16 kernel for 4-byte
//! transposes with streaming stores for large destinations, cache-blocked tiles otherwise, two
//! threads for large arrays, huge-page-backed destinations).

use std::cell::Cell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::layout::{row_major_strides, simplify};

/// When a conversion may copy, mirroring the Array API `copy=` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CopyPolicy {
    /// Never copy; a conversion that needs one fails with [`Error::NeedsCopy`](crate::Error::NeedsCopy)
    /// (`copy=False`).
    Never,
    /// Copy only when the result cannot share memory with the source (`copy=None`).
    #[default]
    IfNeeded,
    /// Always copy, even when sharing would work (`copy=True`).
    Always,
}

/// Why ferry copied (or would have to copy) data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CopyReason {
    /// Memory moved between a device and the host.
    DeviceTransfer,
    /// The layout had to become row-major.
    NonContiguous,
    /// The dtype changed (an explicit cast).
    Cast,
    /// The caller asked for a copy ([`CopyPolicy::Always`]).
    Forced,
    /// The data pointer was not aligned for the element type.
    Misaligned,
    /// The target framework cannot wrap foreign memory, so the data was copied into its storage.
    FrameworkStorage,
    /// The elements were re-encoded for a format that stores them differently (Arrow's
    /// bit-packed booleans).
    Repacked,
    /// The source's owner may still write or free the memory, and it cannot be shared
    /// copy-on-write (memory the framework did not allocate itself, or a storage other handles
    /// reach too), so the view is a copy: a view of memory someone else can write is a
    /// snapshot.
    Snapshot,
    /// Chunks of one column (the batches of a stream) were joined into one array.
    Concatenated,
}

impl fmt::Display for CopyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CopyReason::DeviceTransfer => "device transfer",
            CopyReason::NonContiguous => "non-contiguous layout",
            CopyReason::Cast => "dtype cast",
            CopyReason::Forced => "copy forced by policy",
            CopyReason::Misaligned => "misaligned data",
            CopyReason::FrameworkStorage => "framework cannot wrap foreign memory",
            CopyReason::Repacked => "re-encoded for the target format (bit-packed booleans)",
            CopyReason::Concatenated => "chunks joined into one array",
            CopyReason::Snapshot => {
                "a snapshot of memory its owner may still write, which cannot be shared copy-on-write"
            }
        })
    }
}

/// One copy ferry made: how many bytes and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CopyRecord {
    /// Bytes written.
    pub bytes: u64,
    /// Why.
    pub reason: CopyReason,
}

/// Copies ferry made on one thread, as counted by [`copy_totals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CopyTotals {
    /// Number of copies.
    pub copies: u64,
    /// Bytes written by them.
    pub bytes: u64,
}

impl CopyTotals {
    /// What was copied between `earlier` and `self`.
    pub fn since(self, earlier: CopyTotals) -> CopyTotals {
        CopyTotals {
            copies: self.copies - earlier.copies,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

thread_local! {
    static LEDGER: Cell<CopyTotals> = const { Cell::new(CopyTotals { copies: 0, bytes: 0 }) };
}

/// Every copy ferry (core and adapters) has made on the calling thread so far.
///
/// Take a snapshot before a conversion and compare after it to prove it made no copy:
/// ```
/// let before = ferry_core::copy_totals();
/// let a = ferry_core::HostArray::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
/// let _view = a.view::<f32>().unwrap();
/// assert_eq!(ferry_core::copy_totals().since(before).copies, 0);
/// ```
pub fn copy_totals() -> CopyTotals {
    LEDGER.with(Cell::get)
}

/// Counts a copy in the calling thread's ledger and returns its record. Adapters call this for
/// every copy they make (device transfers, framework storage).
pub fn record_copy(bytes: u64, reason: CopyReason) -> CopyRecord {
    LEDGER.with(|l| {
        let t = l.get();
        l.set(CopyTotals {
            copies: t.copies + 1,
            bytes: t.bytes + bytes,
        });
    });
    CopyRecord { bytes, reason }
}

/// Bytes above which a copy is split over threads (a spawn costs tens of microseconds).
const PARALLEL_MIN_BYTES: usize = 4 << 20;
/// Bytes one call of the 4-byte transpose must write before it uses non-temporal (streaming)
/// stores, which skip reading each destination line before overwriting it and leave the cache
/// to the source. A quarter of the last-level cache of the machine measured (AMD EPYC, 32 MiB
/// L3, fresh huge-page destination), per call: a 64 MiB matrix on two threads (32 MiB a call)
/// is 1.45× faster streaming, 16 MiB (8 MiB a call) 1.2× faster, 8 MiB (4 MiB) even, 4 MiB
/// 1.4× slower; NCHW → NHWC of 64×256×32×32 (64 calls of 1 MiB) is 1.4× slower on one thread.
const STREAMING_MIN_BYTES: usize = 8 << 20;
/// Bytes above which a fresh destination asks the kernel for transparent huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// The cap [`set_copy_threads`] set (0: none).
static THREAD_CAP: AtomicUsize = AtomicUsize::new(0);

/// Caps the threads one large copy is split over (1: single-threaded; 0: back to the default,
/// every available core up to 8, or `FERRY_THREADS` when set). For measuring one core, or
/// leaving cores to other work.
pub fn set_copy_threads(threads: usize) {
    THREAD_CAP.store(threads, Ordering::Relaxed);
}

fn worker_threads() -> usize {
    match THREAD_CAP.load(Ordering::Relaxed) {
        0 => default_threads(),
        cap => cap.min(default_threads()),
    }
}

fn default_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        // FERRY_THREADS caps the copy threads (1 = single-threaded), e.g. to measure one core.
        let cap = std::env::var("FERRY_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8)
            .max(1);
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(cap)
    })
}

/// A `Vec<T>` with room for `n` elements and length 0, whose pages the kernel is asked to back
/// with transparent huge pages when large (a fresh buffer is otherwise page-fault bound). An
/// allocation that fails is an error, not an abort.
pub(crate) fn try_alloc_uninit<T>(n: usize) -> Result<Vec<T>, std::collections::TryReserveError> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n)?;
    let bytes = n.saturating_mul(size_of::<T>());
    if cfg!(target_os = "linux") && bytes >= HUGE_PAGE_MIN_BYTES {
        let start = v.as_ptr() as usize;
        let lo = start.next_multiple_of(HUGE_PAGE);
        let hi = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
        if hi > lo {
            // SAFETY: [lo, hi) lies inside the allocation just made; MADV_HUGEPAGE only changes
            // how pages are backed, never their contents, and a failure leaves memory as it was.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
    Ok(v)
}

/// A raw address that may cross into a scoped worker thread.
#[derive(Clone, Copy)]
struct Addr(usize);

/// Gathers the elements of a strided layout into `dst` in row-major order.
///
/// # Safety
///
/// - `src` points at the element of index `[0, .., 0]`, and every element reachable from it
///   through `shape` and `strides` (in elements of `elem_size` bytes) is readable.
/// - `dst` is valid for writes of `product(shape) * elem_size` bytes and does not overlap the
///   source elements.
pub(crate) unsafe fn gather(
    src: *const u8,
    shape: &[usize],
    strides: &[isize],
    elem_size: usize,
    dst: *mut u8,
) {
    let s = simplify(shape, strides);
    let n: usize = s.shape.iter().product();
    if n == 0 || shape.contains(&0) {
        return;
    }
    let bytes = n * elem_size;
    let threads = worker_threads().min(bytes / PARALLEL_MIN_BYTES * 2).max(1);
    if threads < 2 || s.shape.is_empty() || s.shape[0] < 2 {
        // SAFETY: forwarded contract.
        unsafe { gather_serial(src, &s.shape, &s.strides, elem_size, dst) };
        return;
    }
    let dst_stride0 = s.shape[1..].iter().product::<usize>() * elem_size;
    let len0 = s.shape[0];
    let chunk = len0.div_ceil(threads);
    let (src_addr, dst_addr) = (Addr(src as usize), Addr(dst as usize));
    std::thread::scope(|scope| {
        for start in (0..len0).step_by(chunk) {
            let end = (start + chunk).min(len0);
            let mut sub_shape = s.shape.clone();
            sub_shape[0] = end - start;
            let strides = &s.strides;
            scope.spawn(move || {
                let src = src_addr.0 as *const u8;
                let dst = dst_addr.0 as *mut u8;
                // SAFETY: each worker reads a disjoint range of axis 0 of the source (still inside
                // the caller's readable elements) and writes the matching disjoint rows of `dst`.
                unsafe {
                    let sub_src = src.offset(start as isize * strides[0] * elem_size as isize);
                    let sub_dst = dst.add(start * dst_stride0);
                    gather_serial(sub_src, &sub_shape, strides, elem_size, sub_dst);
                }
            });
        }
    });
}

/// # Safety
/// As [`gather`]; `shape` has no zero-length axis.
unsafe fn gather_serial(
    src: *const u8,
    shape: &[usize],
    strides: &[isize],
    elem_size: usize,
    dst: *mut u8,
) {
    // SAFETY: forwarded contract (all arms); each typed kernel reads and writes unaligned.
    unsafe {
        match elem_size {
            1 => gather_typed::<u8>(src, shape, strides, dst),
            2 => gather_typed::<u16>(src, shape, strides, dst),
            4 => gather_typed::<u32>(src, shape, strides, dst),
            8 => gather_typed::<u64>(src, shape, strides, dst),
            16 => gather_typed::<[u64; 2]>(src, shape, strides, dst),
            _ => gather_bytes(src, shape, strides, elem_size, dst),
        }
    }
}

/// Calls `f(src_offset, dst_offset)` (in elements) for every multi-index over `axes`, each axis
/// given as (length, source stride, destination stride).
fn for_each_outer(axes: &[(usize, isize, isize)], mut f: impl FnMut(isize, isize)) {
    let mut index = vec![0usize; axes.len()];
    let (mut s, mut d) = (0isize, 0isize);
    loop {
        f(s, d);
        let mut axis = axes.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            let (len, ss, ds) = axes[axis];
            index[axis] += 1;
            s += ss;
            d += ds;
            if index[axis] < len {
                break;
            }
            s -= ss * len as isize;
            d -= ds * len as isize;
            index[axis] = 0;
        }
    }
}

/// Tile edge of the generic blocked transpose (every element size; the 4-byte one with a source
/// contiguous along the tiled axis takes `avx_transpose` where the CPU has AVX). Tiles go
/// through a buffer (64 KiB for 4-byte elements,
/// L2-resident at worst), so the cache-set conflicts that make large power-of-two tiles slow for
/// a direct strided copy do not apply; measured on 64 MiB f32: 32 → 0.28×, 64 → 0.41×,
/// 128 → 0.43× memcpy with two threads.
const TILE: usize = 128;

/// # Safety
/// As [`gather`], with `elem_size == size_of::<T>()` and no zero-length axis.
unsafe fn gather_typed<T: Copy>(src: *const u8, shape: &[usize], strides: &[isize], dst: *mut u8) {
    let src = src.cast::<T>();
    let dst = dst.cast::<T>();
    let ndim = shape.len();
    if ndim == 0 {
        // SAFETY: one element is readable at `src` and writable at `dst`.
        unsafe { dst.write_unaligned(src.read_unaligned()) };
        return;
    }
    let dst_strides = row_major_strides(shape).expect("element count was bounded by the caller");
    let last = ndim - 1;
    let (n_last, s_last) = (shape[last], strides[last]);
    // The non-last axis whose source stride is smallest: tiling it against the last axis keeps
    // both reads and writes within a few cache lines per tile.
    let tile_axis = (0..last)
        .min_by_key(|&a| strides[a].unsigned_abs())
        .filter(|&a| s_last != 1 && strides[a].unsigned_abs() < s_last.unsigned_abs());
    match tile_axis {
        None if s_last == 1 => {
            let outer: Vec<_> = (0..last)
                .map(|a| (shape[a], strides[a], dst_strides[a]))
                .collect();
            for_each_outer(&outer, |so, d| {
                // SAFETY: a contiguous run of `n_last` readable source elements and writable,
                // non-overlapping destination elements.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.offset(so).cast::<u8>(),
                        dst.offset(d).cast::<u8>(),
                        n_last * size_of::<T>(),
                    )
                };
            });
        }
        None => {
            let outer: Vec<_> = (0..last)
                .map(|a| (shape[a], strides[a], dst_strides[a]))
                .collect();
            for_each_outer(&outer, |so, d| {
                for i in 0..n_last {
                    // SAFETY: index `i` of the last axis is inside the caller's layout.
                    unsafe {
                        let v = src.offset(so + i as isize * s_last).read_unaligned();
                        dst.offset(d + i as isize).write_unaligned(v);
                    }
                }
            });
        }
        Some(k) => {
            let outer: Vec<_> = (0..last)
                .filter(|&a| a != k)
                .map(|a| (shape[a], strides[a], dst_strides[a]))
                .collect();
            let (n_k, s_k, d_k) = (shape[k], strides[k], dst_strides[k]);
            #[cfg(target_arch = "x86_64")]
            if size_of::<T>() == 4 && s_k == 1 && avx_transpose::available() {
                for_each_outer(&outer, |so, d| {
                    // SAFETY: for this outer index, element (k, l) of the source is at
                    // `so + k + l * s_last` and of the destination at `d + k * d_k + l`, for
                    // k < n_k and l < n_last: inside the caller's layout and destination.
                    unsafe {
                        avx_transpose::transpose_u32(
                            src.offset(so).cast(),
                            s_last,
                            dst.offset(d).cast(),
                            d_k,
                            n_k,
                            n_last,
                        )
                    };
                });
                return;
            }
            // Each tile goes through a small buffer that stays in L1: read along the source's
            // contiguous axis, write along the destination's, so neither side strides through
            // memory element by element.
            let mut tile = Box::<[T]>::new_uninit_slice(TILE * TILE);
            for_each_outer(&outer, |so, d| {
                // Destination column blocks outside, source-contiguous blocks inside: the source is
                // read as TILE sequential streams, the (huge-page backed) destination is written
                // TILE rows at a time.
                for lb in (0..n_last).step_by(TILE) {
                    let le = (lb + TILE).min(n_last);
                    for kb in (0..n_k).step_by(TILE) {
                        let ke = (kb + TILE).min(n_k);
                        for l in lb..le {
                            let s_col = so + l as isize * s_last;
                            let row = &mut tile[(l - lb) * TILE..(l - lb) * TILE + (ke - kb)];
                            for (i, slot) in row.iter_mut().enumerate() {
                                // SAFETY: (kb + i, l) is inside the caller's layout.
                                *slot = MaybeUninit::new(unsafe {
                                    src.offset(s_col + (kb + i) as isize * s_k).read_unaligned()
                                });
                            }
                        }
                        for kk in kb..ke {
                            let d_row = d + kk as isize * d_k;
                            for l in lb..le {
                                // SAFETY: the slot was written in the loop above (same tile
                                // bounds); (kk, l) is inside the destination.
                                unsafe {
                                    let v = tile[(l - lb) * TILE + (kk - kb)].assume_init();
                                    dst.offset(d_row + l as isize).write_unaligned(v);
                                }
                            }
                        }
                    }
                }
            });
        }
    }
}

/// The 4-byte transpose on x86-64 with AVX: 16×16 blocks as four 8×8 in-register transposes,
/// the source read along its contiguous rows (a stripe of 16 at a time), each destination
/// cache line written whole by two adjacent stores, non-temporal ones for destinations from
/// [`STREAMING_MIN_BYTES`](super::STREAMING_MIN_BYTES).
///
/// Measured on 64 MiB f32 (4096², AMD EPYC, fresh huge-page destination, a standalone harness
/// of this kernel): two threads 21.6 ms with ordinary stores, 15.0 ms streaming; one thread
/// 37.6 ms and 24.4 ms. Ordinary stores read each destination line before overwriting it
/// (and a fresh page is also zeroed first), so streaming moves a third less memory. About
/// 35 ms for the generic tile kernel below.
#[cfg(target_arch = "x86_64")]
mod avx_transpose {
    use std::arch::x86_64::{
        __m256, _mm_sfence, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps,
        _mm256_storeu_ps, _mm256_stream_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };

    /// Whether this CPU runs the kernel (checked once by the standard library's cache).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx")
    }

    /// `dst[k * d_k + l] = src[k + l * s_last]` for k < n_k, l < n_last (4-byte elements).
    ///
    /// From [`STREAMING_MIN_BYTES`](super::STREAMING_MIN_BYTES) of destination, blocks are
    /// written with non-temporal stores when every destination row starts at the same offset
    /// within a cache line (`d_k` a multiple of 16): the columns before the first line boundary
    /// are copied as an edge, so each block row fills one whole, aligned line and
    /// write-combines without the line being read first.
    ///
    /// # Safety
    ///
    /// - The CPU has AVX ([`available`]).
    /// - Every `src[k + l * s_last]` is readable and every `dst[k * d_k + l]` writable, and the
    ///   two ranges do not overlap.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_u32(
        src: *const u32,
        s_last: isize,
        dst: *mut u32,
        d_k: isize,
        n_k: usize,
        n_last: usize,
    ) {
        let (src, dst) = (src.cast::<f32>(), dst.cast::<f32>());
        let addr = dst as usize;
        let streaming = n_k.saturating_mul(n_last) >= super::STREAMING_MIN_BYTES / 4
            && d_k % 16 == 0
            && addr.is_multiple_of(4);
        // Columns before the first 64-byte boundary of row 0 (and so of every row).
        let lead = if streaming {
            ((64 - addr % 64) % 64 / 4).min(n_last)
        } else {
            0
        };
        let full_k = n_k / 16 * 16;
        let full_l = lead + (n_last - lead) / 16 * 16;
        // Source rows (fixed l) are contiguous: a stripe of 16 of them is read front to back.
        for lb in (lead..full_l).step_by(16) {
            for kb in (0..full_k).step_by(16) {
                // SAFETY: the 16×16 block at (kb, lb) lies inside both layouts (full blocks
                // only); the caller checked AVX. When streaming, its destination rows start on
                // a 64-byte boundary (`lead`, and `d_k` a multiple of 16 elements).
                unsafe {
                    let (s, d) = (
                        src.offset(kb as isize + lb as isize * s_last),
                        dst.offset(kb as isize * d_k + lb as isize),
                    );
                    if streaming {
                        block16::<true>(s, s_last, d, d_k)
                    } else {
                        block16::<false>(s, s_last, d, d_k)
                    }
                };
            }
        }
        // The edges (leading columns, rows from full_k, columns from full_l) element by element.
        let edge = |k: usize, l: usize| {
            // SAFETY: (k, l) is inside both layouts; elements may be unaligned.
            unsafe {
                let v = src
                    .offset(k as isize + l as isize * s_last)
                    .read_unaligned();
                dst.offset(k as isize * d_k + l as isize).write_unaligned(v);
            }
        };
        for l in 0..lead {
            (0..n_k).for_each(|k| edge(k, l));
        }
        for l in lead..full_l {
            (full_k..n_k).for_each(|k| edge(k, l));
        }
        for l in full_l..n_last {
            (0..n_k).for_each(|k| edge(k, l));
        }
        if streaming {
            // Non-temporal stores are weakly ordered: fence them before the caller (or the
            // thread that joins this one) reads the destination.
            _mm_sfence();
        }
    }

    /// One 16×16 block: four 8×8 transposes; destination row k receives columns 0..8 and
    /// 8..16 by two adjacent stores (non-temporal with `STREAM`).
    ///
    /// # Safety
    ///
    /// AVX; `src[k + l * s_last]` readable and `dst[k * d_k + l]` writable for k, l < 16; with
    /// `STREAM`, every `dst.offset(k * d_k)` is 32-byte aligned.
    #[target_feature(enable = "avx")]
    unsafe fn block16<const STREAM: bool>(
        src: *const f32,
        s_last: isize,
        dst: *mut f32,
        d_k: isize,
    ) {
        for kq in [0isize, 8] {
            let load = |l0: isize| -> [__m256; 8] {
                std::array::from_fn(|j| {
                    // SAFETY: row l0 + j < 16 of the source, 8 elements from column kq; AVX.
                    unsafe { _mm256_loadu_ps(src.offset(kq + (l0 + j as isize) * s_last)) }
                })
            };
            let left = transpose8(load(0));
            let right = transpose8(load(8));
            for i in 0..8 {
                // SAFETY: destination row kq + i, columns 0..16; AVX; aligned when streaming.
                unsafe {
                    let row = dst.offset((kq + i as isize) * d_k);
                    if STREAM {
                        _mm256_stream_ps(row, left[i]);
                        _mm256_stream_ps(row.add(8), right[i]);
                    } else {
                        _mm256_storeu_ps(row, left[i]);
                        _mm256_storeu_ps(row.add(8), right[i]);
                    }
                }
            }
        }
    }

    /// The 8×8 transpose of eight rows of eight lanes.
    #[target_feature(enable = "avx")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }
}

/// # Safety
/// As [`gather`], for element sizes without a typed kernel.
unsafe fn gather_bytes(
    src: *const u8,
    shape: &[usize],
    strides: &[isize],
    elem_size: usize,
    dst: *mut u8,
) {
    let dst_strides = row_major_strides(shape).expect("element count was bounded by the caller");
    let axes: Vec<_> = shape
        .iter()
        .zip(strides)
        .zip(&dst_strides)
        .map(|((&n, &s), &d)| (n, s, d))
        .collect();
    let es = elem_size as isize;
    for_each_outer(&axes, |so, d| {
        // SAFETY: one element at each of these element offsets is inside the caller's layout.
        unsafe {
            std::ptr::copy_nonoverlapping(src.offset(so * es), dst.offset(d * es), elem_size)
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(src: &[u32], shape: &[usize], strides: &[isize], base: isize) -> Vec<u32> {
        let mut out = Vec::new();
        let n: usize = shape.iter().product();
        for flat in 0..n {
            let mut rem = flat;
            let mut off = base;
            for a in (0..shape.len()).rev() {
                off += (rem % shape[a]) as isize * strides[a];
                rem /= shape[a];
            }
            out.push(src[off as usize]);
        }
        out
    }

    fn check(shape: &[usize], strides: &[isize], base: isize, len: usize) {
        let src: Vec<u32> = (0..len as u32).collect();
        let n: usize = shape.iter().product();
        let mut dst = vec![0u32; n];
        // SAFETY: the test layouts stay inside `src`, and `dst` holds n elements.
        unsafe {
            gather(
                src.as_ptr().offset(base).cast(),
                shape,
                strides,
                4,
                dst.as_mut_ptr().cast(),
            );
        }
        assert_eq!(
            dst,
            reference(&src, shape, strides, base),
            "shape {shape:?} strides {strides:?}"
        );
    }

    #[test]
    fn kernels_match_plain_indexing() {
        check(&[3, 5], &[5, 1], 0, 15);
        check(&[5, 3], &[1, 5], 0, 15);
        check(&[70, 45], &[1, 70], 0, 70 * 45);
        check(&[4, 70, 45], &[1, 4, 280], 0, 4 * 70 * 45);
        check(&[3, 5], &[-5, -1], 14, 15);
        check(&[3, 5], &[0, 1], 0, 5);
        check(&[], &[], 3, 5);
        check(&[2, 3], &[2, 0], 0, 4);
    }

    #[test]
    fn large_copies_split_over_threads() {
        let (r, c) = (1024, 1200);
        check(&[c, r], &[1, c as isize], 0, r * c);
        check(&[r * c], &[1], 0, r * c);
    }

    #[test]
    fn avx_transposes_match_at_every_alignment() {
        // The destination starting at each 4-byte offset of a 32-byte line, sides that leave
        // edges, two threads.
        let (r, c) = (1512, 1523);
        let src: Vec<u32> = (0..(r * c) as u32).collect();
        let (shape, strides) = ([c, r], [1isize, c as isize]);
        let expected = reference(&src, &shape, &strides, 0);
        for shift in 0..8 {
            let mut dst = vec![0u32; r * c + 8];
            // SAFETY: the layout stays inside `src`; `dst[shift..]` holds r * c elements.
            unsafe {
                gather(
                    src.as_ptr().cast(),
                    &shape,
                    &strides,
                    4,
                    dst.as_mut_ptr().add(shift).cast(),
                );
            }
            assert!(dst[shift..shift + r * c] == expected[..], "shift {shift}");
        }
    }

    #[test]
    fn odd_element_sizes_use_the_byte_kernel() {
        let src: Vec<u8> = (0..36).collect();
        let mut dst = vec![0u8; 36];
        // SAFETY: a 3x4 layout of 3-byte elements, transposed, inside `src`.
        unsafe { gather(src.as_ptr(), &[4, 3], &[1, 4], 3, dst.as_mut_ptr()) };
        assert_eq!(&dst[..6], &[0, 1, 2, 12, 13, 14]);
    }
}
