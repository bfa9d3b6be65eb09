//! The encoder seam: encoders bound by output kind, the trait's batching, cached query encoders.

use std::sync::Arc;

use vellum::encode::{
    prepare_encoders, Encoder, EncoderChoice, EncoderOptions, OutputKind, Role, TextEncoder,
};
use vellum::{Database, Document, Error, FieldSpec, Schema, SearchRequest};

use crate::common::fixture_path;

fn tiny_choice() -> EncoderChoice {
    EncoderChoice {
        passage: fixture_path("encoders/tiny-a").display().to_string(),
        passage_options: EncoderOptions::parse("pooling=mean,normalize=true").unwrap(),
        ..Default::default()
    }
}

#[test]
fn encoders_bind_only_to_fields_of_their_output_kind() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap())
        .with_field(FieldSpec::parse("tok:multi:32:f16:ip").unwrap());
    w.create_collection("c", schema).unwrap();
    let records = prepare_encoders(db.path(), &tiny_choice()).unwrap();
    assert_eq!(records.passage.output, OutputKind::Dense);
    assert_eq!(records.passage.architecture.as_deref(), Some("bert"));
    // A dense encoder does not fill a multi-vector field ...
    let err = w.set_encoders("c", "tok", records.clone()).unwrap_err();
    assert!(
        matches!(&err, Error::WrongFieldKind { found: "multi", .. }),
        "{err}"
    );
    // ... and a multi-vector record does not fill a dense one (checked on the record, before any
    // model is loaded), but fills a multi-vector field of its dimension.
    let mut multi = records.clone();
    multi.passage.output = OutputKind::Multi;
    multi.query.output = OutputKind::Multi;
    let err = w.set_encoders("c", "emb", multi.clone()).unwrap_err();
    assert!(
        matches!(&err, Error::WrongFieldKind { found: "dense", .. }),
        "{err}"
    );
    w.set_encoders("c", "tok", multi).unwrap();
    w.set_encoders("c", "emb", records).unwrap();
    w.commit().unwrap();
    // The manifest with both bindings reopens (its validation accepts kind-matched records).
    let snap = Database::open(dir.path()).unwrap().snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    assert_eq!(c.encoders("tok").unwrap().passage.output, OutputKind::Multi);
}

#[test]
fn the_trait_batches_by_length_and_keeps_input_order() {
    let enc = TextEncoder::from_dir(
        &vellum::encode::ModelDir::at(fixture_path("encoders/tiny-a"), "tiny-a").unwrap(),
        &EncoderOptions::parse("pooling=mean,normalize=true,batch_size=2").unwrap(),
    )
    .unwrap();
    let texts = [
        "short",
        "a much longer text with many more tokens in it than the others",
        "medium length text",
    ];
    let dynamic: &dyn Encoder = &enc;
    let encoded = dynamic.encode_texts(&texts).unwrap();
    assert_eq!(encoded.rows, vec![1, 1, 1]);
    assert_eq!(encoded.dims, 32);
    // One text at a time gives the same vectors, in the same order.
    for (text, got) in texts.iter().zip(encoded.per_input()) {
        let alone = enc.encode(&[text]).unwrap();
        for (a, b) in alone.iter().zip(got) {
            assert!((a - b).abs() < 1e-5, "{text}: {a} vs {b}");
        }
    }
}

/// An encoder that runs its passes from three threads at once (as GPU encoders run two) and
/// fails on a chosen batch.
#[derive(Debug)]
struct Concurrent {
    inner: TextEncoder,
    fail_on_len: Option<usize>,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Encoder for Concurrent {
    fn record(&self) -> &vellum::encode::EncoderRecord {
        self.inner.record()
    }
    fn modality(&self) -> vellum::encode::Modality {
        self.inner.modality()
    }
    fn batch_size(&self) -> usize {
        1
    }
    fn concurrent_batches(&self) -> usize {
        3
    }
    fn prepare(
        &self,
        input: &vellum::encode::EncoderInput<'_>,
    ) -> vellum::Result<vellum::encode::Prepared> {
        self.inner.prepare(input)
    }
    fn encode_prepared(
        &self,
        batch: &[&vellum::encode::Prepared],
    ) -> vellum::Result<vellum::encode::Encoded> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.running.fetch_sub(1, SeqCst);
        if Some(batch[0].cost()) == self.fail_on_len {
            return Err(Error::InvalidInput(format!(
                "batch of {} tokens",
                batch[0].cost()
            )));
        }
        self.inner.encode_prepared(batch)
    }
}

#[test]
fn concurrent_batches_keep_input_order_and_report_the_first_error() {
    let inner = || {
        TextEncoder::from_dir(
            &vellum::encode::ModelDir::at(fixture_path("encoders/tiny-a"), "tiny-a").unwrap(),
            &EncoderOptions::parse("pooling=mean,normalize=true").unwrap(),
        )
        .unwrap()
    };
    let texts: Vec<String> = (0..9).map(|i| vec!["word"; i + 1].join(" ")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = Concurrent {
        inner: inner(),
        fail_on_len: None,
        running: Default::default(),
        most: Default::default(),
    };
    let got = enc.encode_texts(&texts).unwrap();
    assert!(
        enc.most.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "passes ran one at a time"
    );
    let want = inner().encode(&texts).unwrap();
    assert_eq!(got.values.len(), want.len());
    for (a, b) in got.values.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // A failing batch ends the run with its error.
    let failing = Concurrent {
        inner: inner(),
        fail_on_len: Some(
            enc.prepare(&vellum::encode::EncoderInput::Text(texts[4]))
                .unwrap()
                .cost(),
        ),
        running: Default::default(),
        most: Default::default(),
    };
    let err = failing.encode_texts(&texts).unwrap_err();
    assert!(err.to_string().contains("tokens"), "{err}");
}

#[test]
fn text_search_loads_the_query_encoder_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new().with_field(FieldSpec::parse("emb:dense:32:f32:cosine").unwrap()),
    )
    .unwrap();
    w.set_encoders(
        "c",
        "emb",
        prepare_encoders(db.path(), &tiny_choice()).unwrap(),
    )
    .unwrap();
    w.commit().unwrap();
    let coll = db.snapshot().unwrap().collection("c").unwrap().clone();
    let passage = coll
        .load_encoder("emb", Role::Passage, &EncoderOptions::default())
        .unwrap();
    for (id, text) in [
        ("zsh", "a shell with many features"),
        ("gimp", "an image editor"),
    ] {
        let v = passage.encode(&[text]).unwrap();
        w.add("c", Document::new(id).with_text(text).with_dense("emb", v))
            .unwrap();
    }
    w.commit().unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("c").unwrap();
    let hits = c
        .search_texts(
            &["a shell with many features"],
            SearchRequest::text("emb", 1),
        )
        .unwrap();
    assert_eq!(hits[0][0].id, "zsh");
    let first = c.query_encoder("emb").unwrap();
    let again = c.query_encoder("emb").unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the query encoder is cached");
    // The same as searching with an explicitly loaded query encoder.
    let explicit = c
        .load_encoder("emb", Role::Query, &EncoderOptions::default())
        .unwrap();
    let direct = c
        .search_text(
            &explicit,
            &["a shell with many features"],
            SearchRequest::text("emb", 2),
        )
        .unwrap();
    let cached = c
        .search_texts(
            &["a shell with many features"],
            SearchRequest::text("emb", 2),
        )
        .unwrap();
    assert_eq!(direct, cached);
}
