//! Tensor columns: host arrays as Arrow columns and back — a 1-D array as a primitive column,
//! a batch (first axis = rows) as `arrow.fixed_shape_tensor` with its `permutation` when the
//! memory is a permutation of row-major, tensors of differing shapes as
//! `arrow.variable_shape_tensor` — and record batches of such columns.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Int32Array, ListArray, RecordBatch,
    StructArray, make_array,
};
use arrow_buffer::{Buffer, MutableBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema};
use ferry_core::layout::{element_count, row_major_strides};
use ferry_core::{
    CopyPolicy, CopyReason, CopyRecord, DType, HostArray, StorageLayout, record_copy,
};
use smallvec::SmallVec;

use crate::buffer::{buffer_over_host, host_over_buffer, pack_bits, pack_bools, unpack_bools};
use crate::dtype::{arrow_type, ferry_dtype};
use crate::metadata::TensorMetadata;
use crate::{Error, Result};

/// Extension name of Arrow's canonical fixed-shape tensor column.
pub const FIXED_SHAPE_TENSOR: &str = "arrow.fixed_shape_tensor";
/// Extension name of Arrow's canonical variable-shape tensor column.
pub const VARIABLE_SHAPE_TENSOR: &str = "arrow.variable_shape_tensor";

/// What a [`TensorColumn`] holds, by its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// A primitive (or boolean) column: one value per row.
    Primitive,
    /// `arrow.fixed_shape_tensor`: one tensor of the same shape per row.
    FixedShapeTensor,
    /// `arrow.variable_shape_tensor`: one tensor per row, shapes differ.
    VariableShapeTensor,
}

/// One Arrow column with its field (name, type, extension metadata): made from host arrays,
/// or found in a [`RecordBatch`] and read back as host arrays over Arrow's buffers.
#[derive(Debug, Clone)]
pub struct TensorColumn {
    field: FieldRef,
    array: ArrayRef,
    kind: ColumnKind,
    copies: Vec<CopyRecord>,
}

impl TensorColumn {
    /// A column with a row per index of `batch`'s first axis: a 1-D array becomes a primitive
    /// column, a higher one an `arrow.fixed_shape_tensor` column whose tensors have shape
    /// `batch.shape()[1..]`.
    ///
    /// No copy when the memory is row-major, or a permutation of row-major with the rows
    /// outermost (a transposed or `permute`d tensor): the permutation goes into the extension
    /// metadata and Arrow's buffer keeps `batch`'s memory alive. Any other layout (negative or
    /// zero strides, gaps, rows not outermost) is copied once to row-major, and so are `bool`
    /// arrays (Arrow packs them into bits); [`copy_log`](Self::copy_log) records it.
    pub fn from_batch(name: &str, batch: &HostArray) -> Result<TensorColumn> {
        if batch.ndim() == 0 {
            return Err(shape_error(
                "a tensor column",
                batch,
                "is 0-d: a column needs a row axis; reshape it to [1]",
            ));
        }
        let value_type = arrow_type(batch.dtype())?;
        let mut copies = Vec::new();
        // `order` is the axes outermost first as the values are stored; `None` is row-major.
        let (values, order) = if batch.dtype() == DType::Bool {
            // Packed straight from the view, in logical order, whatever the layout.
            let (packed, record) = pack_bools(batch)?;
            copies.push(record);
            (Arc::new(packed) as ArrayRef, None)
        } else {
            let aligned = batch.is_empty()
                || (batch.as_ptr() as usize).is_multiple_of(batch.itemsize().unwrap_or(1));
            let order = if batch.is_standard_layout() {
                Some(None)
            } else {
                dense_order(batch.shape(), batch.strides()).map(Some)
            };
            let (dense, order) = match order {
                // Row-major: no order to work out (the common case, kept short).
                Some(None) if aligned => (Cow::Borrowed(batch), None),
                Some(Some(order)) if order[0] == 0 && aligned => {
                    (Cow::Borrowed(batch), Some(order))
                }
                // Not a permutation of row-major with the rows outermost (so not row-major
                // either: `IfNeeded` copies), or misaligned for Arrow's typed access (which
                // asserts alignment): one copy to a fresh row-major buffer.
                _ => {
                    let policy = if aligned {
                        CopyPolicy::IfNeeded
                    } else {
                        CopyPolicy::Always
                    };
                    let dense = batch.to_contiguous(policy)?;
                    copies.extend(dense.copy_log()[batch.copies()..].iter().map(|r| {
                        let reason = if aligned {
                            r.reason
                        } else {
                            CopyReason::Misaligned
                        };
                        CopyRecord { reason, ..*r }
                    }));
                    (Cow::Owned(dense), None)
                }
            };
            let values = primitive_array(dense.dtype(), buffer_over_host(&dense), dense.len());
            (values, order)
        };
        if batch.ndim() == 1 {
            let field = Field::new(name, value_type, false);
            return Ok(TensorColumn {
                field: Arc::new(field),
                array: values,
                kind: ColumnKind::Primitive,
                copies,
            });
        }
        let rows = batch.shape()[0];
        let (physical, permutation) = match order {
            None => (Axes::from_slice(&batch.shape()[1..]), None),
            Some(order) => {
                let physical: Axes = order[1..].iter().map(|&axis| batch.shape()[axis]).collect();
                let permutation: Axes = (1..batch.ndim())
                    .map(|axis| {
                        order[1..]
                            .iter()
                            .position(|&a| a == axis)
                            .expect("a permutation")
                    })
                    .collect();
                let permuted = permutation.iter().enumerate().any(|(i, &p)| i != p);
                (physical, permuted.then_some(permutation))
            }
        };
        let (item, field) = fixed_shape_fields(name, &value_type, &physical, permutation)?;
        let array = fixed_size_list(batch, item, &physical, rows, values)?;
        Ok(TensorColumn {
            field,
            array,
            kind: ColumnKind::FixedShapeTensor,
            copies,
        })
    }

    /// A column with a row per tensor: `arrow.fixed_shape_tensor` when all have one shape
    /// (stacked into one buffer: one recorded copy, and one more for each tensor that is not
    /// row-major), else `arrow.variable_shape_tensor`
    /// ([`ragged`](Self::ragged)). All must share dtype and rank; at least one is needed.
    pub fn from_tensors(name: &str, tensors: &[HostArray]) -> Result<TensorColumn> {
        let first = check_tensors(tensors)?;
        if tensors.iter().any(|t| t.shape() != first.shape()) {
            return Self::ragged(name, tensors);
        }
        let mut shape = vec![tensors.len()];
        shape.extend_from_slice(first.shape());
        let (buffer, record) = concat_row_major(tensors)?;
        // The stacked batch over the new buffer, exported without a further copy (bools are
        // still bit-packed).
        let layout = StorageLayout::row_major(first.dtype(), shape)?;
        let stacked = host_over_buffer(buffer, layout)?;
        let mut column = Self::from_batch(name, &stacked)?;
        column.copies.insert(0, record);
        Ok(column)
    }

    /// An `arrow.variable_shape_tensor` column with a row per tensor (shapes may differ;
    /// dtype and rank may not). The tensors' elements are copied, row-major, into one data
    /// buffer (one recorded copy, and one more for each tensor that is not row-major).
    pub fn ragged(name: &str, tensors: &[HostArray]) -> Result<TensorColumn> {
        let first = check_tensors(tensors)?;
        let value_type = arrow_type(first.dtype())?;
        let ndim = first.ndim();
        let mut offsets = Vec::with_capacity(tensors.len() + 1);
        offsets.push(0i32);
        let mut shapes = Vec::with_capacity(tensors.len() * ndim);
        let mut total = 0usize;
        for tensor in tensors {
            total = total.saturating_add(tensor.len());
            offsets.push(i32::try_from(total).map_err(|_| {
                shape_error(
                    "a variable-shape tensor column",
                    tensor,
                    "takes the column past 2^31-1 elements (Arrow List offsets are i32): split the tensors over several record batches",
                )
            })?);
            for &dim in tensor.shape() {
                shapes.push(i32::try_from(dim).map_err(|_| {
                    shape_error(
                        "a variable-shape tensor column",
                        tensor,
                        "has an axis longer than 2^31-1",
                    )
                })?);
            }
        }
        let (buffer, mut record) = concat_row_major(tensors)?;
        let values: ArrayRef = if first.dtype() == DType::Bool {
            let (packed, repacked) = pack_bits(buffer.len(), buffer.iter().map(|&b| b != 0))?;
            record = repacked;
            Arc::new(packed)
        } else {
            primitive_array(first.dtype(), buffer, total)
        };
        // Nullable items (never null here), as Arrow C++ and pyarrow declare them.
        let data_field = Arc::new(Field::new_list_field(value_type.clone(), true));
        let data = ListArray::try_new(
            data_field,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values,
            None,
        )?;
        let shape_field = Arc::new(Field::new_list_field(DataType::Int32, true));
        let ndim_i32 = i32::try_from(ndim).expect("ferry's ranks are small");
        let shape = FixedSizeListArray::try_new_with_length(
            shape_field,
            ndim_i32,
            Arc::new(Int32Array::from(shapes)),
            None,
            tensors.len(),
        )?;
        let fields = Fields::from(vec![
            Field::new("data", data.data_type().clone(), false),
            Field::new("shape", shape.data_type().clone(), false),
        ]);
        let array = StructArray::try_new(fields, vec![Arc::new(data), Arc::new(shape)], None)?;
        let field = Field::new(name, array.data_type().clone(), false);
        let field = TensorMetadata::default().on_field(field, VARIABLE_SHAPE_TENSOR);
        Ok(TensorColumn {
            field: Arc::new(field),
            array: Arc::new(array),
            kind: ColumnKind::VariableShapeTensor,
            copies: vec![record],
        })
    }

    /// A column found in Arrow data (a record batch's field and array, a file, a C Data
    /// Interface import), checked: a primitive or boolean column, or one of the two tensor
    /// extension types over a storage ferry can read.
    ///
    /// A bare `FixedSizeList` of a primitive type (what DuckDB's `FLOAT[4]`, Polars' `Array`
    /// and NumPy-minded writers hand out, without the extension type) is read as an
    /// `arrow.fixed_shape_tensor` column of shape `[list size]`.
    pub fn try_new(field: FieldRef, array: ArrayRef) -> Result<TensorColumn> {
        let field = match (field.extension_type_name(), field.data_type()) {
            (None, DataType::FixedSizeList(item, size))
                if *size >= 0 && ferry_dtype(item.data_type()).is_some() =>
            {
                let mut metadata = field.metadata().clone();
                metadata.insert(
                    arrow_schema::extension::EXTENSION_TYPE_NAME_KEY.to_owned(),
                    FIXED_SHAPE_TENSOR.to_owned(),
                );
                metadata.insert(
                    arrow_schema::extension::EXTENSION_TYPE_METADATA_KEY.to_owned(),
                    format!("{{\"shape\":[{size}]}}"),
                );
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            }
            _ => field,
        };
        check_type(&field, &array)?;
        check_structure(field.name(), &array)?;
        let kind = match field.extension_type_name() {
            Some(FIXED_SHAPE_TENSOR) => ColumnKind::FixedShapeTensor,
            Some(VARIABLE_SHAPE_TENSOR) => ColumnKind::VariableShapeTensor,
            _ if ferry_dtype(array.data_type()).is_some() => ColumnKind::Primitive,
            _ => {
                return Err(Error::UnsupportedArrowType {
                    column: field.name().clone(),
                    data_type: array.data_type().clone(),
                    what_to_do: "ferry reads primitive columns (f16, f32, f64, i8-i64, u8-u64, bool) and the canonical tensor extension types arrow.fixed_shape_tensor and arrow.variable_shape_tensor",
                });
            }
        };
        let column = TensorColumn {
            field,
            array,
            kind,
            copies: Vec::new(),
        };
        // Parse the metadata now, so a bad column is refused where it enters.
        match kind {
            ColumnKind::Primitive => {}
            ColumnKind::FixedShapeTensor => {
                column.fixed_layout()?;
            }
            ColumnKind::VariableShapeTensor => {
                column.variable_metadata()?;
            }
        }
        Ok(column)
    }

    /// The column's name.
    pub fn name(&self) -> &str {
        self.field.name()
    }

    /// The column's field: name, Arrow type and (for tensor columns) extension metadata.
    pub fn field(&self) -> &FieldRef {
        &self.field
    }

    /// The column's Arrow array (the extension's storage array for tensor columns).
    pub fn array(&self) -> &ArrayRef {
        &self.array
    }

    /// What the column holds.
    pub fn kind(&self) -> ColumnKind {
        self.kind
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// The copies ferry made to build this column (empty: it shares the source's memory).
    pub fn copy_log(&self) -> &[CopyRecord] {
        &self.copies
    }

    /// The shape of each tensor in logical order (`[]` for a primitive column), `None` for a
    /// variable-shape column.
    pub fn tensor_shape(&self) -> Result<Option<Vec<usize>>> {
        Ok(match self.kind {
            ColumnKind::Primitive => Some(Vec::new()),
            ColumnKind::FixedShapeTensor => Some(self.fixed_layout()?.logical_shape()),
            ColumnKind::VariableShapeTensor => None,
        })
    }

    /// The tensors' dimension names in logical order, when the column has them (Arrow stores
    /// them in physical order; the permutation is applied here).
    pub fn dim_names(&self) -> Result<Option<Vec<String>>> {
        let metadata = match self.kind {
            ColumnKind::Primitive => return Ok(None),
            ColumnKind::FixedShapeTensor => self.fixed_layout()?.metadata,
            ColumnKind::VariableShapeTensor => self.variable_metadata()?,
        };
        Ok(metadata
            .dim_names
            .as_ref()
            .map(|names| metadata.to_logical(names)))
    }

    /// The same column with its tensors' dimensions named, in logical order (the order of
    /// [`tensor_shape`](Self::tensor_shape)); stored in Arrow's physical order.
    pub fn with_dim_names<S: AsRef<str>>(mut self, names: &[S]) -> Result<TensorColumn> {
        let (extension, mut metadata, ndim) = match self.kind {
            ColumnKind::Primitive => {
                return Err(self.invalid(
                    "dim_names",
                    "a primitive column has no tensor dimensions to name",
                ));
            }
            ColumnKind::FixedShapeTensor => {
                let metadata = self.fixed_layout()?.metadata;
                let ndim = metadata.shape.as_ref().map_or(0, Vec::len);
                (FIXED_SHAPE_TENSOR, metadata, ndim)
            }
            ColumnKind::VariableShapeTensor => (
                VARIABLE_SHAPE_TENSOR,
                self.variable_metadata()?,
                self.variable_ndim()?,
            ),
        };
        if names.len() != ndim {
            return Err(self.invalid(
                "dim_names",
                format!("got {} names for tensors of rank {ndim}", names.len()),
            ));
        }
        let mut physical = vec![String::new(); ndim];
        for (logical, name) in names.iter().enumerate() {
            let at = metadata
                .permutation
                .as_ref()
                .map_or(logical, |p| p[logical]);
            physical[at] = name.as_ref().to_owned();
        }
        metadata.dim_names = Some(physical);
        self.field = Arc::new(metadata.on_field((*self.field).clone(), extension));
        Ok(self)
    }

    /// The whole column as one read-only host array over Arrow's buffer (no copy; `bool` is
    /// unpacked, one recorded copy): shape `[rows]` for a primitive column, `[rows, ..tensor
    /// shape]` for a fixed-shape tensor column, with strides that apply the column's
    /// permutation. A variable-shape column has no single shape: use
    /// [`to_host_tensors`](Self::to_host_tensors).
    pub fn to_host(&self) -> Result<HostArray> {
        match self.kind {
            ColumnKind::Primitive => {
                self.check_nulls(self.array.as_ref())?;
                values_to_host(&self.array, 0, vec![self.array.len()], vec![1])
            }
            ColumnKind::FixedShapeTensor => {
                let layout = self.fixed_layout()?;
                let values = self.fixed_values(&layout)?;
                let (mut shape, mut strides) = layout.logical_strides();
                shape.insert(0, self.array.len());
                strides.insert(0, layout.list_size as isize);
                values_to_host(values, 0, shape, strides)
            }
            ColumnKind::VariableShapeTensor => Err(Error::Shape {
                what: "one host array of a variable-shape tensor column",
                shape: vec![self.len()],
                dtype: self.variable_dtype()?,
                reason: "has tensors of differing shapes: read them with to_host_tensors()".into(),
            }),
        }
    }

    /// One read-only host array per row, each over Arrow's buffer (no copy; `bool` is
    /// unpacked, one recorded copy per tensor). For a primitive column each is 0-d.
    pub fn to_host_tensors(&self) -> Result<Vec<HostArray>> {
        match self.kind {
            ColumnKind::Primitive => {
                self.check_nulls(self.array.as_ref())?;
                (0..self.len())
                    .map(|row| values_to_host(&self.array, row, Vec::new(), Vec::new()))
                    .collect()
            }
            ColumnKind::FixedShapeTensor => {
                let layout = self.fixed_layout()?;
                let values = self.fixed_values(&layout)?;
                let (shape, strides) = layout.logical_strides();
                (0..self.len())
                    .map(|row| {
                        // In range: `fixed_values` checked rows × list size against the values.
                        let start = row * layout.list_size;
                        values_to_host(values, start, shape.clone(), strides.clone())
                    })
                    .collect()
            }
            ColumnKind::VariableShapeTensor => self.variable_tensors(),
        }
    }

    fn check_nulls(&self, array: &dyn Array) -> Result<()> {
        match array.null_count() {
            0 => Ok(()),
            nulls => Err(Error::Nulls {
                column: self.name().to_owned(),
                data_type: self.array.data_type().clone(),
                nulls,
            }),
        }
    }

    fn invalid(&self, extension: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidExtension {
            column: self.name().to_owned(),
            extension,
            reason: reason.into(),
        }
    }

    /// The fixed-shape metadata, checked against the storage type. Nullable value fields are
    /// accepted (pyarrow writes them) and checked for nulls when read.
    fn fixed_layout(&self) -> Result<FixedLayout> {
        let metadata = TensorMetadata::parse(self.field.extension_type_metadata(), None)
            .map_err(|reason| self.invalid(FIXED_SHAPE_TENSOR, reason))?;
        let Some(shape) = metadata.shape.clone() else {
            return Err(self.invalid(FIXED_SHAPE_TENSOR, "the metadata has no shape"));
        };
        let DataType::FixedSizeList(item, size) = self.array.data_type() else {
            return Err(self.invalid(FIXED_SHAPE_TENSOR, "the storage is not a FixedSizeList"));
        };
        let list_size = element_count(&shape)
            .filter(|&n| i32::try_from(n).is_ok_and(|n| n == *size))
            .ok_or_else(|| {
                self.invalid(
                    FIXED_SHAPE_TENSOR,
                    format!("shape {:?} does not hold the list size {size}", shape),
                )
            })?;
        self.value_dtype(item.data_type())?;
        Ok(FixedLayout {
            list_size,
            metadata,
        })
    }

    /// The fixed-shape column's values array (row 0's first value first: Arrow slices it with
    /// the list), after checking nulls and that it holds every row.
    fn fixed_values(&self, layout: &FixedLayout) -> Result<&ArrayRef> {
        let list = self
            .array
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .ok_or_else(|| {
                self.invalid(FIXED_SHAPE_TENSOR, "the storage is not a FixedSizeList")
            })?;
        self.check_nulls(list)?;
        let values = list.values();
        self.check_nulls(values.as_ref())?;
        let needed = list.len().checked_mul(layout.list_size);
        if needed.is_none_or(|n| n > values.len()) {
            return Err(self.invalid(
                FIXED_SHAPE_TENSOR,
                "the values array is shorter than its rows",
            ));
        }
        Ok(values)
    }

    fn variable_metadata(&self) -> Result<TensorMetadata> {
        let ndim = self.variable_ndim()?;
        TensorMetadata::parse(self.field.extension_type_metadata(), Some(ndim))
            .map_err(|reason| self.invalid(VARIABLE_SHAPE_TENSOR, reason))
    }

    fn variable_parts(&self) -> Result<(&ListArray, &FixedSizeListArray)> {
        let parts = self
            .array
            .as_any()
            .downcast_ref::<StructArray>()
            .and_then(|s| {
                let data = s
                    .column_by_name("data")?
                    .as_any()
                    .downcast_ref::<ListArray>()?;
                let shape = s
                    .column_by_name("shape")?
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()?;
                Some((data, shape))
            });
        parts.ok_or_else(|| {
            self.invalid(
                VARIABLE_SHAPE_TENSOR,
                "the storage is not Struct<data: List, shape: FixedSizeList<int32>>",
            )
        })
    }

    fn variable_ndim(&self) -> Result<usize> {
        let (_, shape) = self.variable_parts()?;
        Ok(usize::try_from(shape.value_length()).unwrap_or(0))
    }

    fn variable_value_type(&self) -> Result<DataType> {
        let (data, _) = self.variable_parts()?;
        Ok(data.value_type())
    }

    fn variable_dtype(&self) -> Result<DType> {
        self.value_dtype(&self.variable_value_type()?)
    }

    /// The ferry dtype of the tensors' values, refused for types ferry has no dtype for.
    fn value_dtype(&self, value_type: &DataType) -> Result<DType> {
        ferry_dtype(value_type).ok_or_else(|| Error::UnsupportedArrowType {
            column: self.name().to_owned(),
            data_type: value_type.clone(),
            what_to_do: "tensor values must be f16, f32, f64, i8-i64, u8-u64 or bool",
        })
    }

    fn variable_tensors(&self) -> Result<Vec<HostArray>> {
        let metadata = self.variable_metadata()?;
        let (data, shapes) = self.variable_parts()?;
        self.check_nulls(self.array.as_ref())?;
        self.check_nulls(data)?;
        self.check_nulls(data.values().as_ref())?;
        self.check_nulls(shapes)?;
        self.check_nulls(shapes.values().as_ref())?;
        self.variable_dtype()?;
        let ndim = self.variable_ndim()?;
        let permutation = metadata.permutation.clone();
        let shape_values = shapes
            .values()
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(|| self.invalid(VARIABLE_SHAPE_TENSOR, "shape values are not int32"))?;
        let offsets = data.value_offsets();
        (0..self.len())
            .map(|row| {
                let dims = &shape_values.values()[row * ndim..(row + 1) * ndim];
                let physical: Vec<usize> = dims
                    .iter()
                    .map(|&d| usize::try_from(d))
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        self.invalid(
                            VARIABLE_SHAPE_TENSOR,
                            format!("row {row} has a negative shape {dims:?}"),
                        )
                    })?;
                let start = usize::try_from(offsets[row]).unwrap_or(usize::MAX);
                let end = usize::try_from(offsets[row + 1]).unwrap_or(0);
                if element_count(&physical) != end.checked_sub(start) {
                    return Err(self.invalid(
                        VARIABLE_SHAPE_TENSOR,
                        format!(
                            "row {row}: shape {physical:?} does not hold its {} values",
                            end.saturating_sub(start)
                        ),
                    ));
                }
                let layout = PermutedShape::new(physical, permutation.clone());
                let (shape, strides) = layout.logical_strides();
                values_to_host(data.values(), start, shape, strides)
            })
            .collect()
    }
}

/// A fixed-shape column's parsed extension: elements per tensor, metadata.
struct FixedLayout {
    list_size: usize,
    metadata: TensorMetadata,
}

impl FixedLayout {
    fn logical_shape(&self) -> Vec<usize> {
        self.metadata.logical_shape()
    }

    fn logical_strides(&self) -> (Vec<usize>, Vec<isize>) {
        PermutedShape::new(
            self.metadata.shape.clone().unwrap_or_default(),
            self.metadata.permutation.clone(),
        )
        .logical_strides()
    }
}

/// A physical (row-major) shape and the permutation that gives the logical order.
struct PermutedShape {
    physical: Vec<usize>,
    permutation: Option<Vec<usize>>,
}

impl PermutedShape {
    fn new(physical: Vec<usize>, permutation: Option<Vec<usize>>) -> PermutedShape {
        PermutedShape {
            physical,
            permutation,
        }
    }

    /// The logical shape and the strides (in elements) that read the row-major physical
    /// memory in logical order: logical axis `i` is physical axis `permutation[i]`.
    fn logical_strides(&self) -> (Vec<usize>, Vec<isize>) {
        // A shape that fits its buffer (checked by the callers) has row-major strides.
        let strides =
            row_major_strides(&self.physical).unwrap_or_else(|| vec![0; self.physical.len()]);
        match &self.permutation {
            None => (self.physical.clone(), strides),
            Some(p) => (
                p.iter().map(|&i| self.physical[i]).collect(),
                p.iter().map(|&i| strides[i]).collect(),
            ),
        }
    }
}

/// A read-only host array of `shape`/`strides` over `values`' buffer (Arrow primitive values)
/// starting at value `start`; `bool` values are unpacked (one recorded copy).
fn values_to_host(
    values: &ArrayRef,
    start: usize,
    shape: Vec<usize>,
    strides: Vec<isize>,
) -> Result<HostArray> {
    let dtype = ferry_dtype(values.data_type()).ok_or_else(|| Error::UnsupportedArrowType {
        column: String::new(),
        data_type: values.data_type().clone(),
        what_to_do: "tensor values must be f16, f32, f64, i8-i64, u8-u64 or bool",
    })?;
    let count = element_count(&shape).ok_or_else(|| Error::Shape {
        what: "a host array over Arrow values",
        shape: shape.clone(),
        dtype,
        reason: "overflows usize".into(),
    })?;
    if dtype == DType::Bool {
        let bools = values
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("Boolean type is a BooleanArray");
        if start.checked_add(count).is_none_or(|end| end > bools.len()) {
            return Err(Error::Arrow(
                arrow_schema::ArrowError::InvalidArgumentError(
                    "boolean values array is shorter than its tensors".into(),
                ),
            ));
        }
        // Unpacked in physical order; the strides (a permutation of row-major) read it in
        // logical order.
        let (flat, record) = unpack_bools(&bools.slice(start, count))?;
        let layout = StorageLayout {
            dtype,
            shape,
            strides,
            offset: 0,
        };
        return Ok(HostArray::from_storage(flat, layout)?.with_copy(record));
    }
    let data = values.to_data();
    let itemsize = dtype
        .size_in_bytes()
        .expect("Arrow primitives are whole bytes");
    let buffer = data.buffers()[0].clone();
    // Arrow's logical offset, in bytes, of the values array's first value inside its buffer.
    let first = data.offset() * itemsize;
    let len = data.len() * itemsize;
    if first.checked_add(len).is_none_or(|end| end > buffer.len()) {
        return Err(Error::Arrow(
            arrow_schema::ArrowError::InvalidArgumentError(
                "values array reaches past its buffer".into(),
            ),
        ));
    }
    let buffer = buffer.slice_with_length(first, len);
    host_over_buffer(
        buffer,
        StorageLayout {
            dtype,
            shape,
            strides,
            offset: start,
        },
    )
}

/// A primitive Arrow array of `len` values of `dtype` (not bool) over `buffer`, which holds
/// exactly those values, aligned for their type (typed constructors: `ArrayData`'s validating
/// builder and `make_array` would cost more than the rest of a zero-copy export).
fn primitive_array(dtype: DType, buffer: Buffer, len: usize) -> ArrayRef {
    use arrow_array::PrimitiveArray;
    use arrow_array::types::*;
    macro_rules! typed {
        ($t:ty) => {
            Arc::new(PrimitiveArray::<$t>::new(
                ScalarBuffer::new(buffer, 0, len),
                None,
            ))
        };
    }
    match dtype {
        DType::U8 => typed!(UInt8Type),
        DType::U16 => typed!(UInt16Type),
        DType::U32 => typed!(UInt32Type),
        DType::U64 => typed!(UInt64Type),
        DType::I8 => typed!(Int8Type),
        DType::I16 => typed!(Int16Type),
        DType::I32 => typed!(Int32Type),
        DType::I64 => typed!(Int64Type),
        DType::F16 => typed!(Float16Type),
        DType::F32 => typed!(Float32Type),
        DType::F64 => typed!(Float64Type),
        other => unreachable!("{other} is checked by arrow_type before values are built"),
    }
}

/// Axes or lengths of one array, inline up to 8 (no allocation on the export path).
type Axes = SmallVec<[usize; 8]>;

/// `order[j]` is the axis stored `j`-th, outermost first, when the array's memory is a
/// permutation of row-major (dense, positive strides); `None` otherwise. Axes of length 1 keep
/// their logical place among the others, so a row-major array gets the identity.
fn dense_order(shape: &[usize], strides: &[isize]) -> Option<Axes> {
    if shape.contains(&0) {
        return Some(identity(shape.len()));
    }
    let mut order: Axes = (0..shape.len()).filter(|&a| shape[a] > 1).collect();
    order.sort_by_key(|&a| std::cmp::Reverse(strides[a]));
    for unit in (0..shape.len()).filter(|&a| shape[a] == 1) {
        let at = order.iter().position(|&a| a > unit).unwrap_or(order.len());
        order.insert(at, unit);
    }
    let mut expected: isize = 1;
    for &axis in order.iter().rev() {
        if shape[axis] > 1 && strides[axis] != expected {
            return None;
        }
        expected = expected.checked_mul(isize::try_from(shape[axis]).ok()?)?;
    }
    Some(order)
}

fn identity(n: usize) -> Axes {
    (0..n).collect()
}

fn shape_error(what: &'static str, array: &HostArray, reason: &str) -> Error {
    Error::Shape {
        what,
        shape: array.shape().to_vec(),
        dtype: array.dtype(),
        reason: reason.into(),
    }
}

/// The fields of an `arrow.fixed_shape_tensor` column named `name` whose tensors have the
/// `physical` (stored) shape and `permutation`: the list's item field and the column's field
/// with its extension metadata. Both are immutable once made, so the last few made on this
/// thread are kept and shared (an `Arc` clone): building the metadata's JSON and maps costs
/// more than the rest of a zero-copy export, and a loop exports the same kind of column again
/// and again.
fn fixed_shape_fields(
    name: &str,
    value_type: &DataType,
    physical: &[usize],
    permutation: Option<Axes>,
) -> Result<(FieldRef, FieldRef)> {
    /// (name, value type, physical shape, permutation) → (item field, column field).
    type Entry = (
        (String, DataType, Vec<usize>, Option<Vec<usize>>),
        (FieldRef, FieldRef),
    );
    /// Kinds of columns kept per thread (most recent last).
    const KEPT: usize = 8;
    thread_local! {
        static FIELDS: std::cell::RefCell<Vec<Entry>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // `try_with`: from another thread-local's destructor, after this cache is gone, the fields
    // are made anew instead (`with` would panic there, and a panic there aborts). The
    // permutation is compared as a slice made once: with `as_deref` of the `Option<SmallVec>`
    // inside the search, the release build branched on the SmallVec's unused inline words
    // (memcheck reported it in the manylinux wheel; no Rust-level read of them).
    let permutation: Option<&[usize]> = permutation.as_deref();
    let mut found = None;
    let _ = FIELDS.try_with(|fields| {
        let fields = fields.borrow();
        found = fields
            .iter()
            .rev()
            .find(|((n, t, s, p), _)| {
                n == name && t == value_type && s == physical && p.as_deref() == permutation
            })
            .map(|(_, made)| made.clone());
    });
    if let Some(made) = found {
        return Ok(made);
    }
    // `fixed_size_list<item: T>`, items nullable (never null here): the storage type Arrow C++
    // and pyarrow require of the extension; with non-nullable items pyarrow drops the extension
    // type when it reads a Parquet file.
    let item = Arc::new(Field::new_list_field(value_type.clone(), true));
    let size = element_count(physical)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(i32::MAX);
    let storage = DataType::FixedSizeList(item.clone(), size);
    let permutation = permutation.map(|p| p.to_vec());
    let metadata = TensorMetadata {
        shape: Some(physical.to_vec()),
        permutation: permutation.clone(),
        ..TensorMetadata::default()
    };
    let field = Arc::new(metadata.on_field(Field::new(name, storage, false), FIXED_SHAPE_TENSOR));
    let made = (item, field);
    let _ = FIELDS.try_with(|fields| {
        let mut fields = fields.borrow_mut();
        if fields.len() == KEPT {
            fields.remove(0);
        }
        fields.push((
            (
                name.to_owned(),
                value_type.clone(),
                physical.to_vec(),
                permutation,
            ),
            made.clone(),
        ));
    });
    Ok(made)
}

/// A `FixedSizeList` array of `rows` lists of `prod(physical)` values, items of field `item`.
fn fixed_size_list(
    batch: &HostArray,
    item: FieldRef,
    physical: &[usize],
    rows: usize,
    values: ArrayRef,
) -> Result<ArrayRef> {
    let size = element_count(physical)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| {
            shape_error(
                "a fixed-shape tensor column",
                batch,
                "has tensors of more than 2^31-1 elements (Arrow's FixedSizeList size is i32): split each tensor",
            )
        })?;
    let list = FixedSizeListArray::try_new_with_length(item, size, values, None, rows)?;
    Ok(Arc::new(list))
}

/// The first tensor, after checking there is one and all share its dtype and rank.
fn check_tensors(tensors: &[HostArray]) -> Result<&HostArray> {
    let Some(first) = tensors.first() else {
        return Err(Error::Shape {
            what: "a tensor column from a list of tensors",
            shape: Vec::new(),
            dtype: DType::F32,
            reason: "got no tensors: a column's tensors set its dtype and rank, pass at least one"
                .into(),
        });
    };
    arrow_type(first.dtype())?;
    for t in tensors {
        if t.dtype() != first.dtype() || t.ndim() != first.ndim() {
            return Err(Error::Shape {
                what: "a tensor column from a list of tensors",
                shape: t.shape().to_vec(),
                dtype: t.dtype(),
                reason: format!(
                    "differs in dtype or rank from the first tensor ({}, {:?}); one column holds one dtype and rank",
                    first.dtype(),
                    first.shape()
                ),
            });
        }
    }
    Ok(first)
}

/// Every tensor's elements, row-major, one after the other, in one Arrow buffer (aligned for
/// every type): one recorded copy, plus one for each tensor that is not row-major.
fn concat_row_major(tensors: &[HostArray]) -> Result<(Buffer, CopyRecord)> {
    // Described as the flat column of every element it would hold.
    let out_of_memory = |bytes: usize| {
        let dtype = tensors.first().map_or(DType::U8, HostArray::dtype);
        Error::Core(ferry_core::Error::OutOfMemory {
            bytes,
            shape: vec![bytes / dtype.size_in_bytes().unwrap_or(1).max(1)],
            dtype,
        })
    };
    let total = tensors
        .iter()
        .try_fold(0usize, |total, t| total.checked_add(t.nbytes()))
        .ok_or_else(|| out_of_memory(usize::MAX))?;
    // Fallible, as every allocation a layout asks for is: an error, never an abort.
    let mut bytes = MutableBuffer::try_with_capacity(total).map_err(|_| out_of_memory(total))?;
    for t in tensors {
        let dense = t.to_contiguous(CopyPolicy::IfNeeded)?;
        bytes.extend_from_slice(dense.as_bytes().unwrap_or_default());
    }
    let record = record_copy(bytes.len() as u64, CopyReason::NonContiguous);
    Ok((bytes.into(), record))
}

/// A record batch of `columns` (all with the same number of rows), each field keeping its
/// extension metadata.
pub fn record_batch(columns: impl IntoIterator<Item = TensorColumn>) -> Result<RecordBatch> {
    let (fields, arrays): (Vec<FieldRef>, Vec<ArrayRef>) =
        columns.into_iter().map(|c| (c.field, c.array)).unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Every column of `batch` as a [`TensorColumn`] (refused if one is of a type ferry cannot
/// read; select the columns you need with [`column()`] instead).
pub fn columns(batch: &RecordBatch) -> Result<Vec<TensorColumn>> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| TensorColumn::try_new(f.clone(), a.clone()))
        .collect()
}

/// The column `name` of `batch`.
pub fn column(batch: &RecordBatch, name: &str) -> Result<TensorColumn> {
    let schema = batch.schema();
    let Some((index, field)) = schema.column_with_name(name) else {
        return Err(Error::NoSuchColumn {
            column: name.to_owned(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        });
    };
    TensorColumn::try_new(Arc::new(field.clone()), batch.column(index).clone())
}

/// A 1-D host array as an Arrow primitive (or boolean) array: zero-copy for numeric dtypes
/// when the array is contiguous (Arrow's buffer keeps the array's memory alive), else one
/// recorded copy.
pub fn to_arrow(array: &HostArray) -> Result<ArrayRef> {
    if array.ndim() != 1 {
        return Err(shape_error(
            "a primitive Arrow array",
            array,
            "is not 1-D: use TensorColumn::from_batch for a tensor column",
        ));
    }
    Ok(TensorColumn::from_batch("", array)?.array)
}

/// An Arrow primitive (or boolean) array as a 1-D read-only host array over Arrow's buffer (no
/// copy; `bool` is unpacked, one recorded copy). Nulls are refused.
pub fn from_arrow(array: &dyn Array) -> Result<HostArray> {
    let field = Arc::new(Field::new("", array.data_type().clone(), true));
    TensorColumn::try_new(field, make_array(array.to_data()))?.to_host()
}

/// Refuses an array that is not of its field's type.
pub(crate) fn check_type(field: &Field, array: &ArrayRef) -> Result<()> {
    if field.data_type() == array.data_type() {
        return Ok(());
    }
    Err(Error::InvalidExtension {
        column: field.name().clone(),
        extension: "field",
        reason: format!(
            "the field says {} but the array is {}",
            field.data_type(),
            array.data_type()
        ),
    })
}

/// Refuses an array whose buffers and children do not hold what its type and length say
/// (`ArrayData::validate`, without the per-value pass): checked once where a column enters,
/// so every read and export after sees a valid array. arrow-rs's safe constructors do not all
/// check (`FixedSizeListArray::try_new_with_length` multiplies its length by its size
/// unchecked, so a wrapped product passes), and `validate` itself can panic on such an array:
/// a panic is this error too.
fn check_structure(column: &str, array: &ArrayRef) -> Result<()> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let invalid = |reason: String| Error::InvalidExtension {
        column: column.to_owned(),
        extension: "array",
        reason: format!(
            "its buffers do not hold what its type {} and length {} say ({reason}); build it with a checked constructor",
            array.data_type(),
            array.len()
        ),
    };
    match catch_unwind(AssertUnwindSafe(|| array.to_data().validate())) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(invalid(error.to_string())),
        Err(payload) => {
            ferry_core::drop_without_unwinding(payload);
            Err(invalid("checking it panicked".to_owned()))
        }
    }
}
