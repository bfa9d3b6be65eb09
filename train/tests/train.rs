//! `vellum train` through the library on real text (Debian descriptions) with the tiny random
//! BERTs: training lowers the loss, checkpoints load in vellum (and, by the committed reference,
//! in sentence-transformers) with the vectors the trained model computes, an interrupted run
//! resumes to the same model, untied encoders save Tevatron's layout, and bad input is refused
//! by name.

use std::path::{Path, PathBuf};

use candle_core::Device;
use vellum::encode::{
    prepare_encoders, EncoderChoice, EncoderOptions, ModelDir, Role, TextEncoder,
};
use vellum::ingest::pipeline::{ingest_text, TextIngest};
use vellum::{Database, FieldSpec, Schema};
use vellum_train::tower::Tower;
use vellum_train::{
    mine_negatives, read_tevatron, train, MiningConfig, Progress, Silent, TrainConfig, TrainError,
    TrainQuery,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tiny(name: &str) -> String {
    root()
        .join("tests/fixtures/encoders")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// The first `n` Debian descriptions as (id, text).
fn debian(n: usize) -> Vec<(String, String)> {
    std::fs::read_to_string(root().join("examples/debian/corpus.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A database whose collection `docs` has field `emb` (32-d cosine) bound to `passage` (and
/// `query`, untied, when given), holding the first 60 Debian descriptions.
fn database(dir: &Path, query: Option<&str>) -> Database {
    let db = Database::create(dir.join("db")).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "docs",
        Schema::new().with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap()),
    )
    .unwrap();
    let options = EncoderOptions::parse("pooling=mean,normalize=true").unwrap();
    let choice = EncoderChoice {
        passage: tiny("tiny-a"),
        passage_options: options.clone(),
        query: query.map(tiny),
        query_options: if query.is_some() {
            options
        } else {
            EncoderOptions::default()
        },
        embed: false,
    };
    let records = prepare_encoders(db.path(), &choice).unwrap();
    w.set_encoders("docs", "emb", records).unwrap();
    w.commit().unwrap();
    let docs = dir.join("docs.jsonl");
    let lines: Vec<String> = debian(60)
        .iter()
        .map(|(id, text)| serde_json::json!({"id": id, "text": text}).to_string())
        .collect();
    std::fs::write(&docs, lines.join("\n") + "\n").unwrap();
    ingest_text(&mut w, &TextIngest::new("docs", &docs), &mut |_| {}).unwrap();
    db
}

/// Training queries: the first sentence fragment of each of the first 40 documents, by id.
fn train_file(dir: &Path) -> PathBuf {
    let p = dir.join("train.jsonl");
    let lines: Vec<String> = debian(40)
        .iter()
        .enumerate()
        .map(|(i, (id, text))| {
            let query: String = text.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
            serde_json::json!({"query_id": format!("q{i}"), "query": query, "positive_document_ids": [id]})
                .to_string()
        })
        .collect();
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn data(db: &Database, dir: &Path) -> Vec<TrainQuery> {
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let mut d = read_tevatron(&train_file(dir), c).unwrap();
    mine_negatives(c, "emb", &mut d, MiningConfig { depth: 10, skip: 0 }).unwrap();
    d
}

fn config() -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        group_size: 3,
        lr: 1e-3,
        epochs: 3,
        save_every: Some(5),
        ..TrainConfig::new("emb")
    }
}

/// bf16 mixed precision follows f32 training from the same seed (same batches, same first loss
/// within bf16's rounding) and lowers the loss as f32 does; a bad value is refused by name.
#[test]
fn bf16_mixed_precision_trains_like_f32() {
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), None);
    let d = data(&db, t.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let run = |precision: &str, out: &str| {
        let mut cfg = TrainConfig {
            save_every: None,
            ..config()
        };
        cfg.set("precision", precision).unwrap();
        train(c, &d, None, &cfg, &t.path().join(out), false, &mut Silent).unwrap()
    };
    let f32_run = run("f32", "f32");
    let bf16_run = run("bf16", "bf16");
    assert_eq!(f32_run.steps, bf16_run.steps);
    let (a, b) = (f32_run.losses[0], bf16_run.losses[0]);
    assert!((a - b).abs() <= 0.02 * a, "first loss f32 {a} vs bf16 {b}");
    assert_ne!(
        a, b,
        "bf16 products round: the losses differ in their last digits"
    );
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (first, last) = (mean(&bf16_run.losses[..5]), mean(&bf16_run.losses[25..]));
    assert!(last < 0.7 * first, "bf16 loss {first} → {last}");
    let f32_last = mean(&f32_run.losses[25..]);
    assert!(
        (last - f32_last).abs() <= 0.05 * f32_last,
        "last losses f32 {f32_last} vs bf16 {last}"
    );
    let mut cfg = config();
    let e = cfg.set("precision", "f16").unwrap_err();
    assert!(e.to_string().contains("expected f32 or bf16"), "{e}");
}

#[test]
fn training_lowers_the_loss_and_its_model_loads_with_the_same_vectors() {
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), None);
    let d = data(&db, t.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let out = t.path().join("out");
    let report = train(c, &d, None, &config(), &out, false, &mut Silent).unwrap();
    assert_eq!(report.steps, 30);
    assert!(!report.untied);
    let first: f64 = report.losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = report.losses[25..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.7 * first, "loss {first} → {last}");

    // vellum reads the folder's sentence-transformers files back to the field's options, and
    // computes the trained model's vectors (the candle model with the trained weights).
    let dir = ModelDir::at(out.clone(), "trained").unwrap();
    let native = TextEncoder::from_dir(&dir, &EncoderOptions::default()).unwrap();
    let field = c.encoder_record("emb", Role::Passage).unwrap();
    assert_eq!(native.record().pooling, field.pooling);
    assert_eq!(native.record().normalize, field.normalize);
    assert_eq!(native.record().max_length, field.max_length);
    assert_ne!(native.record().fingerprint, field.fingerprint);
    let trained = Tower::load(&dir, native.record(), None, &Device::Cpu).unwrap();
    let texts = [
        "a package for parsing XML documents",
        "real-time strategy game",
    ];
    let want = native.encode(&texts).unwrap();
    let seqs: Vec<Vec<u32>> = texts.iter().map(|s| trained.tokenize(s).unwrap()).collect();
    let got: Vec<f32> = trained
        .encode(&seqs)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
    // The untrained model gives other vectors.
    let before = TextEncoder::load(
        &tiny("tiny-a"),
        &EncoderOptions::parse("pooling=mean,normalize=true").unwrap(),
    )
    .unwrap()
    .encode(&texts)
    .unwrap();
    assert!(before.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3));

    // The layout matches the committed checkpoint that sentence-transformers was run on.
    let committed = root().join("tests/fixtures/train/trained-tiny-a");
    for f in [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "config.json",
        "tokenizer.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(committed.join(f)).unwrap(),
            "{f}"
        );
    }
    // Checkpoints: the newest two (steps 25 and 30), each with optimiser state.
    let mut cps: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    cps.sort();
    assert_eq!(cps, ["checkpoint-25", "checkpoint-30"]);
    assert!(out.join("checkpoint-25/optimizer.safetensors").is_file());
    assert!(out.join("training_report.json").is_file());
}

/// sentence-transformers reads a vellum checkpoint as vellum does (reference vectors committed
/// by tests/fixtures/train/generate.py from trained-tiny-a/, written by `vellum train`).
#[test]
fn sentence_transformers_reads_a_vellum_checkpoint_as_vellum_does() {
    let fixtures = root().join("tests/fixtures/train");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("st_reference.json")).unwrap())
            .unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let enc = TextEncoder::load(
        fixtures.join("trained-tiny-a").to_str().unwrap(),
        &EncoderOptions::default(),
    )
    .unwrap();
    assert_eq!(
        enc.record().max_length as u64,
        reference["max_seq_length"].as_u64().unwrap()
    );
    let got = enc.encode(&texts).unwrap();
    for (i, want) in reference["vectors"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let g = &got[i * 32..(i + 1) * 32];
        let dot: f64 = g.iter().zip(&want).map(|(a, b)| *a as f64 * b).sum();
        let na: f64 = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        assert!(
            dot / (na * nb) >= 0.99999,
            "text {i}: cosine {}",
            dot / (na * nb)
        );
    }
}

/// Stops after `at` steps, as Ctrl-C does.
struct StopAt(usize, std::cell::Cell<usize>);
impl Progress for StopAt {
    fn step(&mut self, r: &vellum_train::StepReport) {
        self.1.set(r.step);
    }
    fn interrupted(&self) -> bool {
        self.1.get() >= self.0
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_model() {
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), None);
    let d = data(&db, t.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let cfg = TrainConfig {
        max_steps: Some(9),
        save_every: Some(4),
        ..config()
    };
    let whole = t.path().join("whole");
    train(c, &d, None, &cfg, &whole, false, &mut Silent).unwrap();

    let parts = t.path().join("parts");
    let e = train(
        c,
        &d,
        None,
        &cfg,
        &parts,
        false,
        &mut StopAt(6, Default::default()),
    )
    .unwrap_err();
    assert!(
        matches!(e, TrainError::Interrupted { checkpoint: Some(ref p) } if p.ends_with("checkpoint-6")),
        "{e}"
    );
    // Without --resume, a folder with checkpoints is refused; with other settings, resuming is.
    let e = train(c, &d, None, &cfg, &parts, false, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds checkpoints"), "{e}");
    let other = TrainConfig {
        lr: 5e-4,
        ..cfg.clone()
    };
    let e = train(c, &d, None, &other, &parts, true, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lr: 0.001 then, 0.0005 now"), "{e}");
    let report = train(c, &d, None, &cfg, &parts, true, &mut Silent).unwrap();
    assert_eq!((report.steps, report.steps_run), (9, 3));
    assert_eq!(
        std::fs::read(whole.join("model.safetensors")).unwrap(),
        std::fs::read(parts.join("model.safetensors")).unwrap(),
        "resumed training must give the uninterrupted model"
    );
}

#[test]
fn untied_encoders_train_apart_and_save_tevatrons_layout() {
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), Some("tiny-b"));
    let d = data(&db, t.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let out = t.path().join("out");
    let cfg = TrainConfig {
        max_steps: Some(4),
        ..config()
    };
    let report = train(c, &d, None, &cfg, &out, false, &mut Silent).unwrap();
    assert!(report.untied);
    for side in ["query_model", "passage_model"] {
        let enc = TextEncoder::load(out.join(side).to_str().unwrap(), &EncoderOptions::default())
            .unwrap();
        assert_eq!(enc.dims(), 32);
    }
    // Each side started from its own model (tiny-b for queries, tiny-a for passages) and moved.
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_ne!(
        weights(&out.join("query_model")),
        weights(&out.join("passage_model"))
    );
    let texts = ["real-time strategy game"];
    let opts = EncoderOptions::parse("pooling=mean,normalize=true").unwrap();
    for (side, start) in [("query_model", "tiny-b"), ("passage_model", "tiny-a")] {
        let trained = TextEncoder::load(out.join(side).to_str().unwrap(), &opts).unwrap();
        let first = TextEncoder::load(&tiny(start), &opts).unwrap();
        let (a, b) = (
            trained.encode(&texts).unwrap(),
            first.encode(&texts).unwrap(),
        );
        let cos: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!(
            cos > 0.5 && cos < 0.99999,
            "{side}: cosine to {start} {cos}"
        );
    }
}

#[test]
fn bad_training_data_is_refused_by_file_line_and_id() {
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), None);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let write = |name: &str, body: &str| {
        let p = t.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let cases = [
        (
            "{\"query_id\": 1, \"query\": \"x\", \"positive_document_ids\": [\"no-such-doc\"]}\n",
            ":1: document id \"no-such-doc\" is not in collection \"docs\"",
        ),
        (
            "\n{\"query_id\": \"a\", \"query\": \"x\", \"positive_passages\": []}\n",
            ":2: query \"a\" has no positive passage",
        ),
        (
            "{\"query_id\": \"a\", \"positive_passages\": [{\"docid\": \"d\", \"text\": \"t\"}]}\n",
            ":1: missing or empty \"query\" text",
        ),
        ("{\"query_id\": \"a\", \"query\": \"x\"}\n", ":1: missing \"positive_passages\""),
        (
            "{\"query_id\": \"a\", \"query\": \"x\", \"positive_passages\": [{\"docid\": \"d\"}]}\n",
            "positive_passages[0]: missing \"text\"",
        ),
        ("not json\n", ":1: invalid JSON"),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let p = write(&format!("bad{i}.jsonl"), body);
        let e = read_tevatron(&p, c).unwrap_err().to_string();
        assert!(e.contains(want), "case {i}: {e}");
        assert!(e.contains(&format!("bad{i}.jsonl")), "case {i}: {e}");
    }

    // Inline passages without negatives and nothing mined: group size 1 trains on in-batch
    // negatives; a larger group names the query that has none.
    let p = write(
        "inline.jsonl",
        "{\"query_id\": \"a\", \"query\": \"xml parser\", \"positive_passages\": [{\"docid\": \"d\", \"title\": \"T\", \"text\": \"an XML parser\"}]}\n",
    );
    let d = read_tevatron(&p, c).unwrap();
    assert_eq!(d[0].positives[0].text, "T an XML parser");
    let out = t.path().join("o1");
    let e = train(c, &d, None, &config(), &out, false, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training query \"a\" has no hard negative"),
        "{e}"
    );
    let one = TrainConfig {
        group_size: 1,
        max_steps: Some(1),
        ..config()
    };
    train(c, &d, None, &one, &t.path().join("o2"), false, &mut Silent).unwrap();

    // Fields that cannot train.
    let e = train(
        c,
        &d,
        None,
        &TrainConfig::new("nope"),
        &t.path().join("o3"),
        false,
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = train(
        c,
        &d,
        None,
        &TrainConfig {
            temperature: Some(0.0),
            ..config()
        },
        &t.path().join("o4"),
        false,
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("temperature"), "{e}");
}

#[test]
fn query_encoder_only_training_aligns_a_truncated_student_and_binds_it() {
    use vellum_train::query_only::{
        train_query_encoder, AlignLoss, QueryOnlyConfig, RetrievalEval, Student,
    };
    let t = tempfile::tempdir().unwrap();
    let db = database(t.path(), None);
    let d = data(&db, t.path());
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let queries: Vec<vellum::ingest::text_input::TextQuery> = d
        .iter()
        .map(|q| vellum::ingest::text_input::TextQuery {
            id: q.id.clone(),
            text: q.text.clone(),
        })
        .collect();
    let qrels = vellum::eval::Qrels {
        queries: d
            .iter()
            .map(|q| {
                (
                    q.id.clone(),
                    [(q.positives[0].id.clone(), 1)].into_iter().collect(),
                )
            })
            .collect(),
    };
    let eval = RetrievalEval::new(queries, qrels).unwrap();
    let config = QueryOnlyConfig {
        student: Student::Layers(1),
        align_steps: 30,
        align_loss: AlignLoss::Cosine,
        align_lr: 1e-3,
        align_texts: Vec::new(),
        freeze_embeddings: true,
        train: TrainConfig {
            max_steps: Some(10),
            ..config()
        },
    };
    let out = t.path().join("student");
    let report = train_query_encoder(c, &d, Some(&eval), &config, &out, &mut Silent).unwrap();
    assert_eq!(report.layers, (1, 2));
    let a = &report.align_losses;
    assert!(
        a[a.len() - 5..].iter().sum::<f64>() < 0.5 * a[..5].iter().sum::<f64>(),
        "{a:?}"
    );
    assert_eq!(report.losses.len(), 10);
    assert_eq!(report.student.len(), 2);
    assert!(report.teacher.is_some() && report.queries_per_sec.is_some());
    assert!(!t.path().join(".student.student-init").exists());
    let student = TextEncoder::load(out.to_str().unwrap(), &EncoderOptions::default()).unwrap();
    assert_eq!(student.dims(), 32);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_hidden_layers"], 1);

    // Bound as the field's query encoder: text search now encodes with it; stored vectors and
    // the passage encoder are untouched.
    let mut w = db.writer().unwrap();
    let records = vellum::encode::replace_query_encoder(
        &**db.directory(),
        c.encoders("emb").unwrap(),
        out.to_str().unwrap(),
        &EncoderOptions::default(),
        true,
    )
    .unwrap();
    assert_eq!(
        &records.passage,
        c.encoder_record("emb", Role::Passage).unwrap()
    );
    w.set_encoders("docs", "emb", records).unwrap();
    w.commit().unwrap();
    let snap2 = db.snapshot().unwrap();
    let c2 = snap2.collection("docs").unwrap();
    let q = ["library for parsing XML"];
    let hits = c2
        .search_texts(&q, vellum::SearchRequest::text("emb", 5))
        .unwrap();
    let by_hand = student.encode(&q).unwrap();
    assert_eq!(
        hits,
        c2.search(&vellum::SearchRequest::dense_batch("emb", &by_hand, 5))
            .unwrap()
    );
    assert_eq!(
        c2.get(&d[0].positives[0].id)
            .unwrap()
            .unwrap()
            .dense("emb")
            .unwrap()
            .to_f32_vec(),
        c.get(&d[0].positives[0].id)
            .unwrap()
            .unwrap()
            .dense("emb")
            .unwrap()
            .to_f32_vec()
    );

    // Students that cannot be: too many layers; a passage not in the collection.
    let bad = QueryOnlyConfig {
        student: Student::Layers(3),
        ..config.clone()
    };
    let e = train_query_encoder(c, &d, None, &bad, &t.path().join("x"), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("student layers: expected 1 to 2"), "{e}");
    let mut inline = d.clone();
    inline[0].positives[0].id = "elsewhere".into();
    let e = train_query_encoder(c, &inline, None, &config, &t.path().join("y"), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("passage \"elsewhere\" is not in collection"),
        "{e}"
    );

    // Unlabelled alignment texts: stage 1 draws from the training queries and them (its
    // batches differ from the queries-only run's), and the loss still falls.
    let texts = [
        "parser for configuration files",
        "tools to manage disk partitions",
        "fonts for the console",
        "network time daemon",
        "library of image codecs",
        "documentation of the compiler",
    ];
    let more = QueryOnlyConfig {
        align_texts: texts.iter().map(|t| t.to_string()).collect(),
        train: TrainConfig {
            max_steps: Some(1),
            ..config.train.clone()
        },
        ..config.clone()
    };
    let with_texts =
        train_query_encoder(c, &d, None, &more, &t.path().join("more"), &mut Silent).unwrap();
    let b = &with_texts.align_losses;
    assert_eq!(b.len(), 30);
    assert_ne!(b, a);
    assert!(
        b[b.len() - 5..].iter().sum::<f64>() < 0.5 * b[..5].iter().sum::<f64>(),
        "{b:?}"
    );
    let blank = QueryOnlyConfig {
        align_texts: vec!["fine".into(), " ".into()],
        ..config.clone()
    };
    let e = train_query_encoder(c, &d, None, &blank, &t.path().join("z"), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("alignment text 2: empty"), "{e}");
}
