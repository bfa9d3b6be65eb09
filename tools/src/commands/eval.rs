//! `vellum eval`, `merge-runs` and `convert-run`: run files and their evaluation.

use std::io::Write;

use anyhow::{bail, Result};
use vellum::eval::{self, Qrels, Run};
use vellum::Database;

use crate::args::{ConvertRunArgs, EvalArgs, MergeRunsArgs};

pub fn run(a: EvalArgs, out: &mut dyn Write) -> Result<()> {
    if a.qrels.is_none() && a.answers.is_none() {
        bail!("nothing to evaluate: pass --qrels and/or --answers");
    }
    let run = Run::read(&a.run)?;
    let mut json = serde_json::Map::new();
    if let Some(q) = &a.qrels {
        let measures = eval::parse_measures(&a.metrics)?;
        let e = eval::evaluate(&Qrels::read(q)?, &run, &measures);
        for note in e.notes() {
            eprintln!("note: {note}");
        }
        if a.json {
            if let serde_json::Value::Object(m) = e.to_json(a.per_query) {
                json.extend(m);
            }
        } else {
            e.write_table(out, a.per_query)?;
        }
    }
    if let Some(answers) = &a.answers {
        let (Some(db), Some(collection)) = (&a.db, &a.collection) else {
            bail!("--answers needs --db and --collection: the passages' stored text is matched");
        };
        let snap = Database::open(db)?.snapshot()?;
        let coll = snap.collection(collection)?;
        let questions = eval::read_answers(answers)?;
        let acc = eval::answer_accuracy(&questions, &run, &a.topk, |id| {
            let doc = coll.get(id)?.ok_or_else(|| {
                vellum::Error::InvalidInput(format!(
                    "{}: document {id:?} is not in collection {collection} of {}",
                    a.run.display(),
                    db.display()
                ))
            })?;
            Ok(doc.text()?.to_string())
        })?;
        if a.json {
            let per_query = a.per_query && a.qrels.is_none();
            if let serde_json::Value::Object(m) = acc.to_json(per_query) {
                json.extend(m);
            }
            if a.per_query && a.qrels.is_some() {
                // Merge answer hits into the per-query objects of the measures.
                if let (Some(serde_json::Value::Object(pq)), serde_json::Value::Object(acc_pq)) = (
                    json.get_mut("per_query"),
                    acc.to_json(true)["per_query"].take(),
                ) {
                    for (q, v) in acc_pq {
                        match (pq.get_mut(&q), v) {
                            (
                                Some(serde_json::Value::Object(dst)),
                                serde_json::Value::Object(src),
                            ) => dst.extend(src),
                            (_, v) => {
                                pq.insert(q, v);
                            }
                        }
                    }
                }
            }
        } else {
            acc.write_table(out, questions.len(), a.per_query)?;
        }
    }
    if a.json {
        writeln!(out, "{}", serde_json::Value::Object(json))?;
    }
    Ok(())
}

pub fn merge_runs(a: MergeRunsArgs, out: &mut dyn Write) -> Result<()> {
    let runs = a
        .runs
        .iter()
        .map(|p| Ok((p.display().to_string(), Run::read(p)?)))
        .collect::<vellum::Result<Vec<_>>>()?;
    let merged = Run::merge(&runs, a.k)?;
    merged.write(out, a.format.into(), &a.tag, a.k)?;
    Ok(())
}

pub fn convert_run(a: ConvertRunArgs, out: &mut dyn Write) -> Result<()> {
    let run = Run::read(&a.input)?;
    run.write(out, a.to.into(), &a.tag, a.k)?;
    Ok(())
}
