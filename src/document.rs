//! Documents as handed to the writer.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::{FieldKind, Schema};

/// Longest accepted document id, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// The value of one vector field, as f32 (converted to the field's element type when stored).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// One vector of the field's dimension.
    Dense(Vec<f32>),
    /// `n_tokens × dim` values, row-major, with `n_tokens ≥ 1`.
    Multi(Vec<f32>),
    /// The tensor's elements in row-major (C) order.
    Tensor(Vec<f32>),
}

/// A document to add or upsert: id, text, metadata and one value per vector field.
///
/// ```
/// use vellum::Document;
/// let doc = Document::new("d1")
///     .with_text("A passage.")
///     .with_metadata(serde_json::json!({"title": "T"}))
///     .with_dense("emb", vec![0.1, 0.2, 0.3]);
/// assert_eq!(doc.id, "d1");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// Unique id within the collection: non-empty, at most 1024 bytes, no whitespace or control
    /// characters (ids appear in whitespace-separated run files).
    pub id: String,
    /// Stored text, returned with hits.
    pub text: String,
    /// Stored metadata (a JSON object), returned with hits.
    pub metadata: Map<String, Value>,
    /// Field values by field name.
    pub values: Vec<(String, FieldValue)>,
}

impl Document {
    /// A document with this id and no text, metadata or vectors yet.
    pub fn new(id: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            ..Default::default()
        }
    }

    /// Sets the text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// Sets the metadata. Anything other than a JSON object (or null) is stored under `"value"`.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = match metadata {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_string(), other)]),
        };
        self
    }

    /// Sets a dense field's vector.
    pub fn with_dense(mut self, field: &str, vector: Vec<f32>) -> Self {
        self.values
            .push((field.to_string(), FieldValue::Dense(vector)));
        self
    }

    /// Sets a multi-vector field's tokens (`n_tokens × dim`, row-major).
    pub fn with_multi(mut self, field: &str, tokens: Vec<f32>) -> Self {
        self.values
            .push((field.to_string(), FieldValue::Multi(tokens)));
        self
    }

    /// Sets a tensor field's elements (row-major).
    pub fn with_tensor(mut self, field: &str, data: Vec<f32>) -> Self {
        self.values
            .push((field.to_string(), FieldValue::Tensor(data)));
        self
    }

    /// Checks the document against `schema` and encodes its field values in schema order, in each
    /// field's element type.
    pub(crate) fn encode_fields(&self, collection: &str, schema: &Schema) -> Result<Vec<Vec<u8>>> {
        validate_id(&self.id)?;
        let bad = |msg: String| {
            Error::InvalidInput(format!(
                "collection {collection:?}, document {:?}: {msg}",
                self.id
            ))
        };
        for (name, _) in &self.values {
            if schema.field_index(name).is_none() {
                return Err(bad(format!(
                    "unknown field {name:?} (fields: {})",
                    schema.field_names()
                )));
            }
        }
        let mut out = Vec::with_capacity(schema.fields.len());
        for f in &schema.fields {
            let mut matching = self.values.iter().filter(|(n, _)| *n == f.name);
            let (_, value) = matching.next().ok_or_else(|| {
                bad(format!(
                    "missing a value for field {:?} ({})",
                    f.name,
                    f.kind.kind_name()
                ))
            })?;
            if matching.next().is_some() {
                return Err(bad(format!("field {:?} is given twice", f.name)));
            }
            out.push(encode_value(f, value, &bad)?);
        }
        Ok(out)
    }
}

/// Checks one field value against its field (kind, length, finite, within the element type's
/// range and the norm limit) and encodes it in the field's element type. `bad` wraps a message
/// into the caller's error (naming the collection and document).
pub(crate) fn encode_value(
    f: &crate::schema::FieldSpec,
    value: &FieldValue,
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<u8>> {
    let row = f.kind.row_elements();
    let data = match (&f.kind, value) {
        (FieldKind::Dense { .. }, FieldValue::Dense(v))
        | (FieldKind::Tensor { .. }, FieldValue::Tensor(v)) => {
            if v.len() != row {
                return Err(bad(format!(
                    "field {:?} expects {row} values ({}), found {}",
                    f.name,
                    f,
                    v.len()
                )));
            }
            v
        }
        (FieldKind::Multi { dim, .. }, FieldValue::Multi(v)) => {
            if v.is_empty() || v.len() % row != 0 {
                return Err(bad(format!("field {:?} expects a non-empty whole number of {dim}-dimensional token vectors, found {} values", f.name, v.len())));
            }
            v
        }
        _ => {
            return Err(bad(format!(
                "field {:?} is a {} field; the value given is of another kind",
                f.name,
                f.kind.kind_name()
            )))
        }
    };
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!(
            "field {:?}: element {i} is {} (vectors must be finite)",
            f.name, data[i]
        )));
    }
    let dtype = f.kind.dtype();
    if let Some((i, v)) = dtype.first_overflow(data) {
        return Err(bad(format!(
                "field {:?}: element {i} = {v:e} is out of the range of the field's element type {} (it would be stored as infinity)",
                f.name,
                dtype.name()
            )));
    }
    if !matches!(f.kind, FieldKind::Tensor { .. }) {
        for (t, vector) in data.chunks_exact(row).enumerate() {
            let norm = crate::dtype::norm_f64(vector);
            if norm > crate::dtype::MAX_VECTOR_NORM {
                let which = match f.kind {
                    FieldKind::Multi { .. } => format!("token vector {t}"),
                    _ => "the vector".into(),
                };
                return Err(bad(format!(
                        "field {:?}: {which} has norm {norm:e}, above the limit {:e} within which every score is a finite f32",
                        f.name,
                        crate::dtype::MAX_VECTOR_NORM
                    )));
            }
        }
    }
    let mut bytes = Vec::new();
    f.kind.dtype().encode_into(data, &mut bytes);
    Ok(bytes)
}

/// Checks an id: non-empty, at most [`MAX_ID_LEN`] bytes, no whitespace or control characters.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidInput("empty document id".into()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::InvalidInput(format!(
            "document id of {} bytes exceeds the limit of {MAX_ID_LEN}",
            id.len()
        )));
    }
    if let Some(c) = id.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidInput(format!("document id {id:?} contains {c:?}: ids may not contain whitespace or control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, FieldSpec, Metric};

    fn schema() -> Schema {
        Schema::new()
            .with_field(FieldSpec::dense("e", 2, DType::F16, Metric::Ip))
            .with_field(FieldSpec::multi("m", 2, DType::F32, Metric::Ip))
    }

    #[test]
    fn encodes_in_schema_order_and_dtype() {
        let d = Document::new("a")
            .with_multi("m", vec![1.0, 2.0, 3.0, 4.0])
            .with_dense("e", vec![1.0, 2.0]);
        let enc = d.encode_fields("c", &schema()).unwrap();
        assert_eq!(enc[0].len(), 4, "two f16 values");
        assert_eq!(enc[1].len(), 16, "four f32 values");
    }

    #[test]
    fn rejects_bad_documents_with_reasons() {
        let ok = || {
            Document::new("a")
                .with_dense("e", vec![1.0, 2.0])
                .with_multi("m", vec![1.0, 2.0])
        };
        let cases = [
            (
                Document::new("").with_dense("e", vec![1.0, 2.0]),
                "empty document id",
            ),
            (Document::new("a b"), "whitespace"),
            (
                Document::new("a").with_multi("m", vec![1.0, 2.0]),
                "missing a value for field \"e\"",
            ),
            (ok().with_dense("x", vec![1.0]), "unknown field \"x\""),
            (
                Document::new("a")
                    .with_dense("e", vec![1.0])
                    .with_multi("m", vec![1.0, 2.0]),
                "expects 2 values",
            ),
            (
                Document::new("a")
                    .with_dense("e", vec![f32::NAN, 1.0])
                    .with_multi("m", vec![1.0, 2.0]),
                "NaN",
            ),
            (
                Document::new("a")
                    .with_dense("e", vec![1.0, 2.0])
                    .with_multi("m", vec![1.0, 2.0, 3.0]),
                "whole number",
            ),
            (
                Document::new("a")
                    .with_dense("e", vec![1.0, 2.0])
                    .with_multi("m", vec![]),
                "non-empty",
            ),
            (
                Document::new("a")
                    .with_dense("e", vec![1.0, 2.0])
                    .with_dense("m", vec![1.0, 2.0]),
                "another kind",
            ),
        ];
        for (doc, needle) in cases {
            let err = doc.encode_fields("c", &schema()).unwrap_err().to_string();
            assert!(err.contains(needle), "expected {needle:?} in {err}");
        }
        ok().encode_fields("c", &schema()).unwrap();
    }
}
