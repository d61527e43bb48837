//! The canonical tensor extension types' metadata, read and written as the Arrow format spec
//! words it (`shape`, `dim_names`, `permutation`, `uniform_shape`), on ferry's own fields.
//!
//! arrow-rs 60's `FixedShapeTensor` cannot be used for this: it writes the key
//! `"permutations"` (the spec and pyarrow say `"permutation"`), writes absent keys as `null`,
//! and then refuses its own output (`null` is not a sequence) and pyarrow's (unknown field
//! `permutation`). ferry writes the spec's keys, omits absent ones, and reads the spec's keys,
//! arrow-rs's `permutations` spelling and `null` values.

use arrow_schema::Field;
use arrow_schema::extension::{EXTENSION_TYPE_METADATA_KEY, EXTENSION_TYPE_NAME_KEY};
use serde_json::{Map, Value};

/// The parameters of `arrow.fixed_shape_tensor` (`shape` set) or
/// `arrow.variable_shape_tensor` (`uniform_shape` possibly set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TensorMetadata {
    /// The physical (row-major) shape of each tensor (fixed-shape only).
    pub shape: Option<Vec<usize>>,
    /// Names of the physical dimensions.
    pub dim_names: Option<Vec<String>>,
    /// `permutation[i]` is the physical dimension that logical dimension `i` is.
    pub permutation: Option<Vec<usize>>,
    /// Per physical dimension, its length when every tensor has the same (variable-shape only).
    pub uniform_shape: Option<Vec<Option<i64>>>,
}

impl TensorMetadata {
    /// Parses the extension's JSON metadata and checks it against the rank `ndim`.
    pub fn parse(text: Option<&str>, ndim: Option<usize>) -> Result<TensorMetadata, String> {
        let value: Value = match text {
            None | Some("") => Value::Object(Map::new()),
            Some(text) => {
                serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?
            }
        };
        let Value::Object(map) = value else {
            return Err(format!("not a JSON object: {value}"));
        };
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        let metadata = TensorMetadata {
            shape: get("shape").map(|v| usizes(v, "shape")).transpose()?,
            dim_names: get("dim_names")
                .map(|v| {
                    serde_json::from_value::<Vec<String>>(v.clone())
                        .map_err(|_| format!("dim_names is not a list of strings: {v}"))
                })
                .transpose()?,
            permutation: get("permutation")
                .or_else(|| get("permutations"))
                .map(|v| usizes(v, "permutation"))
                .transpose()?,
            uniform_shape: get("uniform_shape")
                .map(|v| {
                    serde_json::from_value::<Vec<Option<i64>>>(v.clone()).map_err(|_| {
                        format!("uniform_shape is not a list of integers and nulls: {v}")
                    })
                })
                .transpose()?,
        };
        metadata.check(ndim.or(metadata.shape.as_ref().map(Vec::len)))?;
        Ok(metadata)
    }

    /// Checks the lists' lengths against the rank and that `permutation` is a permutation.
    pub fn check(&self, ndim: Option<usize>) -> Result<(), String> {
        let Some(ndim) = ndim else { return Ok(()) };
        let lengths = [
            ("shape", self.shape.as_ref().map(Vec::len)),
            ("dim_names", self.dim_names.as_ref().map(Vec::len)),
            ("permutation", self.permutation.as_ref().map(Vec::len)),
            ("uniform_shape", self.uniform_shape.as_ref().map(Vec::len)),
        ];
        for (key, len) in lengths {
            if let Some(len) = len.filter(|&len| len != ndim) {
                return Err(format!(
                    "{key} has {len} entries for tensors of rank {ndim}"
                ));
            }
        }
        if let Some(p) = &self.permutation {
            let mut seen = vec![false; ndim];
            for &i in p {
                if i >= ndim || std::mem::replace(&mut seen[i], true) {
                    return Err(format!(
                        "permutation {p:?} is not a permutation of 0..{ndim}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The logical shape of the fixed shape: physical dimension `permutation[i]` at `i`.
    pub fn logical_shape(&self) -> Vec<usize> {
        let shape = self.shape.clone().unwrap_or_default();
        self.to_logical(&shape)
    }

    /// Values given per physical dimension, in logical order.
    pub fn to_logical<T: Clone>(&self, physical: &[T]) -> Vec<T> {
        match &self.permutation {
            Some(p) => p.iter().map(|&i| physical[i].clone()).collect(),
            None => physical.to_vec(),
        }
    }

    /// The JSON text, with the spec's keys and without absent ones (written by hand: this is
    /// on the path of every zero-copy export, and a `serde_json::Value` costs more than the
    /// rest of that export).
    pub fn to_json(&self) -> String {
        use std::fmt::Write as _;
        fn list<T: std::fmt::Display>(out: &mut String, key: &str, items: &[T]) {
            let sep = if out.len() > 1 { "," } else { "" };
            let _ = write!(out, "{sep}\"{key}\":[");
            for (i, item) in items.iter().enumerate() {
                let _ = write!(out, "{}{item}", if i > 0 { "," } else { "" });
            }
            out.push(']');
        }
        let mut out = String::with_capacity(64);
        out.push('{');
        if let Some(shape) = &self.shape {
            list(&mut out, "shape", shape);
        }
        if let Some(names) = &self.dim_names {
            // JSON strings (escaped by serde_json).
            let names: Vec<String> = names
                .iter()
                .map(|n| Value::from(n.as_str()).to_string())
                .collect();
            list(&mut out, "dim_names", &names);
        }
        if let Some(p) = &self.permutation {
            list(&mut out, "permutation", p);
        }
        if let Some(u) = &self.uniform_shape {
            let dims: Vec<String> = u
                .iter()
                .map(|d| d.map_or_else(|| "null".to_owned(), |d| d.to_string()))
                .collect();
            list(&mut out, "uniform_shape", &dims);
        }
        out.push('}');
        out
    }

    /// `field` carrying extension `name` with this metadata (other metadata kept).
    pub fn on_field(&self, field: Field, name: &str) -> Field {
        let metadata = field
            .metadata()
            .clone()
            .with(EXTENSION_TYPE_NAME_KEY, name)
            .with(EXTENSION_TYPE_METADATA_KEY, self.to_json());
        field.with_metadata(metadata)
    }
}

fn usizes(value: &Value, key: &str) -> Result<Vec<usize>, String> {
    serde_json::from_value::<Vec<usize>>(value.clone())
        .map_err(|_| format!("{key} is not a list of non-negative integers: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_pyarrow_and_arrow_rs_spellings() {
        let spec = TensorMetadata::parse(Some(r#"{"shape":[2,3],"permutation":[1,0]}"#), None);
        let arrow_rs = TensorMetadata::parse(
            Some(r#"{"shape":[2,3],"dim_names":null,"permutations":[1,0]}"#),
            None,
        );
        assert_eq!(spec, arrow_rs);
        assert_eq!(spec.unwrap().logical_shape(), vec![3, 2]);
    }

    #[test]
    fn writes_the_spec_keys_only() {
        let m = TensorMetadata {
            shape: Some(vec![2, 3]),
            permutation: Some(vec![1, 0]),
            ..TensorMetadata::default()
        };
        assert_eq!(m.to_json(), r#"{"shape":[2,3],"permutation":[1,0]}"#);
        let named = TensorMetadata {
            dim_names: Some(vec!["a\"b".into(), "c".into()]),
            uniform_shape: Some(vec![None, Some(3)]),
            ..TensorMetadata::default()
        };
        assert_eq!(
            TensorMetadata::parse(Some(&named.to_json()), None).unwrap(),
            named
        );
    }

    #[test]
    fn refuses_bad_permutations_and_lengths() {
        for bad in [
            r#"{"shape":[2,3],"permutation":[0,0]}"#,
            r#"{"shape":[2,3],"permutation":[0,2]}"#,
            r#"{"shape":[2,3],"dim_names":["a"]}"#,
            r#"{"shape":[-1,3]}"#,
            r#"[1]"#,
            r#"{"shape":"#,
        ] {
            assert!(TensorMetadata::parse(Some(bad), None).is_err(), "{bad}");
        }
    }
}
