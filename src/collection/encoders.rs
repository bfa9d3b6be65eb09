//! A collection's encoders: the records bound to its fields, loading them back with an identity
//! check (the embedded copy when the database carries one), and text search with the field's own
//! query encoder.

use crate::encode::{embedded_dir, Encoder, EncoderOptions, EncoderRecord, ModelDir, Role};
use crate::error::{Error, Result};
use crate::search::{Hit, Queries, SearchRequest};

use super::Collection;

impl Collection {
    /// The record of `field`'s encoder in `role`, or an error naming the fields that have one.
    pub fn encoder_record(&self, field: &str, role: Role) -> Result<&EncoderRecord> {
        self.field_index(field)?;
        let enc = self.encoders(field).ok_or_else(|| Error::NoEncoder {
            collection: self.name().to_string(),
            field: field.to_string(),
            available: self.encoder_field_names(),
        })?;
        Ok(match role {
            Role::Passage => &enc.passage,
            Role::Query => &enc.query,
        })
    }

    fn encoder_field_names(&self) -> String {
        let names: Vec<&str> = self.all_encoders().keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The model folder of `field`'s encoder in `role`: the database's embedded copy when it has
    /// one, else the recorded source (a folder or a cached Hugging Face model). Its files are
    /// not checked against the fingerprint here ([`Collection::load_encoder`] does).
    pub fn encoder_dir(&self, field: &str, role: Role) -> Result<ModelDir> {
        let record = self.encoder_record(field, role)?;
        let wrap = |detail: String| Error::Encoder {
            collection: self.name().to_string(),
            field: field.to_string(),
            detail,
        };
        let dir = if record.embedded {
            let path = embedded_dir(self.database_dir(), record);
            if !path.exists() {
                // Collected by a newer commit (the field was rebound) while this snapshot was
                // held, or lost: say which.
                let store = crate::storage::FsDirectory::new(self.database_dir());
                let still = crate::snapshot::read_manifest(&store)
                    .map(|m| m.embedded_models().contains(record.fingerprint_hex()))
                    .unwrap_or(true);
                return Err(wrap(if still {
                    format!(
                        "the embedded copy of the {} encoder is missing at {}; check the database with verify",
                        role.name(),
                        path.display()
                    )
                } else {
                    format!(
                        "the embedded copy of the {} encoder was collected by a newer commit that rebound the field; take a new snapshot",
                        role.name()
                    )
                }));
            }
            ModelDir::at(path, &record.source).map_err(|e| {
                wrap(format!(
                    "the embedded copy of the {} encoder is damaged: {e}",
                    role.name()
                ))
            })?
        } else {
            ModelDir::resolve(&record.source).map_err(|e| {
                wrap(format!(
                    "the {} encoder's model {:?} is not available here ({e}); bring the model, or embed the model in the database when binding the encoders (EncoderChoice::embed) so that the database carries it",
                    role.name(),
                    record.source
                ))
            })?
        };
        Ok(dir)
    }

    /// Loads `field`'s encoder in `role` — the embedded copy when the database has one, else the
    /// recorded source — and checks that it is the model and options the field was built with.
    /// `runtime` may set the device, the batch size and `truncate` (late-interaction queries);
    /// other options come from the record.
    pub fn load_encoder(
        &self,
        field: &str,
        role: Role,
        runtime: &EncoderOptions,
    ) -> Result<Box<dyn Encoder>> {
        let record = self.encoder_record(field, role)?;
        let wrap = |detail: String| Error::Encoder {
            collection: self.name().to_string(),
            field: field.to_string(),
            detail,
        };
        let dir = self.encoder_dir(field, role)?;
        let options = EncoderOptions {
            device: runtime.device,
            batch_size: runtime.batch_size,
            truncate: runtime.truncate,
            ..record.options()
        };
        // The embedded copy is the database's own file: a copy that does not load or no longer
        // hashes to the recorded fingerprint is damage, not a mismatched encoder. (Loading
        // hashes the files once: the loaded record's fingerprint.)
        let damaged = |detail: String| {
            wrap(format!(
                "the embedded copy of the {} encoder at {} is damaged ({detail}); check the database with verify and restore the copy",
                role.name(),
                dir.dir.display()
            ))
        };
        if record
            .late_interaction
            .as_ref()
            .is_some_and(|li| li.role != role)
        {
            return Err(wrap(format!(
                "the {} encoder's record encodes the other side",
                role.name()
            )));
        }
        let encoder = crate::encode::load(&dir, &options).map_err(|e| {
            if record.embedded {
                damaged(e.to_string())
            } else {
                e
            }
        })?;
        let found = &encoder.record().fingerprint;
        if record.embedded && *found != record.fingerprint {
            return Err(damaged(format!(
                "its files hash to {found}, the manifest records {}",
                record.fingerprint
            )));
        }
        self.check_encoder(field, role, &*encoder)?;
        Ok(encoder)
    }

    /// Checks that `encoder` encodes exactly as `field`'s encoder in `role` (same model
    /// fingerprint and output-shaping options).
    pub fn check_encoder(&self, field: &str, role: Role, encoder: &dyn Encoder) -> Result<()> {
        let record = self.encoder_record(field, role)?;
        let diff = record.differences(encoder.record());
        if diff.is_empty() {
            return Ok(());
        }
        Err(Error::Encoder {
            collection: self.name().to_string(),
            field: field.to_string(),
            detail: format!(
                "the {} encoder does not match the one the field was built with: {}",
                role.name(),
                diff.join("; ")
            ),
        })
    }

    /// Text search: encodes `texts` with `encoder` (which must match the field's query encoder,
    /// see [`Collection::load_encoder`]) and runs `request` with them as its queries. The
    /// request's field, `k`, `ef`, `exact` and strategy are used; its queries are replaced.
    ///
    /// Returns one hit list per text, in order.
    ///
    /// ```
    /// use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions, Role};
    /// use vellum::{Database, Document, FieldSpec, Schema, SearchRequest};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Database::create(dir.path()).unwrap();
    /// let mut w = db.writer().unwrap();
    /// let schema = Schema::new().with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap());
    /// w.create_collection("docs", schema).unwrap();
    /// // A model folder in the Hugging Face layout (here the tiny test BERT); tied encoders.
    /// let choice = EncoderChoice {
    ///     passage: "tests/fixtures/encoders/tiny-a".into(),
    ///     passage_options: EncoderOptions::parse("pooling=mean,normalize=true").unwrap(),
    ///     ..Default::default()
    /// };
    /// w.set_encoders("docs", "emb", prepare_encoders(db.path(), &choice).unwrap()).unwrap();
    /// w.commit().unwrap();
    ///
    /// // Encode documents with the field's passage encoder (ingest::pipeline does this for files).
    /// let coll = db.snapshot().unwrap().collection("docs").unwrap().clone();
    /// let passage = coll.load_encoder("emb", Role::Passage, &EncoderOptions::default()).unwrap();
    /// for (id, text) in [("zsh", "a shell with lots of features"), ("gimp", "an image editor")] {
    ///     let v = passage.encode(&[text]).unwrap();
    ///     w.add("docs", Document::new(id).with_text(text).with_dense("emb", v)).unwrap();
    /// }
    /// w.commit().unwrap();
    ///
    /// let snap = db.snapshot().unwrap();
    /// let docs = snap.collection("docs").unwrap();
    /// let query = docs.load_encoder("emb", Role::Query, &EncoderOptions::default()).unwrap();
    /// let hits = docs.search_text(&query, &["a shell"], SearchRequest::text("emb", 1)).unwrap();
    /// assert_eq!(hits[0].len(), 1);
    /// ```
    pub fn search_text(
        &self,
        encoder: &dyn Encoder,
        texts: &[&str],
        request: SearchRequest<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        self.check_encoder(request.field, Role::Query, encoder)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = encoder.encode_texts(texts)?;
        let queries = Queries::from_encoded(&encoded, encoder.output());
        self.search(&SearchRequest { queries, ..request })
    }

    /// Text search with the field's own query encoder, loaded (the embedded copy when there is
    /// one) on first use and kept with this collection for later calls.
    ///
    /// ```
    /// # use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions};
    /// # use vellum::{Database, Document, FieldSpec, Schema, SearchRequest};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = Database::create(dir.path()).unwrap();
    /// # let mut w = db.writer().unwrap();
    /// # w.create_collection("docs", Schema::new().with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap())).unwrap();
    /// # let choice = EncoderChoice { passage: "tests/fixtures/encoders/tiny-a".into(), ..Default::default() };
    /// # w.set_encoders("docs", "emb", prepare_encoders(db.path(), &choice).unwrap()).unwrap();
    /// # w.add("docs", Document::new("a").with_dense("emb", vec![0.5; 32])).unwrap();
    /// # w.commit().unwrap();
    /// let snap = db.snapshot().unwrap();
    /// let docs = snap.collection("docs").unwrap();
    /// let hits = docs.search_texts(&["a shell"], SearchRequest::text("emb", 1)).unwrap();
    /// assert_eq!(hits[0][0].id, "a");
    /// ```
    pub fn search_texts(
        &self,
        texts: &[&str],
        request: SearchRequest<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let encoder = self.query_encoder(request.field)?;
        self.search_text(&*encoder, texts, request)
    }

    /// The query encoder of `field`, loaded with default runtime options on first use and cached.
    pub fn query_encoder(&self, field: &str) -> Result<std::sync::Arc<dyn Encoder>> {
        let mut cache = self.query_encoders.lock();
        if let Some(e) = cache.get(field) {
            return Ok(e.clone());
        }
        let e: std::sync::Arc<dyn Encoder> = self
            .load_encoder(field, Role::Query, &EncoderOptions::default())?
            .into();
        cache.insert(field.to_string(), e.clone());
        Ok(e)
    }
}
