//! safetensors files for [`HostArray`] (the `safetensors` crate's format, as Hugging Face tools
//! and `safetensors` for Python read and write it): named arrays plus string metadata, every
//! dtype the format has (fp8/fp6/fp4 travel as ferry's raw dtypes), and zero-copy reads: the
//! arrays are views into one buffer (or one memory map) of the whole file.
//!
//! ```
//! # fn main() -> ferry_core::Result<()> {
//! use ferry_core::HostArray;
//! use ferry_io::safetensors;
//!
//! let w = HostArray::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.])?;
//! let bytes = safetensors::to_bytes([("weight", &w)], None)?;
//! let file = safetensors::from_bytes(&bytes)?;
//! assert_eq!(file.get("weight").unwrap().view::<f32>()?, w.view::<f32>()?);
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use ::safetensors::tensor::{Dtype, SafeTensors, View};

use ferry_core::{Access, DType, Error, HostArray, Owner, Result, raw_dtypes};

use crate::stored::{self, Order};

/// The arrays and metadata of one safetensors file.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    /// The arrays, sorted by name.
    pub tensors: Vec<(String, HostArray)>,
    /// The file's `__metadata__` strings.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The array called `name`.
    pub fn get(&self, name: &str) -> Option<&HostArray> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, array)| array)
    }
}

/// The safetensors dtype for `dtype`, or why the format cannot hold it.
fn format_dtype(dtype: DType) -> Result<Dtype> {
    let raw = |desc| DType::Raw(desc) == dtype;
    Ok(match dtype {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::U16 => Dtype::U16,
        DType::I16 => Dtype::I16,
        DType::U32 => Dtype::U32,
        DType::I32 => Dtype::I32,
        DType::U64 => Dtype::U64,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::C64 => Dtype::C64,
        _ if raw(raw_dtypes::FLOAT8_E5M2) => Dtype::F8_E5M2,
        _ if raw(raw_dtypes::FLOAT8_E4M3FN) => Dtype::F8_E4M3,
        _ if raw(raw_dtypes::FLOAT8_E8M0FNU) => Dtype::F8_E8M0,
        _ if raw(raw_dtypes::FLOAT8_E4M3FNUZ) => Dtype::F8_E4M3FNUZ,
        _ if raw(raw_dtypes::FLOAT8_E5M2FNUZ) => Dtype::F8_E5M2FNUZ,
        _ if raw(raw_dtypes::FLOAT6_E2M3FN) => Dtype::F6_E2M3,
        _ if raw(raw_dtypes::FLOAT6_E3M2FN) => Dtype::F6_E3M2,
        _ if raw(raw_dtypes::FLOAT4_E2M1FN) => Dtype::F4,
        other => {
            return Err(Error::UnsupportedDtype {
                backend: "safetensors",
                dtype: other,
                hint: "the format has no such dtype (complex128 included); cast it first or save it with ferry's npy module".into(),
            });
        }
    })
}

/// The ferry dtype for a safetensors dtype.
fn ferry_dtype(dtype: Dtype) -> Result<DType> {
    Ok(match dtype {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::U16 => DType::U16,
        Dtype::I16 => DType::I16,
        Dtype::U32 => DType::U32,
        Dtype::I32 => DType::I32,
        Dtype::U64 => DType::U64,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::C64 => DType::C64,
        Dtype::F8_E5M2 => DType::Raw(raw_dtypes::FLOAT8_E5M2),
        Dtype::F8_E4M3 => DType::Raw(raw_dtypes::FLOAT8_E4M3FN),
        Dtype::F8_E8M0 => DType::Raw(raw_dtypes::FLOAT8_E8M0FNU),
        Dtype::F8_E4M3FNUZ => DType::Raw(raw_dtypes::FLOAT8_E4M3FNUZ),
        Dtype::F8_E5M2FNUZ => DType::Raw(raw_dtypes::FLOAT8_E5M2FNUZ),
        Dtype::F6_E2M3 => DType::Raw(raw_dtypes::FLOAT6_E2M3FN),
        Dtype::F6_E3M2 => DType::Raw(raw_dtypes::FLOAT6_E3M2FN),
        Dtype::F4 => DType::Raw(raw_dtypes::FLOAT4_E2M1FN),
        other => {
            return Err(Error::invalid_file(
                "safetensors",
                format!("dtype {other} is not one ferry knows"),
            ));
        }
    })
}

/// One array ready to be written: its format dtype and its row-major bytes.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    array: HostArray,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.array.as_bytes().expect("entries are row-major"))
    }

    fn data_len(&self) -> usize {
        self.array.nbytes()
    }
}

fn entries<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a HostArray)>,
) -> Result<Vec<(String, Entry)>> {
    tensors
        .into_iter()
        .map(|(name, array)| {
            let stored = array.as_standard_layout()?;
            let stored = if stored.dtype() == DType::Bool {
                // A file holds valid bools only. The bytes written are a private copy, checked
                // after it was made: memory someone else may be writing cannot change between
                // the check and the write (InvalidBool for a byte other than 0 and 1).
                let copy = stored.to_contiguous(ferry_core::CopyPolicy::Always)?;
                copy.view::<bool>()?;
                copy
            } else {
                stored
            };
            Ok((
                name.to_string(),
                Entry {
                    dtype: format_dtype(array.dtype())?,
                    shape: array.shape().to_vec(),
                    array: stored,
                },
            ))
        })
        .collect()
}

fn format_error(e: ::safetensors::SafeTensorError) -> Error {
    Error::invalid_file("safetensors", e.to_string())
}

/// The bytes of a safetensors file holding `tensors` (gathered row-major where needed) and
/// `metadata`.
pub fn to_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a HostArray)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let entries = entries(tensors)?;
    ::safetensors::serialize(entries.iter().map(|(n, e)| (n, e)), metadata).map_err(format_error)
}

/// Writes `tensors` and `metadata` to a safetensors file at `path`.
pub fn save<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a HostArray)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let entries = entries(tensors)?;
    ::safetensors::serialize_to_file(entries.iter().map(|(n, e)| (n, e)), metadata, path).map_err(
        |e| match e {
            ::safetensors::SafeTensorError::IoError(io) => Error::io("writing", path, io),
            other => format_error(other),
        },
    )
}

/// The arrays of a safetensors file whose bytes `owner` keeps alive at `bytes`: views, or
/// aligned copies of the (rare) misaligned ones.
///
/// # Safety
///
/// As for `stored::view_dense`: `data` is readable, stays valid while `owner` lives and nobody
/// else changes it; for [`Access::Exclusive`] nobody else reaches it and `data` may write.
unsafe fn parse(owner: Owner, data: *const [u8], access: Access) -> Result<TensorFile> {
    // SAFETY: readable and unchanged while `owner` lives (contract); this shared borrow is used
    // only to parse and to locate each tensor, never to build the arrays.
    let bytes: &[u8] = unsafe { &*data };
    let base = data.cast::<u8>();
    let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
    let mut tensors = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        let dtype = ferry_dtype(view.dtype())?;
        // The tensor's bytes, addressed from `base` so they keep its (write) permission.
        let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        let tensor = std::ptr::slice_from_raw_parts(base.wrapping_add(offset), view.data().len());
        // SAFETY: `tensor` lies in `data` (a sub-slice of it), whose guarantees the caller gives.
        let array = unsafe {
            stored::view_dense(
                owner.clone(),
                tensor,
                dtype,
                view.shape().to_vec(),
                Order::RowMajor,
                access,
            )
        }
        .map_err(|e| match e {
            Error::ShapeMismatch { .. } | Error::LayoutOverflow { .. } => {
                Error::invalid_file("safetensors", format!("tensor {name:?}: {e}"))
            }
            other => other,
        })?;
        tensors.push((name.to_string(), array));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(TensorFile {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// Parses a safetensors file held in memory: one aligned copy of `bytes`, then views into it.
pub fn from_bytes(bytes: &[u8]) -> Result<TensorFile> {
    let buffer = stored::read_dense(DType::U8, vec![bytes.len()], Order::RowMajor, |dst| {
        dst.copy_from_slice(bytes);
        Ok(())
    })?;
    parse_buffer(buffer)
}

/// Reads the safetensors file at `path` with one read into an aligned buffer; every array is a
/// view into that buffer (no per-tensor copies).
pub fn load(path: impl AsRef<Path>) -> Result<TensorFile> {
    let path = path.as_ref();
    let (mut file, size) = stored::open_sized(path)?;
    let size = usize::try_from(size).map_err(|_| {
        Error::invalid_file("safetensors", format!("{} is too large", path.display()))
    })?;
    let buffer = stored::read_dense(DType::U8, vec![size], Order::RowMajor, |dst| {
        use std::io::Read;
        file.read_exact(dst)
            .map_err(|e| Error::io("reading", path, e))
    })?;
    parse_buffer(buffer)
}

fn parse_buffer(buffer: HostArray) -> Result<TensorFile> {
    // `as_ptr` keeps the provenance of the buffer's `as_mut_ptr` (read_dense), so it may write.
    let data = std::ptr::slice_from_raw_parts(buffer.as_ptr(), buffer.nbytes());
    let owner = buffer.keep_alive();
    drop(buffer);
    // SAFETY: the buffer is ferry's own and Exclusive, kept alive by `owner` and referenced by
    // nobody else (`buffer` is dropped unused); the views are disjoint slices of it.
    unsafe { parse(owner, data, Access::Exclusive) }
}

/// Maps the safetensors file at `path`: every array is a read-only view of the file's pages,
/// nothing is copied or read until touched.
///
/// # Safety
///
/// Nobody may modify or truncate the file while any returned array (or a clone or export of
/// one) is alive.
pub unsafe fn map(path: impl AsRef<Path>) -> Result<TensorFile> {
    // SAFETY: forwarded contract.
    let map = unsafe { stored::map_file(path.as_ref()) }?;
    let bytes: *const [u8] = &map[..];
    // SAFETY: `bytes` is the map, which `owner` keeps alive and the caller keeps unchanged;
    // the arrays are read-only.
    unsafe { parse(map, bytes, Access::ReadOnly) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_dtype_but_complex128_round_trips() {
        for dtype in DType::TYPED {
            let a = HostArray::from_bytes(
                vec![3],
                dtype,
                &vec![1u8; 3 * dtype.size_in_bytes().unwrap()],
            )
            .unwrap();
            match to_bytes([("a", &a)], None) {
                Ok(bytes) => {
                    let back = from_bytes(&bytes).unwrap();
                    let b = back.get("a").unwrap();
                    assert_eq!(b.dtype(), dtype);
                    assert_eq!(b.as_bytes(), a.as_bytes());
                }
                Err(e) => {
                    assert_eq!(dtype, DType::C128);
                    assert!(matches!(e, Error::UnsupportedDtype { .. }));
                }
            }
        }
    }
}
