//! Late-interaction (ColBERT) encoders against their reference implementations: tiny random
//! checkpoints in the Stanford, PyLate and sentence-transformers 6 layouts, with the token vectors
//! PyLate and sentence-transformers computed (`tests/fixtures/colbert/generate.py`).

use vellum::encode::{load, Encoder, EncoderOptions, ModelDir, Prepared, Role};

use crate::common::fixture_path;

/// One text's reference: token ids (when the generator recorded them) and vectors.
struct Reference {
    ids: Option<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
}

struct Side {
    texts: Vec<String>,
    refs: Vec<Reference>,
}

fn reference(model: &str, side: &str) -> Side {
    let text = std::fs::read_to_string(fixture_path("colbert/reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let texts = r[side]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let refs = r["models"][model][side]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Reference {
            ids: e.get("ids").map(|ids| {
                ids.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as u32)
                    .collect()
            }),
            vectors: e["vectors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect()
                })
                .collect(),
        })
        .collect();
    Side { texts, refs }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn encoder(model: &str, role: Role, truncate: bool) -> Box<dyn Encoder> {
    let dir =
        ModelDir::resolve(fixture_path(&format!("colbert/{model}")).to_str().unwrap()).unwrap();
    let options = EncoderOptions {
        role: Some(role),
        truncate: Some(truncate),
        ..Default::default()
    };
    load(&dir, &options).unwrap()
}

fn check_parity(model: &str) {
    for (side, role) in [("queries", Role::Query), ("documents", Role::Passage)] {
        let reference = reference(model, side);
        let enc = encoder(model, role, true);
        let li = enc.record().late_interaction.clone().unwrap();
        assert_eq!(li.role, role);
        let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
        let out = enc.encode_texts(&texts).unwrap();
        assert_eq!(out.len(), texts.len());
        let mut worst = 1f64;
        let mut tokens = 0;
        for (i, (got, want)) in out.per_input().zip(&reference.refs).enumerate() {
            let label = format!("{model} {side} {i} {:?}", texts[i]);
            assert_eq!(
                got.len() / out.dims,
                want.vectors.len(),
                "{label}: token count"
            );
            if let Some(ids) = &want.ids {
                let prepared = enc
                    .prepare(&vellum::encode::EncoderInput::Text(texts[i]))
                    .unwrap();
                let kept: Vec<u32> = prepared
                    .tokens()
                    .iter()
                    .copied()
                    .filter(|t| li.skiplist.binary_search(t).is_err())
                    .collect();
                assert_eq!(&kept, ids, "{label}: token ids");
                if role == Role::Query && li.expansion.is_some_and(|e| !e.attend) {
                    assert!(matches!(
                        prepared,
                        Prepared::Expanded { .. } | Prepared::Tokens(_)
                    ));
                }
            }
            for (g, w) in got.chunks(out.dims).zip(&want.vectors) {
                let c = cosine(g, w);
                worst = worst.min(c);
                assert!(c >= 0.99999, "{label}: token cosine {c}");
                tokens += 1;
            }
        }
        assert!(
            tokens > 200,
            "{model} {side}: only {tokens} tokens compared"
        );
        eprintln!("{model} {side}: {tokens} tokens, worst cosine {worst}");
    }
}

#[test]
fn stanford_checkpoint_matches_pylate_and_sentence_transformers() {
    check_parity("stanford");
}

#[test]
fn pylate_checkpoint_matches_pylate() {
    check_parity("pylate");
}

#[test]
fn sentence_transformers_multi_vector_checkpoint_matches_sentence_transformers() {
    check_parity("st6");
}
