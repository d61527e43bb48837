//! The one error type of `ferry-core`: every refusal names what was wrong (shape, strides,
//! dtype, device) and what to do instead.

use crate::copy::CopyReason;
use crate::{DType, Device};

/// Result alias for `ferry-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when describing, viewing, copying or exchanging host arrays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A typed access asked for another element type than the array holds.
    #[error(
        "dtype {found} cannot be viewed as {wanted}; call cast::<{wanted}>() for an explicit conversion"
    )]
    DtypeMismatch {
        /// The array's dtype.
        found: DType,
        /// The dtype that was asked for.
        wanted: DType,
    },
    /// The dtype is carried as raw bytes only (fp8/fp6/fp4, vector lanes, opaque handles).
    #[error(
        "dtype {dtype} has no typed view in ferry; it is carried as raw bytes (export it over DLPack or cast it in its framework first)"
    )]
    NoTypedView {
        /// The raw dtype.
        dtype: DType,
    },
    /// A bool array holds a byte other than 0 or 1.
    #[error(
        "bool array of shape {shape:?} holds byte {value} at flat position {position}; only 0 and 1 are valid bools (view it as u8 instead)"
    )]
    InvalidBool {
        /// Shape of the array.
        shape: Vec<usize>,
        /// Position in logical (row-major) order.
        position: usize,
        /// The offending byte.
        value: u8,
    },
    /// The data pointer is not aligned for the element type.
    #[error(
        "data at address {address:#x} is not aligned to {align} bytes for {dtype}; copy it with to_contiguous(CopyPolicy::Always) first"
    )]
    Misaligned {
        /// The array's dtype.
        dtype: DType,
        /// The first element's address.
        address: usize,
        /// Alignment the element type needs.
        align: usize,
    },
    /// A copy was needed but the copy policy forbids it.
    #[error(
        "a copy is needed ({reason}) for shape {shape:?}, strides {strides:?}, dtype {dtype}, but the copy policy is Never"
    )]
    NeedsCopy {
        /// Why the copy is needed.
        reason: CopyReason,
        /// Shape of the source.
        shape: Vec<usize>,
        /// Strides of the source, in elements.
        strides: Vec<isize>,
        /// Dtype of the source.
        dtype: DType,
    },
    /// A mutable view was asked of memory that must not be written through ferry.
    #[error(
        "array of shape {shape:?} on {device} cannot be viewed mutably: {reason}; take an owned copy with to_array() instead"
    )]
    NotWritable {
        /// Why it is not writable.
        reason: &'static str,
        /// Shape of the array.
        shape: Vec<usize>,
        /// Where the memory lives.
        device: Device,
    },
    /// Memory that the CPU cannot read was handed to a host-only operation.
    #[error(
        "tensor of shape {shape:?}, dtype {dtype} lives on {device}, which the host cannot read; copy it to host through its framework adapter (built with feature `cuda` for CUDA)"
    )]
    NotHostMemory {
        /// Where the memory lives.
        device: Device,
        /// Shape of the tensor.
        shape: Vec<usize>,
        /// Dtype of the tensor.
        dtype: DType,
    },
    /// A shape and strides whose extent does not fit the address space.
    #[error(
        "shape {shape:?} with strides {strides:?} (elements of {itemsize_bits} bits) overflows the address space"
    )]
    LayoutOverflow {
        /// The shape as given.
        shape: Vec<i64>,
        /// The strides as given, in elements.
        strides: Vec<i64>,
        /// Bits per element.
        itemsize_bits: u32,
    },
    /// A framework's layout that reaches outside the storage it describes.
    #[error(
        "shape {shape:?} with strides {strides:?} from element {offset} of a {storage_bytes}-byte storage (dtype {dtype}) reaches outside that storage; the tensor's layout is corrupt, copy it in its framework first"
    )]
    OutsideStorage {
        /// The shape.
        shape: Vec<usize>,
        /// The strides, in elements.
        strides: Vec<isize>,
        /// Element offset of `[0, .., 0]` in the storage.
        offset: usize,
        /// The dtype.
        dtype: DType,
        /// Bytes in the storage.
        storage_bytes: usize,
    },
    /// A copy whose buffer could not be allocated.
    #[error(
        "cannot allocate {bytes} bytes to copy an array of shape {shape:?}, dtype {dtype}; copy a smaller slice of it"
    )]
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
        /// Shape of the array being copied.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
    },
    /// A shape that does not match the number of elements given.
    #[error("shape {shape:?} holds {expected} elements but {found} were given")]
    ShapeMismatch {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements that shape holds.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// An array of the wrong number of axes for a fixed-rank tensor type.
    #[error(
        "array of shape {shape:?} has {found} axes but {expected} were asked for; reshape it, or index or insert axes, first"
    )]
    RankMismatch {
        /// Shape of the array.
        shape: Vec<usize>,
        /// Axes asked for (a fixed-rank view or tensor type).
        expected: usize,
        /// Axes the array has.
        found: usize,
    },
    /// An array whose number of axes is not the rank a framework's fixed-rank tensor type was
    /// asked for (Burn's `Tensor<D, K>`); `hint` names the type that fits.
    #[error(
        "{backend} tensor of rank {expected} was asked for, but the array of shape {shape:?} has {found} axes; {hint}"
    )]
    TensorRank {
        /// Which framework's tensor type.
        backend: &'static str,
        /// Shape of the array.
        shape: Vec<usize>,
        /// The tensor type's rank.
        expected: usize,
        /// Axes the array has.
        found: usize,
        /// The type to ask for instead, or how to reshape.
        hint: String,
    },
    /// A layout ferry cannot describe for this dtype.
    #[error(
        "layout shape {shape:?}, strides {strides:?} is not supported for dtype {dtype}: {reason}"
    )]
    UnsupportedLayout {
        /// Shape of the array.
        shape: Vec<usize>,
        /// Strides of the array, in elements.
        strides: Vec<isize>,
        /// Dtype of the array.
        dtype: DType,
        /// What is not supported.
        reason: &'static str,
    },
    /// Arrays that cannot be joined along their first axis (chunks of one column must share
    /// their dtype and every axis but the first).
    #[error(
        "cannot join arrays along the first axis: part {index} has dtype {dtype} and shape {shape:?} but the first part has dtype {first_dtype} and shape {first_shape:?}; cast or reshape the parts to match first"
    )]
    ConcatMismatch {
        /// Position of the part that does not match.
        index: usize,
        /// Its shape.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
        /// The first part's shape.
        first_shape: Vec<usize>,
        /// The first part's dtype.
        first_dtype: DType,
    },
    /// A cast that would lose information silently.
    #[error("cast from {from} to {to} is not supported: {hint}")]
    UnsupportedCast {
        /// Source dtype.
        from: DType,
        /// Target dtype.
        to: DType,
        /// What to do instead.
        hint: &'static str,
    },
    /// A DLPack tensor of a major version this crate does not speak; only its deleter was called.
    #[error(
        "dlpack version {major}.{minor} is not supported (ferry speaks 1.x); the tensor was released unread, ask the producer for a 1.x tensor"
    )]
    UnsupportedDlpackVersion {
        /// Producer's major version.
        major: u32,
        /// Producer's minor version.
        minor: u32,
    },
    /// DLPack metadata that breaks the protocol; the tensor was released through its deleter.
    #[error("invalid dlpack tensor: {reason}")]
    InvalidDlpack {
        /// What was wrong, with the offending values.
        reason: String,
    },
    /// A capability this build does not have.
    #[error("{capability} is not available in this build: {hint}")]
    NotCompiled {
        /// What was asked for.
        capability: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// A dtype the target framework (or tensor type) cannot hold.
    #[error("{backend} refuses dtype {dtype}; {hint}")]
    UnsupportedDtype {
        /// Which framework (or file format) refused it.
        backend: &'static str,
        /// The dtype that was asked for.
        dtype: DType,
        /// What to do instead (usually an explicit cast).
        hint: std::borrow::Cow<'static, str>,
    },
    /// A quantized tensor, whose values are not stored as plain elements.
    #[error(
        "the {backend} tensor of shape {shape:?} is quantized and has no plain host layout; {hint}"
    )]
    Quantized {
        /// Which framework.
        backend: &'static str,
        /// Shape of the tensor (empty when the framework does not say).
        shape: Vec<usize>,
        /// What to do instead (dequantize explicitly).
        hint: &'static str,
    },
    /// A tensor on another device than the one an operation was asked to use.
    #[error("the tensor lives on {found} but {expected} was asked for; {hint}")]
    DeviceMismatch {
        /// The device asked for.
        expected: Device,
        /// Where the tensor lives.
        found: Device,
        /// What to do instead.
        hint: &'static str,
    },
    /// ndarray refused a shape (e.g. a fixed-rank conversion of an array of another rank).
    #[error("ndarray refused the shape: {0}; check the array's shape() first")]
    Shape(#[from] ndarray::ShapeError),
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", "mapping").
        action: &'static str,
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file (or buffer) that is not valid in its format; nothing was read from it.
    #[error("invalid {format} data: {reason}")]
    InvalidFile {
        /// The format (`npy`, `npz`, `safetensors`).
        format: &'static str,
        /// What was wrong, with the offending values.
        reason: String,
    },
    /// A framework's own error, wrapped by an adapter.
    #[error("{backend} failed: {source}")]
    Backend {
        /// Which framework.
        backend: &'static str,
        /// The framework's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps a framework failure that comes as text (C++ exceptions, `Debug`-only errors).
    pub fn backend_message(backend: &'static str, message: impl Into<String>) -> Error {
        Error::Backend {
            backend,
            source: Box::new(Message(message.into())),
        }
    }

    /// Wraps a framework error.
    pub fn backend(
        backend: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Backend {
            backend,
            source: Box::new(source),
        }
    }

    /// An [`Error::InvalidFile`] for `format`.
    pub fn invalid_file(format: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidFile {
            format,
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`]: `action` ("reading", "writing", "mapping") on `path` failed.
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    /// Cold: a refused import; keeps the message-building code out of the import's hot path.
    #[cold]
    #[inline(never)]
    pub(crate) fn invalid_dlpack(reason: impl Into<String>) -> Error {
        Error::InvalidDlpack {
            reason: reason.into(),
        }
    }
}

/// A framework failure known only by its text.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}
