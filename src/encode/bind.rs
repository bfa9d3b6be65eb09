//! Binding encoders to a collection's fields: building the manifest records at `create` time
//! (optionally embedding the model files). Loading them back with an identity check and text
//! search live with the collection (`collection/encoders.rs`).

use std::path::{Path, PathBuf};

use super::source::ModelDir;
use super::EMBEDDED_MODELS_DIR;
use crate::error::Result;
use crate::meta::encoder::{EncoderOptions, EncoderRecord, FieldEncoders, Role};
use crate::storage::Directory;

/// What a user asks for when binding encoders to a field.
#[derive(Debug, Clone, Default)]
pub struct EncoderChoice {
    /// Passage model: folder or Hugging Face model id.
    pub passage: String,
    /// Passage encoder options.
    pub passage_options: EncoderOptions,
    /// Query model; `None` ties the query encoder to the passage model.
    pub query: Option<String>,
    /// Query encoder options. With a tied model they apply over the passage options (so a tied
    /// e5 model takes `prefix=query: ` here and `prefix=passage: ` for passages).
    pub query_options: EncoderOptions,
    /// Copy the model files into the database (`.models/<fingerprint>/`).
    pub embed: bool,
}

/// Loads the models a [`EncoderChoice`] names, checks them, copies them into the database at
/// `database_dir` when `embed` is set, and returns the records for
/// [`crate::Writer::set_encoders`]. The copies are made before the commit that references them;
/// a crash in between leaves an unreferenced copy, never a manifest naming a missing one. Open the
/// writer first: a writer collects, when it opens, copies that no commit references.
pub fn prepare_encoders(database_dir: &Path, choice: &EncoderChoice) -> Result<FieldEncoders> {
    prepare_encoders_in(&crate::storage::FsDirectory::new(database_dir), choice)
}

/// [`prepare_encoders`] for a database in any [`Directory`] (`database.directory()`).
pub fn prepare_encoders_in(dir: &dyn Directory, choice: &EncoderChoice) -> Result<FieldEncoders> {
    for (options, side) in [
        (&choice.passage_options, "passage"),
        (&choice.query_options, "query"),
    ] {
        if options.truncate.is_some() {
            return Err(crate::error::Error::parameter(
                format!("{side} encoder option truncate"),
                "truncate is a search-time option (search's --encoder-options, or the runtime options of load_encoder); a field does not record it",
            ));
        }
    }
    let passage_dir = ModelDir::resolve(&choice.passage)?;
    // A late-interaction checkpoint encodes queries and documents differently: each side's
    // record says which it is (dense encoders ignore the role).
    let passage_options = EncoderOptions {
        role: Some(Role::Passage),
        ..choice.passage_options.clone()
    };
    let passage = super::load(&passage_dir, &passage_options)?;
    let late = passage.record().late_interaction.is_some();
    let tensor = passage.record().output == crate::meta::encoder::OutputKind::Tensor;
    let (query_dir, query) = match &choice.query {
        // A tensor output (CLIP's hidden states) is stored, never searched: its field's query
        // slot holds the passage record itself.
        _ if tensor => (passage_dir.clone(), passage.record().clone()),
        // Tied: same files, so the passage encoder's load already checked weights and tokenizer.
        None => {
            // A ColBERT checkpoint's sides have their own lengths and prompts: the passage
            // side's max_length and prefix do not carry over to queries, nor does token
            // pooling (documents only).
            let base = if late {
                EncoderOptions {
                    max_length: None,
                    prefix: None,
                    pool_factor: None,
                    ..choice.passage_options.clone()
                }
            } else {
                choice.passage_options.clone()
            };
            let options = EncoderOptions {
                role: Some(Role::Query),
                ..base.overridden_by(&choice.query_options)
            };
            let fingerprint = &passage.record().fingerprint;
            let record = super::record_for(&passage_dir, &options, fingerprint)?;
            (passage_dir.clone(), record)
        }
        Some(source) => {
            let dir = ModelDir::resolve(source)?;
            let options = EncoderOptions {
                role: Some(Role::Query),
                ..choice.query_options.clone()
            };
            let enc = super::load(&dir, &options)?;
            (dir, enc.record().clone())
        }
    };
    let mut records = FieldEncoders {
        passage: passage.record().clone(),
        query,
    };
    if choice.embed {
        for (model, record) in [
            (&passage_dir, &mut records.passage),
            (&query_dir, &mut records.query),
        ] {
            model.copy_into(
                dir,
                &Path::new(EMBEDDED_MODELS_DIR).join(record.fingerprint_hex()),
            )?;
            record.embedded = true;
        }
    }
    Ok(records)
}

/// The encoders of a field whose query encoder is replaced by the model at `query` (a folder,
/// recorded by its absolute path, or a cached model id) with `options` over all of the current
/// query record's options (pooling, normalisation, length, prefix, dims, dtype), while its passage encoder
/// — and so every stored vector — stays as it is: a small query encoder trained against the
/// stored passage vectors. The new model must output the same dimensions; it is copied into the
/// database when `embed` is set (as [`prepare_encoders`] does).
pub fn replace_query_encoder(
    dir: &dyn Directory,
    current: &FieldEncoders,
    query: &str,
    options: &EncoderOptions,
    embed: bool,
) -> Result<FieldEncoders> {
    let path = Path::new(query);
    let source = match path.is_dir() {
        true => std::fs::canonicalize(path)
            .map_err(|e| crate::error::Error::io(path, e))?
            .display()
            .to_string(),
        false => query.to_string(),
    };
    let model = ModelDir::resolve(&source)?;
    let options = EncoderOptions {
        role: Some(Role::Query),
        ..current.query.options().overridden_by(options)
    };
    let enc = super::load(&model, &options)?;
    let mut record = enc.record().clone();
    if record.dims != current.query.dims || record.output != current.query.output {
        return Err(crate::error::Error::parameter(
            "query encoder",
            format!(
                "{query} outputs {} {} dims; the field's vectors have {} — a query encoder must match the stored passage vectors",
                record.dims,
                record.output.field_kind_name(),
                current.query.dims
            ),
        ));
    }
    if embed {
        model.copy_into(
            dir,
            &Path::new(EMBEDDED_MODELS_DIR).join(record.fingerprint_hex()),
        )?;
        record.embedded = true;
    }
    Ok(FieldEncoders {
        passage: current.passage.clone(),
        query: record,
    })
}

/// Where an embedded model of `record` lives in the database at `database_dir`.
pub fn embedded_dir(database_dir: &Path, record: &EncoderRecord) -> PathBuf {
    database_dir
        .join(EMBEDDED_MODELS_DIR)
        .join(record.fingerprint_hex())
}
