//! The writer's catalogue changes: new collections, index declarations and encoder bindings,
//! published with the next commit.

use std::collections::BTreeMap;

use super::Writer;
use crate::error::{Error, Result};
use crate::meta::{FieldEncoders, HnswParams, OutputKind};
use crate::schema::{validate_name, FieldKind, Schema};

impl Writer {
    /// Creates a collection with a fixed schema (visible after commit).
    pub fn create_collection(&mut self, name: &str, schema: Schema) -> Result<()> {
        validate_name("collection", name)?;
        schema.validate()?;
        if self.base.manifest().collection(name).is_some()
            || self.new_collections.iter().any(|(n, _)| n == name)
        {
            return Err(Error::Schema(format!("collection {name:?} already exists")));
        }
        self.new_collections.push((name.to_string(), schema));
        Ok(())
    }

    /// The schema of `collection`, committed or created in this batch.
    pub fn schema_of(&self, collection: &str) -> Result<Schema> {
        if let Some(c) = self.base.manifest().collection(collection) {
            return Ok(c.schema.clone());
        }
        if let Some((_, s)) = self.new_collections.iter().find(|(n, _)| n == collection) {
            return Ok(s.clone());
        }
        let mut names: Vec<&str> = self
            .base
            .manifest()
            .collections
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        names.extend(self.new_collections.iter().map(|(n, _)| n.as_str()));
        Err(Error::NoSuchCollection {
            name: collection.to_string(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        })
    }

    /// The approximate indexes declared for `collection` (including changes of this batch).
    pub fn indexes_of(&self, collection: &str) -> BTreeMap<String, HnswParams> {
        if let Some(m) = self.index_changes.get(collection) {
            return m.clone();
        }
        self.base
            .manifest()
            .collection(collection)
            .map(|c| c.indexes.clone())
            .unwrap_or_default()
    }

    /// Declares (`Some`) or drops (`None`) an HNSW index on dense field `field`, from this commit
    /// on: segments written afterwards (by flushes, commits and compactions) with at least
    /// `params.min_rows` rows carry the field's graph. Existing segments are not rewritten; use
    /// [`Writer::reindex`] (or `vellum index`) to build graphs for them.
    pub fn set_index(
        &mut self,
        collection: &str,
        field: &str,
        params: Option<HnswParams>,
    ) -> Result<()> {
        let schema = self.schema_of(collection)?;
        match schema.field_index(field).map(|i| &schema.fields[i].kind) {
            Some(FieldKind::Dense { .. }) => {}
            Some(kind) => {
                return Err(Error::wrong_kind(
                    collection,
                    field,
                    kind.kind_name(),
                    "HNSW indexes dense fields",
                ))
            }
            None => {
                return Err(Error::NoSuchField {
                    collection: collection.into(),
                    field: field.into(),
                    available: schema.field_names(),
                })
            }
        }
        if let Some(p) = &params {
            p.validate()?;
        }
        let mut indexes = self.indexes_of(collection);
        match params {
            Some(p) => indexes.insert(field.to_string(), p),
            None => indexes.remove(field),
        };
        if let Some(p) = self.pending.get_mut(collection) {
            p.indexes = indexes.clone();
        }
        self.index_changes.insert(collection.to_string(), indexes);
        Ok(())
    }

    /// The PLAID indexes declared for `collection` (including changes of this batch).
    pub fn plaid_of(&self, collection: &str) -> BTreeMap<String, crate::meta::PlaidParams> {
        if let Some(m) = self.plaid_changes.get(collection) {
            return m.clone();
        }
        self.base
            .manifest()
            .collection(collection)
            .map(|c| c.plaid.clone())
            .unwrap_or_default()
    }

    /// Declares (`Some`) or drops (`None`) a PLAID index on multi-vector field `field` (inner
    /// product or cosine, dimension a multiple of 8), from this commit on: segments written
    /// afterwards with at least `params.min_rows` rows carry the field's PLAID section, encoded
    /// with the collection's current codec (the first such segment trains it). Use
    /// [`Writer::reindex`] (or `vellum index --plaid`) to index existing segments and train the
    /// codec on all documents.
    pub fn set_plaid(
        &mut self,
        collection: &str,
        field: &str,
        params: Option<crate::meta::PlaidParams>,
    ) -> Result<()> {
        let schema = self.schema_of(collection)?;
        let Some(fi) = schema.field_index(field) else {
            return Err(Error::NoSuchField {
                collection: collection.into(),
                field: field.into(),
                available: schema.field_names(),
            });
        };
        if let Err(detail) = crate::plaid::build::check_field(&schema.fields[fi].kind) {
            return Err(Error::wrong_kind(
                collection,
                field,
                schema.fields[fi].kind.kind_name(),
                detail,
            ));
        }
        if let Some(p) = &params {
            p.validate()?;
        }
        let mut plaid = self.plaid_of(collection);
        let before = match params {
            Some(p) => plaid.insert(field.to_string(), p),
            None => plaid.remove(field),
        };
        let same_codec = matches!((&before, &params), (Some(a), Some(b)) if a.same_codec(b));
        if let Some(p) = self.pending.get_mut(collection) {
            p.plaid = plaid.clone();
            // Parameters that shape the codec changed: a new codec, trained by the next segment
            // written.
            if !same_codec {
                p.codecs.remove(field);
            }
        }
        self.plaid_changes.insert(collection.to_string(), plaid);
        Ok(())
    }

    /// Binds encoders to dense field `field` from this commit on (replacing earlier ones). The
    /// records come from [`crate::encode::TextEncoder::record`]; their output dimensions must
    /// equal the field's. Documents already stored are not re-encoded.
    pub fn set_encoders(
        &mut self,
        collection: &str,
        field: &str,
        encoders: FieldEncoders,
    ) -> Result<()> {
        let schema = self.schema_of(collection)?;
        let Some(kind) = schema.field_index(field).map(|i| &schema.fields[i].kind) else {
            return Err(Error::NoSuchField {
                collection: collection.into(),
                field: field.into(),
                available: schema.field_names(),
            });
        };
        for (role, r) in [("passage", &encoders.passage), ("query", &encoders.query)] {
            let Some(dim) = r.output.fills(kind) else {
                return Err(Error::wrong_kind(
                    collection,
                    field,
                    kind.kind_name(),
                    format!(
                        "the {role} encoder ({}) outputs {} vectors, which fill {} fields",
                        r.source,
                        r.output.field_kind_name(),
                        r.output.field_kind_name()
                    ),
                ));
            };
            if let (OutputKind::Tensor, FieldKind::Tensor { shape, .. }) = (r.output, kind) {
                if shape[0] as usize != r.max_length {
                    return Err(Error::Encoder {
                        collection: collection.into(),
                        field: field.into(),
                        detail: format!(
                            "the {role} encoder ({}) outputs [{}, {}] arrays but the field's shape is {shape:?}; declare the field as tensor:{}x{}",
                            r.source, r.max_length, r.dims, r.max_length, r.dims
                        ),
                    });
                }
            }
            if r.dims != dim {
                return Err(Error::Encoder {
                    collection: collection.into(),
                    field: field.into(),
                    detail: format!(
                        "the {role} encoder ({}) outputs {} dimensions but the field has {dim}; declare the field with {} dimensions or set dims={dim} (Matryoshka truncation)",
                        r.source, r.dims, r.dims
                    ),
                });
            }
        }
        encoders
            .validate()
            .map_err(|e| Error::parameter("encoder", e))?;
        self.encoder_changes
            .insert((collection.to_string(), field.to_string()), encoders);
        Ok(())
    }

    /// The encoders bound to `field` (including changes of this batch).
    pub fn encoders_of(&self, collection: &str, field: &str) -> Option<FieldEncoders> {
        if let Some(e) = self
            .encoder_changes
            .get(&(collection.to_string(), field.to_string()))
        {
            return Some(e.clone());
        }
        self.base
            .manifest()
            .collection(collection)
            .and_then(|c| c.encoders.get(field).cloned())
    }
}
