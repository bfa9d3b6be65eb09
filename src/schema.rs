//! Collection schemas: the named vector fields a collection holds, fixed at creation.

use serde::{Deserialize, Serialize};

use crate::dtype::{DType, Metric};
use crate::error::{Error, Result};

/// Longest allowed collection or field name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Largest vector dimension accepted (a guard against absurd values in specs and files).
pub const MAX_DIM: u32 = 1 << 16;

/// Largest number of elements in one tensor value.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// What a vector field holds per document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FieldKind {
    /// Exactly one `dim`-dimensional vector per document.
    Dense {
        /// Vector dimension.
        dim: u32,
        /// Storage element type.
        dtype: DType,
        /// Similarity metric.
        metric: Metric,
    },
    /// A variable number (at least one) of `dim`-dimensional vectors per document: ColBERT tokens.
    Multi {
        /// Dimension of each token vector.
        dim: u32,
        /// Storage element type.
        dtype: DType,
        /// Per-token similarity metric used by MaxSim.
        metric: Metric,
    },
    /// One n-dimensional array of a fixed shape per document (image patches, pixels, ...).
    Tensor {
        /// The declared shape, outermost first.
        shape: Vec<u32>,
        /// Storage element type.
        dtype: DType,
    },
}

impl FieldKind {
    /// The storage element type.
    pub fn dtype(&self) -> DType {
        match self {
            FieldKind::Dense { dtype, .. }
            | FieldKind::Multi { dtype, .. }
            | FieldKind::Tensor { dtype, .. } => *dtype,
        }
    }

    /// Elements per stored row: `dim` for dense and for one multi token, the shape's product for tensors.
    pub fn row_elements(&self) -> usize {
        match self {
            FieldKind::Dense { dim, .. } | FieldKind::Multi { dim, .. } => *dim as usize,
            FieldKind::Tensor { shape, .. } => shape.iter().map(|&s| s as usize).product(),
        }
    }

    /// Short kind name: `dense`, `multi` or `tensor`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            FieldKind::Dense { .. } => "dense",
            FieldKind::Multi { .. } => "multi",
            FieldKind::Tensor { .. } => "tensor",
        }
    }
}

/// A named vector field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Field name, unique within the collection.
    pub name: String,
    /// What the field holds.
    #[serde(flatten)]
    pub kind: FieldKind,
}

impl FieldSpec {
    /// A dense field.
    ///
    /// ```
    /// use vellum::{FieldSpec, DType, Metric};
    /// let f = FieldSpec::dense("emb", 384, DType::F32, Metric::Cosine);
    /// assert_eq!(f.to_string(), "emb:dense:384:f32:cosine");
    /// ```
    pub fn dense(name: &str, dim: u32, dtype: DType, metric: Metric) -> Self {
        FieldSpec {
            name: name.to_string(),
            kind: FieldKind::Dense { dim, dtype, metric },
        }
    }

    /// A multi-vector (token) field.
    pub fn multi(name: &str, dim: u32, dtype: DType, metric: Metric) -> Self {
        FieldSpec {
            name: name.to_string(),
            kind: FieldKind::Multi { dim, dtype, metric },
        }
    }

    /// A tensor field of a fixed shape.
    pub fn tensor(name: &str, shape: &[u32], dtype: DType) -> Self {
        FieldSpec {
            name: name.to_string(),
            kind: FieldKind::Tensor {
                shape: shape.to_vec(),
                dtype,
            },
        }
    }

    /// Parses the command-line form `NAME:KIND:DIM[:DTYPE[:METRIC]]`, e.g. `emb:dense:384:f32:cosine`,
    /// `tok:multi:128:f16:ip` or `img:tensor:50x768:f16`.
    ///
    /// Defaults: dense `f32` + `ip`; multi `f16` + `ip`; tensor `f32`.
    ///
    /// ```
    /// use vellum::FieldSpec;
    /// let f = FieldSpec::parse("img:tensor:3x224x224:f16").unwrap();
    /// assert_eq!(f.kind.row_elements(), 3 * 224 * 224);
    /// assert!(FieldSpec::parse("emb:dense:0").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split(':').collect();
        let bad = |why: String| Error::Schema(format!("field spec {spec:?}: {why}"));
        if parts.len() < 3 {
            return Err(bad(
                "expected NAME:KIND:DIM[:DTYPE[:METRIC]] (e.g. emb:dense:384:f32:cosine)".into(),
            ));
        }
        let name = parts[0];
        let kind = parts[2];
        let dtype_at = |i: usize, default: DType| -> Result<DType> {
            parts.get(i).map_or(Ok(default), |s| DType::parse(s))
        };
        let metric_at = |i: usize| -> Result<Metric> {
            parts.get(i).map_or(Ok(Metric::Ip), |s| Metric::parse(s))
        };
        let parse_dim = |s: &str| -> Result<u32> {
            s.parse::<u32>()
                .map_err(|_| bad(format!("dimension {s:?} is not a positive integer")))
        };
        let field = match parts[1] {
            "dense" | "multi" => {
                if parts.len() > 5 {
                    return Err(bad("too many ':'-separated parts".into()));
                }
                let dim = parse_dim(kind)?;
                if parts[1] == "dense" {
                    FieldSpec::dense(name, dim, dtype_at(3, DType::F32)?, metric_at(4)?)
                } else {
                    FieldSpec::multi(name, dim, dtype_at(3, DType::F16)?, metric_at(4)?)
                }
            }
            "tensor" => {
                if parts.len() > 4 {
                    return Err(bad("tensor fields take NAME:tensor:SHAPE[:DTYPE]".into()));
                }
                let shape = kind
                    .split(['x', 'X', ','])
                    .map(parse_dim)
                    .collect::<Result<Vec<u32>>>()?;
                FieldSpec::tensor(name, &shape, dtype_at(3, DType::F32)?)
            }
            other => {
                return Err(bad(format!(
                    "unknown field kind {other:?}: expected dense, multi or tensor"
                )))
            }
        };
        field.validate()?;
        Ok(field)
    }

    /// Checks the name and dimensions.
    pub fn validate(&self) -> Result<()> {
        validate_name("field", &self.name)?;
        let check_dim = |dim: u32| {
            if dim == 0 || dim > MAX_DIM {
                Err(Error::Schema(format!(
                    "field {:?}: dimension {dim} is out of range 1..={MAX_DIM}",
                    self.name
                )))
            } else {
                Ok(())
            }
        };
        match &self.kind {
            FieldKind::Dense { dim, .. } | FieldKind::Multi { dim, .. } => check_dim(*dim),
            FieldKind::Tensor { shape, .. } => {
                if shape.is_empty() || shape.len() > 8 {
                    return Err(Error::Schema(format!(
                        "field {:?}: a tensor shape needs 1 to 8 dimensions, found {}",
                        self.name,
                        shape.len()
                    )));
                }
                shape.iter().try_for_each(|&d| check_dim(d))?;
                let total: u64 = shape.iter().map(|&d| d as u64).product();
                if total > MAX_TENSOR_ELEMENTS {
                    return Err(Error::Schema(format!(
                        "field {:?}: tensor of {total} elements exceeds the limit of {MAX_TENSOR_ELEMENTS}",
                        self.name
                    )));
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            FieldKind::Dense { dim, dtype, metric } => {
                write!(f, "{}:dense:{dim}:{dtype}:{metric}", self.name)
            }
            FieldKind::Multi { dim, dtype, metric } => {
                write!(f, "{}:multi:{dim}:{dtype}:{metric}", self.name)
            }
            FieldKind::Tensor { shape, dtype } => {
                let shape: Vec<String> = shape.iter().map(u32::to_string).collect();
                write!(f, "{}:tensor:{}:{dtype}", self.name, shape.join("x"))
            }
        }
    }
}

/// The fixed set of vector fields of a collection. Every document has a value for every field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    /// Fields in declaration order; a field's position is its index in segment files.
    pub fields: Vec<FieldSpec>,
}

impl Schema {
    /// An empty schema (documents then hold only id, text and metadata).
    pub fn new() -> Self {
        Schema::default()
    }

    /// Adds a field (builder style).
    ///
    /// ```
    /// use vellum::{Schema, FieldSpec, DType, Metric};
    /// let schema = Schema::new()
    ///     .with_field(FieldSpec::dense("emb", 4, DType::F32, Metric::Ip))
    ///     .with_field(FieldSpec::multi("tok", 8, DType::F16, Metric::Ip));
    /// schema.validate().unwrap();
    /// ```
    pub fn with_field(mut self, field: FieldSpec) -> Self {
        self.fields.push(field);
        self
    }

    /// Index of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Comma-separated field names, for error messages.
    pub fn field_names(&self) -> String {
        if self.fields.is_empty() {
            return "none".into();
        }
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks every field and that names are unique.
    pub fn validate(&self) -> Result<()> {
        if self.fields.len() > 256 {
            return Err(Error::Schema("at most 256 fields per collection".into()));
        }
        for (i, f) in self.fields.iter().enumerate() {
            f.validate()?;
            if self.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(Error::Schema(format!(
                    "field {:?} is declared twice",
                    f.name
                )));
            }
        }
        Ok(())
    }
}

/// Checks a collection or field name: 1 to 64 bytes of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Schema(format!(
            "{what} name {name:?} is invalid: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ - . (not starting with '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_examples() {
        let f = FieldSpec::parse("emb:dense:384:f32:cosine").unwrap();
        assert_eq!(f, FieldSpec::dense("emb", 384, DType::F32, Metric::Cosine));
        let f = FieldSpec::parse("tok:multi:128:f16:ip").unwrap();
        assert_eq!(f, FieldSpec::multi("tok", 128, DType::F16, Metric::Ip));
        let f = FieldSpec::parse("img:tensor:50x768:f16").unwrap();
        assert_eq!(f, FieldSpec::tensor("img", &[50, 768], DType::F16));
        for s in [
            "emb:dense:384:f32:cosine",
            "tok:multi:128:f16:ip",
            "img:tensor:50x768:f16",
        ] {
            assert_eq!(FieldSpec::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        for (spec, needle) in [
            ("emb", "expected NAME:KIND"),
            ("emb:sparse:3", "unknown field kind"),
            ("emb:dense:abc", "not a positive integer"),
            ("emb:dense:0", "out of range"),
            ("emb:dense:4:f64", "unknown element type"),
            ("emb:dense:4:f32:manhattan", "unknown metric"),
            ("bad/name:dense:4", "invalid"),
        ] {
            let err = FieldSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn duplicate_field_names_are_rejected() {
        let s = Schema::new()
            .with_field(FieldSpec::dense("a", 2, DType::F32, Metric::Ip))
            .with_field(FieldSpec::dense("a", 3, DType::F32, Metric::Ip));
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("declared twice"));
    }

    #[test]
    fn schema_json_round_trip() {
        let s = Schema::new()
            .with_field(FieldSpec::dense("a", 2, DType::F32, Metric::L2))
            .with_field(FieldSpec::tensor("t", &[2, 3], DType::Bf16));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Schema>(&json).unwrap(), s);
    }
}
