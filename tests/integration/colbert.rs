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

/// PyLate over a ModernBERT backbone (rotary positions, GeGLU, local and global layers): checks
/// vellum's ModernBERT pass against transformers' through PyLate and sentence-transformers.
#[test]
fn pylate_modernbert_checkpoint_matches_pylate() {
    check_parity("pylate-modernbert");
}

#[test]
fn sentence_transformers_multi_vector_checkpoint_matches_sentence_transformers() {
    check_parity("st6");
}

mod database {
    use std::path::{Path, PathBuf};

    use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions, Role};
    use vellum::ingest::pipeline::{ingest_text, TextIngest};
    use vellum::{Database, Error, FieldSpec, Schema, SearchRequest};

    use crate::common::fixture_path;

    fn model(name: &str) -> String {
        fixture_path(&format!("colbert/{name}"))
            .to_str()
            .unwrap()
            .to_string()
    }

    fn corpus(dir: &Path, n: usize) -> PathBuf {
        let all = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/debian/corpus.jsonl"),
        )
        .unwrap();
        let lines: Vec<&str> = all.lines().take(n).collect();
        let p = dir.join("corpus.jsonl");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    fn db_with(dir: &Path, field: &str, checkpoint: &str) -> vellum::Result<Database> {
        let db = Database::create(dir.join("db"))?;
        let mut w = db.writer()?;
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::parse(field).unwrap()),
        )?;
        let choice = EncoderChoice {
            passage: model(checkpoint),
            embed: true,
            ..Default::default()
        };
        let name = field.split(':').next().unwrap();
        w.set_encoders("docs", name, prepare_encoders(db.path(), &choice)?)?;
        w.commit()?;
        Ok(db)
    }

    /// MaxSim of `q` (`dims`-wide rows) against `d`.
    fn maxsim(q: &[f32], d: &[f32], dims: usize) -> f32 {
        q.chunks(dims)
            .map(|qt| {
                d.chunks(dims)
                    .map(|dt| qt.iter().zip(dt).map(|(a, b)| a * b).sum::<f32>())
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .sum()
    }

    #[test]
    fn text_in_token_vectors_stored_text_queries_scored_by_maxsim() {
        let t = tempfile::tempdir().unwrap();
        let db = db_with(t.path(), "tok:multi:16:f32:ip", "pylate").unwrap();
        let docs = corpus(t.path(), 60);
        let mut w = db.writer().unwrap();
        let mut job = TextIngest::new("docs", &docs);
        job.commit_every = 25;
        let stats = ingest_text(&mut w, &job, &mut |_| {}).unwrap();
        assert_eq!(stats.documents, 60);
        drop(w);

        let snap = db.snapshot().unwrap();
        let c = snap.collection("docs").unwrap();
        let records = c.encoders("tok").unwrap();
        assert!(records.passage.embedded && records.tied());
        let (p, q) = (
            records.passage.late_interaction.as_ref().unwrap(),
            records.query.late_interaction.as_ref().unwrap(),
        );
        assert_eq!((p.role, q.role), (Role::Passage, Role::Query));
        assert!(q.expansion.is_some() && p.expansion.is_none() && !p.skiplist.is_empty());
        assert_eq!(
            (records.query.max_length, records.passage.max_length),
            (20, 40)
        );

        // The stored token matrices are the passage encoder's output for the documents' text.
        let passage = c
            .load_encoder("tok", Role::Passage, &EncoderOptions::default())
            .unwrap();
        let texts: Vec<(String, String)> = std::fs::read_to_string(&docs)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        let encoded = passage.encode_texts(&refs).unwrap();
        let stored: Vec<Vec<f32>> = texts
            .iter()
            .map(|(id, _)| {
                c.get(id)
                    .unwrap()
                    .unwrap()
                    .multi("tok")
                    .unwrap()
                    .tokens
                    .to_f32_vec()
            })
            .collect();
        for (s, e) in stored.iter().zip(encoded.per_input()) {
            assert_eq!(s.as_slice(), e);
        }

        // Text search encodes with the query encoder and ranks by exact MaxSim.
        let queries = ["terminal emulator", "a library for parsing XML documents"];
        let hits = c
            .search_texts(&queries, SearchRequest::text("tok", 5))
            .unwrap();
        let query_encoder = c.query_encoder("tok").unwrap();
        let encoded_queries = query_encoder.encode_texts(&queries).unwrap();
        assert!(
            encoded_queries.rows.iter().all(|&r| r == 20),
            "expanded to 20 tokens"
        );
        for (h, qv) in hits.iter().zip(encoded_queries.per_input()) {
            let mut want: Vec<(f32, &str)> = texts
                .iter()
                .zip(&stored)
                .map(|((id, _), d)| (maxsim(qv, d, 16), id.as_str()))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            assert_eq!(h.len(), 5);
            for (got, (score, id)) in h.iter().zip(&want) {
                assert_eq!(got.id, *id);
                assert!((got.score - score).abs() < 1e-4, "{} vs {score}", got.score);
            }
        }
    }

    /// A re-encoded field with a PLAID index: its codec is trained on the first piece and shared
    /// by the others, and accounts for that piece only, so the next compaction re-clusters over
    /// every row (the piece is the oldest rows, not a sample of the collection).
    #[test]
    fn a_reencoded_plaid_field_reclusters_at_the_next_compaction() {
        use vellum::ingest::reencode::{reencode, Reencode};
        use vellum::meta::PlaidParams;
        let t = tempfile::tempdir().unwrap();
        let db = db_with(t.path(), "tok:multi:16:f32:ip", "stanford").unwrap();
        let docs = corpus(t.path(), 60);
        let mut w = db.writer().unwrap();
        ingest_text(&mut w, &TextIngest::new("docs", &docs), &mut |_| {}).unwrap();
        let params = PlaidParams {
            min_rows: 5,
            ..Default::default()
        };
        w.set_plaid("docs", "tok", Some(params)).unwrap();
        w.reindex("docs").unwrap();
        let codecs = |db: &Database| -> Vec<(u64, u64)> {
            let snap = db.snapshot().unwrap();
            let c = snap.collection("docs").unwrap();
            c.slots()
                .iter()
                .map(|s| {
                    let v = s.segment.plaid(0).unwrap().unwrap();
                    (v.codec_id, v.trained_rows)
                })
                .collect()
        };
        assert_eq!(codecs(&db), [(codecs(&db)[0].0, 60)]);
        let choice = EncoderChoice {
            passage: model("stanford"),
            embed: true,
            ..Default::default()
        };
        let again = prepare_encoders(db.path(), &choice).unwrap();
        let mut job = Reencode::new("docs", "tok", Some(again));
        job.piece_rows = 20;
        reencode(&mut w, &job, &mut |_| {}).unwrap();
        let pieces = codecs(&db);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|&p| p == (pieces[0].0, 20)), "{pieces:?}");
        w.compact("docs").unwrap();
        let after = codecs(&db);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1, 60);
        assert_ne!(after[0].0, pieces[0].0, "re-clustered");
        let report = vellum::verify::verify_database(db.path()).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }

    #[test]
    fn mismatched_fields_checkpoints_and_queries_are_refused() {
        let t = tempfile::tempdir().unwrap();
        // A ColBERT checkpoint on a dense field, and a head of another size than the field.
        let e = db_with(&t.path().join("a"), "emb:dense:16:f32:cosine", "pylate").unwrap_err();
        assert!(
            matches!(&e, Error::WrongFieldKind { .. }) && e.to_string().contains("multi"),
            "{e}"
        );
        let e = db_with(&t.path().join("b"), "tok:multi:128:f16:ip", "stanford").unwrap_err();
        assert!(e.to_string().contains("16 dimensions"), "{e}");
        // A dense encoder on a multi-vector field.
        let db = Database::create(t.path().join("c")).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::parse("tok:multi:32:f32:ip").unwrap()),
        )
        .unwrap();
        let dense = EncoderChoice {
            passage: fixture_path("encoders/tiny-a").display().to_string(),
            ..Default::default()
        };
        let e = w
            .set_encoders("docs", "tok", prepare_encoders(db.path(), &dense).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("dense"), "{e}");

        // Checkpoints missing their metadata or head.
        let broken = t.path().join("broken");
        copy_dir(&fixture_path("colbert/stanford"), &broken);
        std::fs::remove_file(broken.join("artifact.metadata")).unwrap();
        let e = load_err(&broken);
        assert!(e.contains("artifact.metadata"), "{e}");
        let broken = t.path().join("headless");
        copy_dir(&fixture_path("colbert/pylate"), &broken);
        std::fs::remove_dir_all(broken.join("1_Dense")).unwrap();
        let e = load_err(&broken);
        assert!(e.contains("1_Dense/config.json"), "{e}");
        let broken = t.path().join("stanford-headless");
        copy_dir(&fixture_path("colbert/base"), &broken);
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(broken.join("config.json")).unwrap())
                .unwrap();
        config["architectures"] = serde_json::json!(["HF_ColBERT"]);
        std::fs::write(broken.join("config.json"), config.to_string()).unwrap();
        std::fs::copy(
            fixture_path("colbert/stanford/artifact.metadata"),
            broken.join("artifact.metadata"),
        )
        .unwrap();
        let e = load_err(&broken);
        assert!(e.contains("linear.weight"), "{e}");

        // A query longer than the query length is refused, unless truncation is asked for.
        let db = db_with(&t.path().join("d"), "tok:multi:16:f32:ip", "stanford").unwrap();
        let c = db.snapshot().unwrap().collection("docs").unwrap().clone();
        let long = "a very long query about terminal emulators ".repeat(8);
        let e = c
            .search_texts(&[long.as_str()], SearchRequest::text("tok", 3))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("query length of 24 tokens") && e.contains("truncate=true"),
            "{e}"
        );
        let truncating = c
            .load_encoder(
                "tok",
                Role::Query,
                &EncoderOptions::parse("truncate=true").unwrap(),
            )
            .unwrap();
        assert_eq!(
            truncating.encode_texts(&[long.as_str()]).unwrap().rows,
            [24]
        );
    }

    fn load_err(dir: &Path) -> String {
        let m = vellum::encode::ModelDir::resolve(dir.to_str().unwrap()).unwrap();
        vellum::encode::load(&m, &EncoderOptions::default())
            .unwrap_err()
            .to_string()
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}

mod options_and_identity {
    use vellum::encode::{load, prepare_encoders, EncoderChoice, EncoderOptions, ModelDir, Role};
    use vellum::{Database, FieldSpec, Schema};

    use crate::common::fixture_path;

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn edit_json(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    }

    #[test]
    fn a_tied_binding_keeps_each_sides_length_and_refuses_search_time_options() {
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let choice = EncoderChoice {
            passage: fixture_path("colbert/stanford").display().to_string(),
            passage_options: EncoderOptions::parse("max_length=40").unwrap(),
            ..Default::default()
        };
        let r = prepare_encoders(db.path(), &choice).unwrap();
        assert_eq!((r.passage.max_length, r.query.max_length), (40, 24));
        assert_eq!(
            r.query.late_interaction.unwrap().expansion.unwrap().length,
            24
        );
        let bad = EncoderChoice {
            query_options: EncoderOptions::parse("truncate=true").unwrap(),
            ..choice
        };
        let e = prepare_encoders(db.path(), &bad).unwrap_err().to_string();
        assert!(e.contains("search-time option"), "{e}");
        // Lengths too short for any text are refused, not a panic.
        let m = ModelDir::resolve(fixture_path("colbert/stanford").to_str().unwrap()).unwrap();
        let e = load(&m, &EncoderOptions::parse("max_length=3").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no room for text"), "{e}");
    }

    #[test]
    fn checkpoints_differing_in_settings_files_have_different_fingerprints() {
        let t = tempfile::tempdir().unwrap();
        let other = t.path().join("pylate-noskip");
        copy_dir(&fixture_path("colbert/pylate"), &other);
        edit_json(&other.join("config_sentence_transformers.json"), |v| {
            v["skiplist_words"] = serde_json::json!([]);
        });
        let fp = |dir: &std::path::Path| {
            ModelDir::resolve(dir.to_str().unwrap())
                .unwrap()
                .fingerprint()
                .unwrap()
        };
        assert_ne!(fp(&fixture_path("colbert/pylate")), fp(&other));
        // Both embedded in one database: two copies, each loads with its own settings.
        let db = Database::create(t.path().join("db")).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "c",
            Schema::new()
                .with_field(FieldSpec::parse("a:multi:16:f32:ip").unwrap())
                .with_field(FieldSpec::parse("b:multi:16:f32:ip").unwrap()),
        )
        .unwrap();
        for (field, dir) in [("a", fixture_path("colbert/pylate")), ("b", other.clone())] {
            let choice = EncoderChoice {
                passage: dir.display().to_string(),
                embed: true,
                ..Default::default()
            };
            w.set_encoders("c", field, prepare_encoders(db.path(), &choice).unwrap())
                .unwrap();
        }
        w.commit().unwrap();
        let c = db.snapshot().unwrap().collection("c").unwrap().clone();
        for field in ["a", "b"] {
            c.load_encoder(field, Role::Passage, &EncoderOptions::default())
                .unwrap();
        }
        assert!(vellum::verify::verify_database(db.path()).unwrap().is_ok());
    }

    #[test]
    fn keep_only_lists_follow_sentence_transformers() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("st6");
        copy_dir(&fixture_path("colbert/st6"), &dir);
        let mask = dir.join("2_MultiVectorMask/config.json");
        let encode = |text: &str| {
            let m = ModelDir::resolve(dir.to_str().unwrap()).unwrap();
            load(&m, &EncoderOptions::default())
                .unwrap()
                .encode_texts(&[text])
        };
        // An empty allowlist is no allowlist.
        let all = encode("a terminal emulator").unwrap().rows[0];
        edit_json(&mask, |v| v["keep_only_token_ids"] = serde_json::json!([]));
        assert_eq!(encode("a terminal emulator").unwrap().rows[0], all);
        // An allowlist that keeps nothing of a document is a clear error.
        edit_json(&mask, |v| v["keep_only_token_ids"] = serde_json::json!([1]));
        let e = encode("a terminal emulator").unwrap_err().to_string();
        assert!(e.contains("every token was dropped"), "{e}");
    }
}

/// Token pooling gives PyLate's pooled vectors (`pool_embeddings_hierarchical`, committed
/// outputs of `tests/fixtures/colbert/token_pooling/generate.py`): the same clusters, so the
/// same means (compared as sets: cluster order is scipy's there, first member's here), and the
/// protected `[CLS]` vector last.
#[test]
fn token_pooling_matches_pylate() {
    use vellum::encode::colbert::token_pooling::pool_tokens;
    let text =
        std::fs::read_to_string(fixture_path("colbert/token_pooling/reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for (i, case) in cases.iter().enumerate() {
        let dim = case["dim"].as_u64().unwrap() as usize;
        let factor = case["pool_factor"].as_u64().unwrap() as usize;
        let tokens = floats(&case["tokens"]);
        let want = floats(&case["pooled"]);
        let got = pool_tokens(&tokens, dim, factor, 1);
        assert_eq!(got.len(), want.len(), "case {i}: pooled rows");
        assert_eq!(
            &got[got.len() - dim..],
            &tokens[..dim],
            "case {i}: [CLS] last"
        );
        let mut unmatched: Vec<&[f32]> = got.chunks_exact(dim).collect();
        for w in want.chunks_exact(dim) {
            let (at, diff) = unmatched
                .iter()
                .enumerate()
                .map(|(j, g)| {
                    let d = g
                        .iter()
                        .zip(w)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    (j, d)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(
                diff <= 1e-5,
                "case {i}: a PyLate cluster mean differs by {diff}"
            );
            unmatched.remove(at);
        }
    }
}

/// `pool_factor` on a document encoder stores the pooled vectors of what it would store
/// unpooled, and records the factor (so the record, and a re-encode, reproduce it); queries
/// and dense encoders refuse it.
#[test]
fn document_encoders_pool_tokens_with_pool_factor() {
    use vellum::encode::colbert::token_pooling::pool_tokens;
    let path = fixture_path("colbert/pylate");
    let dir = ModelDir::resolve(path.to_str().unwrap()).unwrap();
    let side = reference("pylate", "documents");
    let texts: Vec<&str> = side.texts.iter().map(String::as_str).collect();
    let plain = load(&dir, &EncoderOptions::parse("role=passage").unwrap()).unwrap();
    let pooled = load(
        &dir,
        &EncoderOptions::parse("role=passage,pool_factor=2").unwrap(),
    )
    .unwrap();
    let li = pooled.record().late_interaction.as_ref().unwrap();
    assert_eq!(li.pool_factor, Some(2));
    assert_eq!(pooled.record().options().pool_factor, Some(2));
    assert_ne!(plain.record(), pooled.record());
    let (a, b) = (
        plain.encode_texts(&texts).unwrap(),
        pooled.encode_texts(&texts).unwrap(),
    );
    let d = a.dims;
    let (mut before, mut after) = (0, 0);
    for (x, y) in a.per_input().zip(b.per_input()) {
        assert_eq!(y, pool_tokens(x, d, 2, 1).as_slice());
        before += x.len() / d;
        after += y.len() / d;
    }
    assert!(
        after * 10 < before * 6,
        "{before} vectors pooled to {after}"
    );
    let e = load(
        &dir,
        &EncoderOptions::parse("role=query,pool_factor=2").unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("documents"), "{e}");
    let dense = ModelDir::resolve(fixture_path("encoders/tiny-a").to_str().unwrap()).unwrap();
    let e = load(&dense, &EncoderOptions::parse("pool_factor=2").unwrap()).unwrap_err();
    assert!(e.to_string().contains("pool_factor"), "{e}");
}

/// Stanford ColBERT drops the first token of each punctuation symbol *as its tokenizer encodes
/// it* (`encode(symbol, add_special_tokens=False)[0]`), so a symbol outside the vocabulary drops
/// `[UNK]` vectors; PyLate drops `[UNK]` for unknown skiplist words too; sentence-transformers
/// ignores them.
mod skiplist_rules {
    use vellum::encode::{load, EncoderOptions, ModelDir, Role};

    use crate::common::fixture_path;

    /// The token count of `text` as a document, and whether `[UNK]` is on the skiplist, for
    /// `model` whose vocabulary has lost `~`.
    fn without_tilde(model: &str, text: &str) -> (usize, bool) {
        let t = tempfile::tempdir().unwrap();
        crate::lifecycle::copy_dir(&fixture_path(&format!("colbert/{model}")), t.path());
        let path = t.path().join("tokenizer.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        let id = vocab.remove("~").unwrap();
        vocab.insert("~~".into(), id);
        std::fs::write(&path, v.to_string()).unwrap();
        let unk = vocab_id(&v, "[UNK]");
        let dir = ModelDir::resolve(t.path().to_str().unwrap()).unwrap();
        let options = EncoderOptions {
            role: Some(Role::Passage),
            ..Default::default()
        };
        let enc = load(&dir, &options).unwrap();
        let li = enc.record().late_interaction.clone().unwrap();
        let out = enc.encode_texts(&[text]).unwrap();
        let tokens = out.per_input().next().unwrap().len() / out.dims;
        (tokens, li.skiplist.contains(&unk))
    }

    fn vocab_id(tokenizer: &serde_json::Value, token: &str) -> u32 {
        tokenizer["model"]["vocab"][token].as_u64().unwrap() as u32
    }

    #[test]
    fn an_out_of_vocabulary_symbol_drops_unknown_tokens_in_stanford_and_pylate_layouts() {
        for model in ["stanford", "pylate"] {
            let (with, skips_unk) = without_tilde(model, "alpha ~ beta");
            let (without, _) = without_tilde(model, "alpha beta");
            assert!(skips_unk, "{model}: [UNK] should be on the skiplist");
            assert_eq!(with, without, "{model}: the [UNK] of ~ is dropped");
        }
    }
}
