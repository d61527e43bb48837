//! ferry dtypes ↔ Arrow primitive types: the ten both sides have one-to-one, `bool` (one byte
//! in ferry, one bit in Arrow), and a refusal that says what to cast to for the rest.

use arrow_schema::DataType;
use ferry_core::DType;

use crate::{Error, Result};

/// The Arrow type that holds `dtype`'s values: f16/f32/f64, i8–i64, u8–u64 one-to-one, and
/// `bool` as Arrow's bit-packed `Boolean` (a copy each way). bf16, complex and raw DLPack
/// dtypes are refused with what to cast to.
pub fn arrow_type(dtype: DType) -> Result<DataType> {
    Ok(match dtype {
        DType::Bool => DataType::Boolean,
        DType::U8 => DataType::UInt8,
        DType::U16 => DataType::UInt16,
        DType::U32 => DataType::UInt32,
        DType::U64 => DataType::UInt64,
        DType::I8 => DataType::Int8,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::F16 => DataType::Float16,
        DType::F32 => DataType::Float32,
        DType::F64 => DataType::Float64,
        DType::BF16 => {
            return Err(unsupported(
                dtype,
                "cast it to f32 first (HostArray::cast_to(DType::F32), exact for every bf16 value)",
            ));
        }
        DType::C64 | DType::C128 => {
            return Err(unsupported(
                dtype,
                "Arrow has no complex type: store the real and imaginary parts as two f32/f64 columns",
            ));
        }
        _ => {
            return Err(unsupported(
                dtype,
                "cast it in its framework to one Arrow has (f16, f32, f64, i8-i64, u8-u64, bool)",
            ));
        }
    })
}

/// The ferry dtype of an Arrow primitive or boolean type, `None` for every other type.
pub fn ferry_dtype(data_type: &DataType) -> Option<DType> {
    Some(match data_type {
        DataType::Boolean => DType::Bool,
        DataType::UInt8 => DType::U8,
        DataType::UInt16 => DType::U16,
        DataType::UInt32 => DType::U32,
        DataType::UInt64 => DType::U64,
        DataType::Int8 => DType::I8,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Float16 => DType::F16,
        DataType::Float32 => DType::F32,
        DataType::Float64 => DType::F64,
        _ => return None,
    })
}

fn unsupported(dtype: DType, what_to_do: &'static str) -> Error {
    Error::UnsupportedDtype { dtype, what_to_do }
}
