//! Training data: queries with positive passages (and optionally hard negatives), read from
//! Tevatron's train JSONL, its id form, or queries + qrels; passages named by id are read from
//! the collection, as the field's passage encoder saw them at ingest (`title + " " + text`).
//! Hard negatives are mined from the collection itself with vellum search.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;
use vellum::ingest::text_input::{encoded_text, read_queries};
use vellum::{Collection, SearchRequest};

use crate::error::{Result, TrainError};

/// A passage of the training data: its id and the text its encoder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Document id (in the collection, or the training file's `docid`).
    pub id: String,
    /// The text encoded (`title + " " + text` when it has a title).
    pub text: String,
}

/// One training query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainQuery {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
    /// Relevant passages (at least one).
    pub positives: Vec<Passage>,
    /// Hard negatives given by the file.
    pub negatives: Vec<Passage>,
    /// Hard negatives mined from the collection ([`mine_negatives`]).
    pub mined: Vec<Passage>,
}

impl TrainQuery {
    /// The negatives training samples from: the given ones, unless there are none or
    /// `prefer_mined` is set, then the mined ones (when there are any).
    pub fn negative_pool(&self, prefer_mined: bool) -> &[Passage] {
        if (prefer_mined || self.negatives.is_empty()) && !self.mined.is_empty() {
            &self.mined
        } else {
            &self.negatives
        }
    }
}

/// A stored document as a passage: its id and the text its encoder read at ingest. A document
/// without text (ingested with vectors only) cannot train an encoder: an error names it.
pub fn passage_of(doc: &vellum::collection::DocRef<'_>) -> Result<Passage> {
    let meta = doc.metadata_json()?;
    let id = doc.id()?;
    let text = encoded_text(doc.text()?, meta.get("title").and_then(Value::as_str)).into_owned();
    if text.trim().is_empty() {
        return Err(TrainError::Invalid(format!(
            "document {id:?} has no text (ingested with vectors only?): training encodes passages from their text"
        )));
    }
    Ok(Passage {
        id: id.to_string(),
        text,
    })
}

/// The queries `qrels` judges (held-out sets), or an error when none is.
pub fn judged_queries(
    queries: Vec<vellum::ingest::text_input::TextQuery>,
    qrels: &vellum::eval::Qrels,
) -> Result<Vec<vellum::ingest::text_input::TextQuery>> {
    let queries: Vec<_> = queries
        .into_iter()
        .filter(|q| qrels.queries.contains_key(&q.id))
        .collect();
    if queries.is_empty() {
        return Err(TrainError::Invalid(
            "the held-out queries have no judgement in the held-out qrels".into(),
        ));
    }
    Ok(queries)
}

/// The passage `id` of the collection as its encoder read it, or an error naming where the id
/// came from.
fn stored(collection: &Collection, id: &str, file: &Path, line: usize) -> Result<Passage> {
    let doc = collection.get(id)?.ok_or_else(|| {
        TrainError::data(
            file,
            line,
            format!(
                "document id {id:?} is not in collection {:?} (train data naming ids must match the ingested documents)",
                collection.name()
            ),
        )
    })?;
    passage_of(&doc)
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads Tevatron's train JSONL: per line `query_id`, `query`, and either
/// `positive_passages` / `negative_passages` (lists of `{docid, title, text}`; the text is used
/// as given) or `positive_document_ids` / `negative_document_ids` (ids looked up in
/// `collection`). A line without a positive, an id not in the collection or a duplicate
/// query id is an error naming the line.
pub fn read_tevatron(path: &Path, collection: &Collection) -> Result<Vec<TrainQuery>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |d: String| TrainError::data(path, line_no, d);
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let id = ["query_id", "qid", "id", "_id"]
            .iter()
            .find_map(|k| v.get(*k))
            .and_then(id_of)
            .ok_or_else(|| at("missing \"query_id\" (a string or number)".into()))?;
        if let Some(first) = seen.insert(id.clone(), line_no) {
            return Err(at(format!("query id {id:?} also on line {first}")));
        }
        let query = v
            .get("query")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| at("missing or empty \"query\" text".into()))?
            .to_string();
        let passages = |list: &str, ids: &str| -> Result<Option<Vec<Passage>>> {
            if let Some(arr) = v.get(list) {
                let arr = arr
                    .as_array()
                    .ok_or_else(|| at(format!("\"{list}\" must be a list of passages")))?;
                let mut ps = Vec::with_capacity(arr.len());
                for (j, p) in arr.iter().enumerate() {
                    let pid = p
                        .get("docid")
                        .or_else(|| p.get("id"))
                        .and_then(id_of)
                        .ok_or_else(|| at(format!("{list}[{j}]: missing \"docid\"")))?;
                    let body = p
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| at(format!("{list}[{j}]: missing \"text\"")))?;
                    let title = p.get("title").and_then(Value::as_str);
                    ps.push(Passage {
                        id: pid,
                        text: encoded_text(body, title).into_owned(),
                    });
                }
                return Ok(Some(ps));
            }
            if let Some(arr) = v.get(ids) {
                let arr = arr
                    .as_array()
                    .ok_or_else(|| at(format!("\"{ids}\" must be a list of document ids")))?;
                let mut ps = Vec::with_capacity(arr.len());
                for (j, p) in arr.iter().enumerate() {
                    let pid = id_of(p).ok_or_else(|| {
                        at(format!("{ids}[{j}]: expected a document id, found {p}"))
                    })?;
                    ps.push(stored(collection, &pid, path, line_no)?);
                }
                return Ok(Some(ps));
            }
            Ok(None)
        };
        let positives =
            passages("positive_passages", "positive_document_ids")?.ok_or_else(|| {
                at("missing \"positive_passages\" (or \"positive_document_ids\")".into())
            })?;
        if positives.is_empty() {
            return Err(at(format!(
                "query {id:?} has no positive passage (its positive list is empty)"
            )));
        }
        let negatives = passages("negative_passages", "negative_document_ids")?.unwrap_or_default();
        out.push(TrainQuery {
            id,
            text: query,
            positives,
            negatives,
            mined: Vec::new(),
        });
    }
    if out.is_empty() {
        return Err(TrainError::data(path, 0, "no training query in the file"));
    }
    Ok(out)
}

/// Reads queries (TSV `qid<TAB>text` or JSONL, as `vellum search --queries`) with their
/// relevant documents from qrels (TREC or BEIR TSV, grade ≥ 1), the passages read from
/// `collection`. Queries without a relevant document are skipped (their number is returned);
/// a judged id not in the collection is an error naming it.
pub fn read_queries_qrels(
    queries: &Path,
    qrels: &Path,
    collection: &Collection,
) -> Result<(Vec<TrainQuery>, usize)> {
    let qs = read_queries(queries)?;
    let judged = vellum::eval::Qrels::read(qrels)?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for q in qs {
        let Some(docs) = judged.queries.get(&q.id) else {
            skipped += 1;
            continue;
        };
        let mut positives = Vec::new();
        for (doc, grade) in docs {
            if *grade >= 1 {
                let found = collection.get(doc)?.ok_or_else(|| {
                    TrainError::data(
                        qrels,
                        0,
                        format!(
                            "query {:?}: relevant document {doc:?} is not in collection {:?}",
                            q.id,
                            collection.name()
                        ),
                    )
                })?;
                positives.push(passage_of(&found)?);
            }
        }
        if positives.is_empty() {
            skipped += 1;
            continue;
        }
        out.push(TrainQuery {
            id: q.id,
            text: q.text,
            positives,
            negatives: Vec::new(),
            mined: Vec::new(),
        });
    }
    if out.is_empty() {
        return Err(TrainError::data(
            qrels,
            0,
            format!(
                "no query of {} has a relevant document in these qrels",
                queries.display()
            ),
        ));
    }
    Ok((out, skipped))
}

/// How hard negatives are mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiningConfig {
    /// Negatives kept per query: the best-ranked documents that are not its positives (the
    /// search retrieves `depth + skip +` positives).
    pub depth: usize,
    /// Ranks skipped at the top (likely unjudged positives), counted after removing positives.
    pub skip: usize,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            depth: 100,
            skip: 0,
        }
    }
}

/// Fills each query's `mined` list with the top `depth` documents vellum retrieves for it from
/// `field` (the field's own query encoder against the stored vectors), minus its positives and
/// the first `skip` ranks. Returns the number of negatives mined.
pub fn mine_negatives(
    collection: &Collection,
    field: &str,
    queries: &mut [TrainQuery],
    config: MiningConfig,
) -> Result<usize> {
    let mut total = 0;
    for chunk in queries.chunks_mut(256) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        let k =
            config.depth + config.skip + chunk.iter().map(|q| q.positives.len()).max().unwrap_or(0);
        let hits = collection.search_texts(&texts, SearchRequest::text(field, k))?;
        for (q, hits) in chunk.iter_mut().zip(hits) {
            let positives: BTreeSet<&str> = q.positives.iter().map(|p| p.id.as_str()).collect();
            let mut mined = Vec::new();
            for h in hits.iter().filter(|h| !positives.contains(h.id.as_str())) {
                if mined.len() == config.depth + config.skip {
                    break;
                }
                mined.push(h);
            }
            q.mined = mined
                .into_iter()
                .skip(config.skip)
                .map(|h| passage_of(&collection.doc(h.address)?))
                .collect::<Result<_>>()?;
            total += q.mined.len();
        }
    }
    Ok(total)
}
