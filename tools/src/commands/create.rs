//! `vellum create`: a database (if missing) and a collection, with HNSW indexes and encoders.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use vellum::encode::{EncoderChoice, EncoderOptions};
use vellum::{Database, FieldSpec, Schema};

use super::progress::spinner;
use super::write_encoders;
use crate::args::CreateArgs;

pub fn run(a: CreateArgs, out: &mut dyn Write) -> Result<()> {
    let mut schema = Schema::new();
    for f in &a.fields {
        schema = schema.with_field(FieldSpec::parse(f)?);
    }
    schema.validate()?;
    let db = if a.db.join("MANIFEST").exists() {
        Database::open(&a.db)?
    } else {
        Database::create(&a.db)?
    };
    let mut w = db.writer()?;
    w.create_collection(&a.collection, schema.clone())?;
    for spec in &a.hnsw {
        let (field, params) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        w.set_index(
            &a.collection,
            field,
            Some(vellum::hnsw::HnswParams::parse(params)?),
        )?;
    }
    bind_encoders(&a, &db, &mut w)?;
    let c = w.commit()?;
    writeln!(
        out,
        "created collection {} in {} (generation {})",
        a.collection,
        a.db.display(),
        c.generation
    )?;
    for f in &schema.fields {
        writeln!(out, "  field {f}")?;
    }
    for (field, p) in w.committed().collection(&a.collection)?.indexes() {
        writeln!(out, "  index {field}: {p}")?;
    }
    for (field, e) in w.committed().collection(&a.collection)?.all_encoders() {
        write_encoders(out, field, e)?;
    }
    Ok(())
}

/// Parses the `FIELD=VALUE` lists of `create`'s encoder flags and binds encoders.
fn bind_encoders(a: &CreateArgs, db: &Database, w: &mut vellum::Writer) -> Result<()> {
    let split = |flag: &str, v: &String| -> Result<(String, String)> {
        let (f, rest) = v
            .split_once('=')
            .with_context(|| format!("{flag} {v:?}: expected FIELD=VALUE"))?;
        Ok((f.to_string(), rest.to_string()))
    };
    let mut choices: BTreeMap<String, EncoderChoice> = Default::default();
    for v in &a.encoders {
        let (field, model) = split("--encoder", v)?;
        let c = choices.entry(field).or_default();
        c.passage = model;
        c.embed = a.embed_model;
    }
    let known = |flag: &str, field: &str, choices: &BTreeMap<String, _>| {
        if choices.contains_key(field) {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "{flag} {field}=...: field {field:?} has no --encoder {field}=MODEL"
            ))
        }
    };
    for v in &a.query_encoders {
        let (field, model) = split("--query-encoder", v)?;
        known("--query-encoder", &field, &choices)?;
        choices.get_mut(&field).expect("known").query = Some(model);
    }
    for v in &a.encoder_options {
        let (field, list) = split("--encoder-options", v)?;
        known("--encoder-options", &field, &choices)?;
        choices.get_mut(&field).expect("known").passage_options = EncoderOptions::parse(&list)?;
    }
    for v in &a.query_encoder_options {
        let (field, list) = split("--query-encoder-options", v)?;
        known("--query-encoder-options", &field, &choices)?;
        choices.get_mut(&field).expect("known").query_options = EncoderOptions::parse(&list)?;
    }
    if a.embed_model && choices.is_empty() {
        bail!("--embed-model: no --encoder given, so there is no model to embed");
    }
    for (field, choice) in choices.iter_mut() {
        // An image encoder bound to a tensor field stores its hidden states (CLIP's penultimate
        // layer) unless told otherwise.
        let tensor = w
            .committed()
            .collection(&a.collection)
            .ok()
            .and_then(|c| {
                c.field_index(field)
                    .ok()
                    .map(|i| c.schema().fields[i].kind.clone())
            })
            .or_else(|| {
                a.fields
                    .iter()
                    .filter_map(|f| vellum::FieldSpec::parse(f).ok())
                    .find(|f| &f.name == field)
                    .map(|f| f.kind)
            })
            .is_some_and(|k| matches!(k, vellum::FieldKind::Tensor { .. }));
        if tensor && choice.passage_options.output.is_none() {
            choice.passage_options.output = Some(vellum::encode::OutputKind::Tensor);
        }
    }
    for (field, choice) in &choices {
        let spinner = spinner(&format!("loading the encoders of {field}"));
        let records = vellum::encode::prepare_encoders(db.path(), choice)
            .with_context(|| format!("--encoder {field}={}", choice.passage))?;
        spinner.finish_and_clear();
        w.set_encoders(&a.collection, field, records)?;
    }
    Ok(())
}
