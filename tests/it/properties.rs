//! Property tests: random strided layouts against plain indexing, DLPack round trips, and random
//! (hostile) DLPack metadata that must give Ok or a typed error, never a panic, and always one
//! deleter call.

use ferry::{CopyPolicy, HostArray, MemoryKind, RawParts};
use ferry_tests::fixtures::{Layout, reference_values};
use ferry_tests::producer::{Producer, Spec};
use proptest::prelude::*;

/// A random view of a row-major buffer: permuted axes, steps, flips and offsets.
fn layout_strategy() -> impl Strategy<Value = Layout> {
    prop::collection::vec((1usize..5, 1isize..3, any::<bool>()), 0..5)
        .prop_flat_map(|axes| {
            let n = axes.len();
            (
                Just(axes),
                Just(n).prop_perturb(|n, mut rng| {
                    let mut perm: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        perm.swap(i, rng.random_range(0..=i));
                    }
                    perm
                }),
                prop::collection::vec(any::<bool>(), n),
            )
        })
        .prop_map(|(axes, perm, broadcast)| {
            // Backing buffer is row-major over the "full" lengths (len * step).
            let full: Vec<usize> = axes
                .iter()
                .map(|&(len, step, _)| len * step as usize)
                .collect();
            let mut buf_strides = vec![1isize; full.len()];
            for i in (0..full.len().saturating_sub(1)).rev() {
                buf_strides[i] = buf_strides[i + 1] * full[i + 1] as isize;
            }
            let buffer_len: usize = full.iter().product::<usize>().max(1);
            let mut offset = 0isize;
            let mut shape = Vec::new();
            let mut strides = Vec::new();
            for (i, &(len, step, flip)) in axes.iter().enumerate() {
                let mut s = buf_strides[i] * step;
                if broadcast[i] && len > 1 && i % 2 == 1 {
                    s = 0;
                } else if flip {
                    offset += s * (len as isize - 1);
                    s = -s;
                }
                shape.push(len);
                strides.push(s);
            }
            let shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let strides: Vec<isize> = perm.iter().map(|&p| strides[p]).collect();
            Layout {
                name: "random",
                buffer_len,
                offset: offset as usize,
                shape,
                strides,
            }
        })
}

fn array_over(buffer: &[f64], layout: &Layout) -> HostArray {
    let owner = ferry::dlpack::owner(buffer.to_vec());
    let base = owner.downcast_ref::<Vec<f64>>().unwrap().as_ptr();
    let parts = RawParts {
        data: base.wrapping_add(layout.offset).cast(),
        dtype: ferry::DType::F64,
        shape: layout.shape.clone(),
        strides: layout.strides.clone(),
        memory: MemoryKind::Cpu,
        access: ferry::Access::ReadOnly,
    };
    // SAFETY: the strategy keeps every layout inside its buffer.
    unsafe { HostArray::from_raw_parts(parts, owner) }.unwrap()
}

/// Cases for the hostile-metadata fuzzer: `FERRY_FUZZ_CASES` (set by `cargo xtask fuzz`), else
/// a quick default for ordinary test runs.
fn fuzz_cases() -> u32 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_layouts_match_plain_indexing(layout in layout_strategy()) {
        let buffer: Vec<f64> = (0..layout.buffer_len).map(|i| i as f64).collect();
        let a = array_over(&buffer, &layout);
        let expected = reference_values(&buffer, &layout);
        let view = a.view::<f64>().unwrap();
        prop_assert_eq!(view.iter().copied().collect::<Vec<_>>(), expected.clone());
        let c = a.to_contiguous(CopyPolicy::IfNeeded).unwrap();
        prop_assert!(c.is_standard_layout());
        prop_assert_eq!(c.view::<f64>().unwrap().iter().copied().collect::<Vec<_>>(), expected.clone());
        let back = a.to_dlpack_legacy().into_host().unwrap();
        prop_assert_eq!(back.view::<f64>().unwrap(), view);
        let raw = a.to_dlpack().into_raw();
        // SAFETY: a pointer ferry just exported.
        let again = unsafe { ferry::DlpackTensor::from_raw(raw) }.unwrap().into_host().unwrap();
        prop_assert_eq!(again.as_ptr(), a.as_ptr());
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_metadata_never_panics_and_always_releases(
        version in (0u32..3, 0u32..5),
        ndim in prop_oneof![Just(-1i32), 0i32..6, Just(65), Just(i32::MAX)],
        shape in prop::collection::vec(prop_oneof![-2i64..6, Just(i64::MAX), Just(i64::MIN), any::<i64>()], 0..7),
        strides in prop::option::weighted(0.9, prop::collection::vec(prop_oneof![-30i64..30, any::<i64>()], 0..7)),
        dtype in (0u8..20, prop_oneof![Just(0u8), Just(4), Just(8), Just(16), Just(32), Just(64), any::<u8>()], prop_oneof![Just(1u16), any::<u16>()]),
        device in (prop_oneof![1u32..20, any::<u32>()], -2i32..3),
        flags in 0u64..8,
        byte_offset in prop_oneof![0u64..64, any::<u64>()],
        null_data in prop::bool::weighted(0.1),
        legacy in any::<bool>(),
    ) {
        // ndim must not claim more entries than the arrays hold (that would be the producer
        // lying about its own memory, which no consumer can detect).
        let ndim = if (0..=6).contains(&ndim) { ndim.min(shape.len() as i32).min(strides.as_ref().map_or(6, |s| s.len() as i32)) } else { ndim };
        let spec = Spec { version, ndim, shape: Some(shape), strides, dtype, device, flags, byte_offset, null_data };
        let p = Producer::default();
        let buffer = vec![0u8; 4096];
        // SAFETY: fresh pointers from the test producer; shape/strides hold at least `ndim`
        // entries whenever ndim is in range, as the contract requires.
        let result = unsafe {
            if legacy { HostArray::from_dlpack_legacy(p.legacy(&spec, buffer)) } else { HostArray::from_dlpack_versioned(p.versioned(&spec, buffer)) }
        };
        match result {
            Ok(a) => {
                // Only metadata is inspected: random strides may reach past the 4 KiB buffer,
                // which is the producer's promise to keep, not something a consumer can check.
                prop_assert!(a.len() <= isize::MAX as usize);
                prop_assert_eq!(a.ndim(), ndim as usize);
                drop(a);
            }
            // Refused metadata is one of the typed DLPack errors, never something else.
            Err(e) => prop_assert!(
                matches!(
                    e,
                    ferry::Error::InvalidDlpack { .. }
                        | ferry::Error::LayoutOverflow { .. }
                        | ferry::Error::UnsupportedDlpackVersion { .. }
                        | ferry::Error::UnsupportedLayout { .. }
                        | ferry::Error::NotHostMemory { .. }
                ),
                "unexpected error kind: {e:?}"
            ),
        }
        prop_assert_eq!(p.deleted(), 1);
    }
}

/// A valid `.npy` file and a valid safetensors file to mutate.
#[cfg(feature = "files")]
fn valid_files() -> (Vec<u8>, Vec<u8>) {
    let a = HostArray::from_vec(vec![3, 5], (0..15).map(|i| i as f32).collect()).unwrap();
    let b = HostArray::from_vec(vec![4], vec![1u8, 2, 3, 4]).unwrap();
    let mut npy = Vec::new();
    ferry::npy::write(&mut npy, &a).unwrap();
    let st = ferry::safetensors::to_bytes([("a", &a), ("b", &b)], None).unwrap();
    (npy, st)
}

#[cfg(feature = "files")]
proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mutated and truncated `.npy` and safetensors files (headers included) read as arrays or
    /// as typed errors, never a panic or an allocation the file does not back.
    #[test]
    fn hostile_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        header_text in "[ -~]{0,80}",
    ) {
        let (npy, st) = valid_files();
        for original in [npy, st] {
            let mut bytes = original.clone();
            for (at, value) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            let cut = cut.index(bytes.len() + 1);
            for input in [&bytes[..], &bytes[..cut]] {
                let read = ferry::npy::read(input);
                let parsed = ferry::safetensors::from_bytes(input);
                for array in read.iter().chain(parsed.iter().flat_map(|f| f.tensors.iter().map(|(_, a)| a))) {
                    // Whatever was accepted is fully readable: every byte is read (and summed, so
                    // the reads are not optimised away).
                    let standard = array.as_standard_layout().unwrap();
                    let bytes = standard.as_bytes().unwrap();
                    prop_assert_eq!(bytes.len(), array.nbytes());
                    let sum = bytes.iter().fold(0u64, |acc, &b| acc.wrapping_add(u64::from(b)));
                    std::hint::black_box(sum);
                }
            }
        }
        // A syntactically arbitrary header dictionary.
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(header_text.len() as u16).to_le_bytes());
        file.extend_from_slice(header_text.as_bytes());
        prop_assert!(ferry::npy::read(&file[..]).is_err() || header_text.contains("descr"));
    }
}
