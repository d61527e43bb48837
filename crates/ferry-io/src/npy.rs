//! NumPy's `.npy` and `.npz` files for [`HostArray`], so arrays reach tools that only read
//! NumPy files (and NumPy's own files come back): every dtype NumPy has, C and Fortran order
//! (a Fortran-order file is read without reordering), header versions 1–3, and zero-copy
//! memory-mapped reads.
//!
//! ```
//! # fn main() -> ferry_core::Result<()> {
//! use ferry_core::HostArray;
//! use ferry_io::npy;
//!
//! let a = HostArray::from_vec(vec![2, 3], vec![0f32, 1., 2., 3., 4., 5.])?;
//! let mut file = Vec::new();
//! npy::write(&mut file, &a)?;
//! let b = npy::read(&file[..])?;
//! assert_eq!(b.view::<f32>()?, a.view::<f32>()?);
//! # Ok(()) }
//! ```
//!
//! Dtypes NumPy lacks (bf16, fp8/fp6/fp4) are refused with [`Error::UnsupportedDtype`]; cast
//! them or save them as safetensors (feature `safetensors`). Big-endian files are refused too.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use ferry_core::layout::MAX_NDIM;
use ferry_core::{Access, CopyPolicy, DType, Error, HostArray, Result};

use crate::stored::{self, Order};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are refused (NumPy itself stops at 10 000 bytes by default).
const MAX_HEADER_LEN: usize = 1 << 20;
/// NumPy pads headers so the data starts at a multiple of 64 bytes.
const DATA_ALIGN: usize = 64;

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid_file("npy", reason)
}

/// NumPy's `descr` for `dtype` (little-endian), or why NumPy cannot hold it.
pub fn descr(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::Bool => "|b1",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::U16 => "<u2",
        DType::I16 => "<i2",
        DType::U32 => "<u4",
        DType::I32 => "<i4",
        DType::U64 => "<u8",
        DType::I64 => "<i8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::C64 => "<c8",
        DType::C128 => "<c16",
        other => {
            return Err(Error::UnsupportedDtype {
                backend: "npy",
                dtype: other,
                hint: "NumPy has no such dtype; cast it (cast::<f32>()) or save it with ferry's safetensors module".into(),
            });
        }
    })
}

/// The dtype a NumPy `descr` string names.
fn dtype_of(descr: &str) -> Result<DType> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => (descr.as_bytes()[0], &descr[1..]),
        _ => (b'=', descr),
    };
    let dtype = match code {
        "b1" | "?" => DType::Bool,
        "u1" | "B" => DType::U8,
        "i1" | "b" => DType::I8,
        "u2" => DType::U16,
        "i2" => DType::I16,
        "u4" => DType::U32,
        "i4" => DType::I32,
        "u8" => DType::U64,
        "i8" => DType::I64,
        "f2" | "e" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "c8" => DType::C64,
        "c16" => DType::C128,
        _ => {
            return Err(invalid(format!(
                "dtype {descr:?} is not one ferry reads (bool, integers, f16/f32/f64, complex64/128); convert it in NumPy with arr.astype(...) first"
            )));
        }
    };
    let big_endian = order == b'>' || (order == b'=' && cfg!(target_endian = "big"));
    if big_endian && dtype.size_in_bytes().is_some_and(|s| s > 1) {
        return Err(invalid(format!(
            "dtype {descr:?} is big-endian; save it from NumPy as arr.astype(arr.dtype.newbyteorder('<'))"
        )));
    }
    Ok(dtype)
}

/// What an `.npy` header says.
#[derive(Debug)]
struct Header {
    dtype: DType,
    order: Order,
    shape: Vec<usize>,
    /// Bytes before the data.
    len: usize,
}

impl Header {
    fn nbytes(&self) -> Result<usize> {
        stored::dense_nbytes(self.dtype, &self.shape)
    }
}

/// Fills `buf` from `reader` (`source` names it): a stream that ends first is an invalid file
/// (`ends_early` says where it ended), any other failure the stream's own.
fn fill(
    reader: &mut impl Read,
    buf: &mut [u8],
    source: &str,
    ends_early: impl FnOnce() -> String,
) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => invalid(ends_early()),
        _ => Error::io("reading", Path::new(source), e),
    })
}

/// Reads the magic string, version and header dictionary from the start of `reader`
/// (`source` names it in errors).
fn read_header(reader: &mut impl Read, source: &str) -> Result<Header> {
    let mut preamble = [0u8; 8];
    fill(reader, &mut preamble, source, || {
        format!("{source} is shorter than the 8-byte npy preamble")
    })?;
    if &preamble[..6] != MAGIC {
        return Err(invalid(format!(
            "{source} starts with {:02x?}, not the npy magic string \\x93NUMPY",
            &preamble[..6]
        )));
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let ends_in_length = || format!("{source} ends inside the header length");
    let (header_len, prefix) = match major {
        1 => {
            let mut len = [0u8; 2];
            fill(reader, &mut len, source, ends_in_length)?;
            (usize::from(u16::from_le_bytes(len)), 10)
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            fill(reader, &mut len, source, ends_in_length)?;
            (u32::from_le_bytes(len) as usize, 12)
        }
        _ => {
            return Err(invalid(format!(
                "npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)"
            )));
        }
    };
    if header_len > MAX_HEADER_LEN {
        return Err(invalid(format!(
            "header of {header_len} bytes is longer than the {MAX_HEADER_LEN} ferry reads"
        )));
    }
    let mut text = vec![0u8; header_len];
    fill(reader, &mut text, source, || {
        format!("{source} ends inside its {header_len}-byte header")
    })?;
    let text = String::from_utf8_lossy(&text);
    let dict = match Literal::parse(&text)? {
        Literal::Dict(entries) => entries,
        other => return Err(invalid(format!("header is {other:?}, not a dictionary"))),
    };
    // A set, not a scan of the keys before each: a hostile header of many keys costs linear
    // time, not quadratic.
    let mut keys = std::collections::HashSet::with_capacity(dict.len());
    for (key, _) in &dict {
        if let Literal::Str(name) = key
            && !keys.insert(name.as_str())
        {
            return Err(invalid(format!("header {text:?} repeats the key {key:?}")));
        }
    }
    let field = |key: &str| {
        dict.iter()
            .find(|(k, _)| matches!(k, Literal::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| invalid(format!("header {text:?} has no {key:?} key")))
    };
    let dtype = match field("descr")? {
        Literal::Str(descr) => dtype_of(descr)?,
        other => {
            return Err(invalid(format!(
                "descr {other:?} is a structured dtype; ferry reads plain dtypes only"
            )));
        }
    };
    let order = match field("fortran_order")? {
        Literal::Bool(false) => Order::RowMajor,
        Literal::Bool(true) => Order::ColumnMajor,
        other => return Err(invalid(format!("fortran_order is {other:?}, not a bool"))),
    };
    let shape = match field("shape")? {
        Literal::Tuple(items) | Literal::List(items) => items
            .iter()
            .map(|item| match item {
                Literal::Int(n) => usize::try_from(*n)
                    .map_err(|_| invalid(format!("shape entry {n} is not a valid length"))),
                other => Err(invalid(format!("shape entry {other:?} is not an integer"))),
            })
            .collect::<Result<Vec<_>>>()?,
        other => return Err(invalid(format!("shape {other:?} is not a tuple"))),
    };
    if shape.len() > MAX_NDIM {
        return Err(invalid(format!(
            "shape has {} axes; at most {MAX_NDIM} are supported",
            shape.len()
        )));
    }
    let header = Header {
        dtype,
        order,
        shape,
        len: prefix + header_len,
    };
    header.nbytes()?;
    Ok(header)
}

/// The bytes of an `.npy` header (magic, version, length, padded dictionary) for `array`'s
/// dtype and shape, in `order`.
fn header_bytes(dtype: DType, shape: &[usize], order: Order) -> Result<Vec<u8>> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let fortran = if order == Order::ColumnMajor {
        "True"
    } else {
        "False"
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}",
        descr(dtype)?
    );
    // Version 1.0 unless the header needs more than 16 bits of length.
    let (version, prefix) = if dict.len() + DATA_ALIGN < usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let padded = (prefix + dict.len() + 1).next_multiple_of(DATA_ALIGN) - prefix;
    let mut out = Vec::with_capacity(prefix + padded);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(padded as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(padded as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + padded - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// Writes `array` as an `.npy` file: its bytes as they are when it is row-major or
/// column-major, else gathered once into row-major order.
pub fn write(writer: impl Write, array: &HostArray) -> Result<()> {
    Prepared::of(array)?.write(writer)
}

/// An array ready to be written, checked before any file is created (a refused array leaves
/// an existing file as it was): its header and its bytes in the stored order.
struct Prepared {
    header: Vec<u8>,
    stored: HostArray,
}

impl Prepared {
    fn of(array: &HostArray) -> Result<Prepared> {
        descr(array.dtype())?;
        let (order, stored) = match array.reversed_axes() {
            Ok(reversed) if !array.is_standard_layout() && reversed.is_standard_layout() => {
                (Order::ColumnMajor, reversed)
            }
            _ => (Order::RowMajor, array.as_standard_layout()?),
        };
        let stored = if stored.dtype() == DType::Bool {
            // A file holds valid bools only. The bytes written are a private copy, checked
            // after it was made: memory someone else may be writing cannot change between
            // the check and the write (InvalidBool for a byte other than 0 and 1).
            let copy = stored.to_contiguous(CopyPolicy::Always)?;
            copy.view::<bool>()?;
            copy
        } else {
            stored
        };
        Ok(Prepared {
            header: header_bytes(array.dtype(), array.shape(), order)?,
            stored,
        })
    }

    fn write(&self, mut writer: impl Write) -> Result<()> {
        let to_io = |e| Error::io("writing", Path::new("npy stream"), e);
        writer.write_all(&self.header).map_err(to_io)?;
        writer
            .write_all(self.stored.as_bytes().expect("row-major"))
            .map_err(to_io)?;
        writer.flush().map_err(to_io)
    }
}

/// Reads an `.npy` file from a stream into a fresh buffer (a hostile header cannot make ferry
/// allocate more than the stream delivers).
pub fn read(reader: impl Read) -> Result<HostArray> {
    read_bounded(reader, u64::MAX, "the stream")
}

/// [`read`] from a stream known to hold at most `limit` bytes (`source` names it in errors):
/// a header that asks for more is refused before any data is read, and data within the limit
/// is read straight into an aligned buffer.
fn read_bounded(mut reader: impl Read, limit: u64, source: &str) -> Result<HostArray> {
    let header = read_header(&mut reader, source)?;
    let nbytes = header.nbytes()?;
    if header.len as u128 + nbytes as u128 > u128::from(limit) {
        return Err(invalid(format!(
            "{source} holds {limit} bytes, fewer than the {} header bytes and {nbytes} data bytes of shape {:?}, dtype {}",
            header.len, header.shape, header.dtype
        )));
    }
    if limit != u64::MAX {
        let ends_early = format!(
            "{source} ends inside the {nbytes} data bytes of shape {:?}, dtype {}",
            header.shape, header.dtype
        );
        return stored::read_dense(header.dtype, header.shape, header.order, |buf| {
            fill(&mut reader, buf, source, || ends_early)
        });
    }
    // Unknown length: the buffer grows only as fast as the stream delivers.
    let mut data = Vec::new();
    reader
        .take(nbytes as u64)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading", Path::new(source), e))?;
    if data.len() != nbytes {
        return Err(invalid(format!(
            "data of shape {:?}, dtype {} needs {nbytes} bytes but {source} holds {}",
            header.shape,
            header.dtype,
            data.len()
        )));
    }
    let bytes: *const [u8] = std::ptr::slice_from_raw_parts(data.as_mut_ptr(), data.len());
    let owner = Arc::new(data);
    // SAFETY: the Vec moved into `owner` keeps its heap buffer, which nothing else can reach
    // or change while `owner` lives; `bytes` comes from `as_mut_ptr`, so it may write.
    unsafe {
        stored::view_dense(
            owner,
            bytes,
            header.dtype,
            header.shape,
            header.order,
            Access::Exclusive,
        )
    }
}

/// Reads the `.npy` file at `path` into memory.
pub fn load(path: impl AsRef<Path>) -> Result<HostArray> {
    let path = path.as_ref();
    let (file, size) = stored::open_sized(path)?;
    read_bounded(
        std::io::BufReader::new(file),
        size,
        &path.display().to_string(),
    )
}

/// Maps the `.npy` file at `path` into memory: a read-only array over the file's own pages,
/// no copy (NumPy's `np.load(path, mmap_mode="r")`).
///
/// # Safety
///
/// Nobody may modify or truncate the file while the returned array (or a clone or export of
/// it) is alive; that would change or unmap memory Rust assumes is immutable.
pub unsafe fn map(path: impl AsRef<Path>) -> Result<HostArray> {
    let path = path.as_ref();
    // SAFETY: forwarded contract.
    let map = unsafe { stored::map_file(path) }?;
    let header = read_header(&mut &map[..], &path.display().to_string())?;
    let nbytes = header.nbytes()?;
    let data = map
        .get(header.len..)
        .and_then(|rest| rest.get(..nbytes))
        .ok_or_else(|| {
            invalid(format!(
                "{} holds {} bytes, fewer than the {} header bytes and {nbytes} data bytes of shape {:?}",
                path.display(),
                map.len(),
                header.len,
                header.shape
            ))
        })?;
    let data: *const [u8] = data;
    // SAFETY: `data` lies in the map, which the owner keeps alive and the caller keeps unchanged;
    // the array is read-only.
    unsafe {
        stored::view_dense(
            map,
            data,
            header.dtype,
            header.shape,
            header.order,
            Access::ReadOnly,
        )
    }
}

/// Writes `array` to an `.npy` file at `path`.
pub fn save(path: impl AsRef<Path>, array: &HostArray) -> Result<()> {
    let path = path.as_ref();
    let prepared = Prepared::of(array)?;
    let file = std::fs::File::create(path).map_err(|e| Error::io("creating", path, e))?;
    prepared.write(std::io::BufWriter::new(file))
}

/// Writes named arrays to an `.npz` archive at `path` (NumPy's `np.savez`, or
/// `np.savez_compressed` when `compressed`). Names get the `.npy` suffix inside the archive.
pub fn save_npz<'a>(
    path: impl AsRef<Path>,
    arrays: impl IntoIterator<Item = (&'a str, &'a HostArray)>,
    compressed: bool,
) -> Result<()> {
    let path = path.as_ref();
    let mut members = std::collections::HashSet::new();
    let mut prepared = Vec::new();
    for (name, array) in arrays {
        let member = format!("{name}.npy");
        if !members.insert(member.clone()) {
            return Err(Error::invalid_file(
                "npz",
                format!(
                    "{}: two arrays are named {name:?}; give every array its own name",
                    path.display()
                ),
            ));
        }
        let array = Prepared::of(array).map_err(|e| in_member(path, &member, e))?;
        prepared.push((member, array));
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io("creating", path, e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    for (member, array) in prepared {
        zip.start_file(member.as_str(), options)
            .map_err(|e| zip_error("writing", path, e))?;
        array
            .write(&mut zip)
            .map_err(|e| in_member(path, &member, e))?;
    }
    zip.finish().map_err(|e| zip_error("writing", path, e))?;
    Ok(())
}

/// Reads every array of an `.npz` archive (stored or deflated), in archive order, with the
/// `.npy` suffix taken off the names.
pub fn load_npz(path: impl AsRef<Path>) -> Result<Vec<(String, HostArray)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| zip_error("reading", path, e))?;
    let mut out = Vec::with_capacity(zip.len());
    let mut names = std::collections::HashSet::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| zip_error("reading", path, e))?;
        let declared = entry.size();
        let name = entry
            .name()
            .map_err(|e| {
                Error::invalid_file("npz", format!("{}: member {i}: {e}", path.display()))
            })?
            .into_owned();
        // Read no more than the member says it holds, so a small compressed member cannot
        // inflate into an allocation its header alone asked for.
        let array =
            read_bounded(entry, declared, "the member").map_err(|e| in_member(path, &name, e))?;
        let name = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        if !names.insert(name.clone()) {
            // A dict of the arrays (NumPy's, ferry's Python one) would keep only the last.
            return Err(Error::invalid_file(
                "npz",
                format!(
                    "{}: two members are named {name:?}; rewrite the archive with one array per name",
                    path.display()
                ),
            ));
        }
        out.push((name, array));
    }
    Ok(out)
}

/// A failure of the zip archive at `path`: the operating system's as [`Error::Io`], the rest
/// (a corrupt or unsupported archive) as [`Error::InvalidFile`].
fn zip_error(action: &'static str, path: &Path, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(source) => Error::io(action, path, source),
        other => Error::invalid_file("npz", format!("{}: {other}", path.display())),
    }
}

/// An error from reading or writing the member `member` of the archive at `path`, told as the
/// archive's: corrupt compressed data or a wrong checksum (which zip reports as I/O errors) is
/// an invalid file, and every message names the archive and the member.
fn in_member(path: &Path, member: &str, e: Error) -> Error {
    let place = format!("{} (member {member:?})", path.display());
    match e {
        Error::InvalidFile { reason, .. } => {
            Error::invalid_file("npz", format!("{place}: {reason}"))
        }
        Error::Io {
            action: "reading",
            source,
            ..
        } if matches!(
            source.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
        ) =>
        {
            Error::invalid_file("npz", format!("{place}: {source}"))
        }
        Error::Io { action, source, .. } => Error::Io {
            action,
            path: place,
            source,
        },
        other => other,
    }
}

/// The Python literals an `.npy` header is written in.
#[derive(Debug)]
enum Literal {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    fn parse(text: &str) -> Result<Literal> {
        let mut parser = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let value = parser.value(0)?;
        parser.skip_space();
        if parser.at != parser.text.len() {
            return Err(invalid(format!(
                "header {text:?} has text after its dictionary"
            )));
        }
        Ok(value)
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    /// Deepest nesting accepted (a plain header nests two levels).
    const MAX_DEPTH: usize = 16;

    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> Error {
        invalid(format!(
            "header {:?}: {what} at byte {}",
            String::from_utf8_lossy(self.text),
            self.at
        ))
    }

    fn value(&mut self, depth: usize) -> Result<Literal> {
        if depth > Self::MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_space();
        match self.text.get(self.at) {
            Some(b'{') => {
                let entries = self.sequence(b'}', depth, |p, depth| {
                    let key = p.value(depth + 1)?;
                    p.skip_space();
                    if p.text.get(p.at) != Some(&b':') {
                        return Err(p.error("expected ':'"));
                    }
                    p.at += 1;
                    Ok((key, p.value(depth + 1)?))
                })?;
                Ok(Literal::Dict(entries))
            }
            Some(b'(') => Ok(Literal::Tuple(
                self.sequence(b')', depth, |p, d| p.value(d + 1))?,
            )),
            Some(b'[') => Ok(Literal::List(
                self.sequence(b']', depth, |p, d| p.value(d + 1))?,
            )),
            Some(&quote @ (b'\'' | b'"')) => {
                self.at += 1;
                let mut s = Vec::new();
                loop {
                    match self.text.get(self.at) {
                        None => return Err(self.error("unterminated string")),
                        Some(&c) if c == quote => break,
                        Some(b'\\') => {
                            self.at += 1;
                            s.extend(self.text.get(self.at));
                        }
                        Some(&c) => s.push(c),
                    }
                    self.at += 1;
                }
                self.at += 1;
                Ok(Literal::Str(String::from_utf8_lossy(&s).into_owned()))
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.at;
                self.at += 1;
                while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let digits = std::str::from_utf8(&self.text[start..self.at]).expect("ascii");
                // Python 2 wrote long integers with an `L` suffix.
                if self.text.get(self.at) == Some(&b'L') {
                    self.at += 1;
                }
                digits
                    .parse()
                    .map(Literal::Int)
                    .map_err(|_| self.error("integer out of range"))
            }
            _ => {
                for (word, value) in [
                    ("True", Literal::Bool(true)),
                    ("False", Literal::Bool(false)),
                    ("None", Literal::None),
                ] {
                    if self.text[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(value);
                    }
                }
                Err(self.error("unexpected character"))
            }
        }
    }

    /// Items up to `close`, separated by commas, a trailing comma allowed.
    fn sequence<T>(
        &mut self,
        close: u8,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.text.get(self.at) == Some(&close) {
                self.at += 1;
                return Ok(items);
            }
            items.push(item(self, depth)?);
            self.skip_space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(&c) if c == close => {}
                _ => return Err(self.error("expected ',' or a closing bracket")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_byte_aligned_and_parses_back() {
        for shape in [vec![], vec![0], vec![7], vec![2, 3, 4]] {
            let bytes = header_bytes(DType::F32, &shape, Order::ColumnMajor).unwrap();
            assert_eq!(bytes.len() % DATA_ALIGN, 0);
            assert_eq!(bytes.last(), Some(&b'\n'));
            let header = read_header(&mut &bytes[..], "the header").unwrap();
            assert_eq!(header.shape, shape);
            assert_eq!(header.order, Order::ColumnMajor);
            assert_eq!(header.len, bytes.len());
        }
    }

    #[test]
    fn npz_refusals_name_the_archive_and_are_invalid_files() {
        let path = std::env::temp_dir().join(format!("ferry-io-{}.npz", std::process::id()));
        let a = HostArray::from_vec(vec![3], vec![1f32, 2., 3.]).unwrap();
        let err = save_npz(&path, [("a", &a), ("a", &a)], false).unwrap_err();
        assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
        // A corrupt deflate stream (reserved block type) is the file's fault, not the disk's.
        save_npz(&path, [("a", &a)], true).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let field = |at: usize| usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        let data = 30 + field(26) + field(28);
        bytes[data] = 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = load_npz(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
        assert!(err.to_string().contains("\"a.npy\""), "{err}");
        assert!(
            !err.to_string().contains("shorter"),
            "not masked as a short file: {err}"
        );
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let cases: [&[u8]; 7] = [
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (99,), }",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,), }",
            b"{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            b"{'descr': '<f4', 'shape': (1,), }",
            b"((((((((((((((((((((((((((((((((((((((((",
        ];
        for dict in cases {
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&[1, 0]);
            file.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            file.extend_from_slice(dict);
            let err = read(&file[..]).unwrap_err();
            assert!(matches!(err, Error::InvalidFile { .. }), "{err}");
        }
    }
}
