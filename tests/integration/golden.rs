//! Golden files of format v1 (`format-spec/golden/v1/`): released files must open and read back
//! exactly, and the current writer must still produce them byte for byte.
//!
//! Regenerate (only when introducing a new format version, into a new folder): run this test with
//! `VELLUM_REGEN_GOLDEN=1`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vellum::{DType, Database, Document, FieldSpec, Metric, Schema, SearchRequest};

use crate::lifecycle::copy_dir;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/basic")
}

/// The documents of the `basic` case; values are exact in f16 and bf16.
fn docs() -> Vec<Document> {
    (0..5)
        .map(|i| {
            let f = i as f32;
            Document::new(format!("doc{i}"))
                .with_text(format!("text {i}"))
                .with_metadata(json!({"n": i, "tag": if i % 2 == 0 { "even" } else { "odd" }}))
                .with_dense("emb", vec![1.0 + f, 0.5, -0.25 * f, 2.0])
                .with_multi(
                    "tok",
                    (0..3 * (1 + i % 2))
                        .map(|t| 0.25 * (t as f32) - 0.5 * f)
                        .collect(),
                )
                .with_tensor("img", vec![f, -f, 0.5, 0.125])
        })
        .collect()
}

fn build(dir: &Path) {
    let db = Database::create(dir).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::dense("emb", 4, DType::F32, Metric::Cosine))
        .with_field(FieldSpec::multi("tok", 3, DType::F16, Metric::Ip))
        .with_field(FieldSpec::tensor("img", &[2, 2], DType::Bf16));
    w.create_collection("docs", schema).unwrap();
    w.commit().unwrap();
    let mut docs = docs().into_iter();
    for d in docs.by_ref().take(3) {
        w.add("docs", d).unwrap();
    }
    w.commit().unwrap();
    for d in docs {
        w.add("docs", d).unwrap();
    }
    assert!(w.delete("docs", "doc1").unwrap());
    w.commit().unwrap();
}

fn snapshot_json(dir: &Path) -> Value {
    let snap = Database::open(dir).unwrap().snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let mut documents = Vec::new();
    c.for_each_live(|d| {
        documents.push(json!({
            "id": d.id()?, "text": d.text()?, "metadata": d.metadata_json()?,
            "emb": d.dense("emb")?.to_f32_vec(),
            "tok": d.multi("tok")?.tokens.to_f32_vec(),
            "img": d.tensor("img")?.data.to_f32_vec(),
        }));
        Ok(())
    })
    .unwrap();
    let hits = |r: Vec<Vec<vellum::Hit>>| -> Value {
        r[0].iter()
            .map(|h| json!([h.id, format!("{:.5}", h.score)]))
            .collect()
    };
    json!({
        "generation": snap.generation(),
        "documents": documents,
        "search_emb": hits(c.search(&SearchRequest::dense("emb", &[1.0, 0.0, 0.0, 1.0], 3)).unwrap()),
        "search_tok": hits(c.search(&SearchRequest::multi("tok", &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], 3)).unwrap()),
    })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(
                files(&p)
                    .into_iter()
                    .map(|f| Path::new(p.file_name().unwrap()).join(f)),
            );
        } else if p.file_name().unwrap() != "LOCK" {
            out.push(PathBuf::from(p.file_name().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn golden_v1_basic() {
    let golden = golden_dir();
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(golden.join("db"));
        build(&golden.join("db"));
        std::fs::remove_file(golden.join("db/LOCK")).unwrap();
        let expected = serde_json::to_string_pretty(&snapshot_json(&golden.join("db"))).unwrap();
        std::fs::write(golden.join("expected.json"), expected + "\n").unwrap();
        std::fs::remove_file(golden.join("db/LOCK")).ok();
    }
    // 1. The released files open and read back exactly (on a copy: opening must not need writes).
    let work = tempfile::tempdir().unwrap();
    copy_dir(&golden.join("db"), work.path());
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(snapshot_json(work.path()), expected);
    let report = vellum::verify::verify_database(work.path()).unwrap();
    assert!(
        report.is_ok() && report.unreferenced_files.is_empty(),
        "{report:?}"
    );
    // 2. The current writer reproduces every file byte for byte.
    let fresh = tempfile::tempdir().unwrap();
    build(fresh.path());
    let names = files(&golden.join("db"));
    assert_eq!(names, files(fresh.path()), "same set of files");
    for name in names {
        let a = std::fs::read(golden.join("db").join(&name)).unwrap();
        let b = std::fs::read(fresh.path().join(&name)).unwrap();
        assert!(
            a == b,
            "{} differs from the golden file: the v1 format changed",
            name.display()
        );
    }
}

/// The graph of `format-spec/golden/v1/hnsw/graph.bin` (see `format-spec/hnsw.md`): 5 rows, two
/// layers, L2.
fn golden_graph() -> vellum::hnsw::Graph {
    use vellum::format::graph::Layer;
    vellum::hnsw::Graph {
        m: 2,
        m0: 4,
        ef_construction: 8,
        metric: vellum::Metric::L2,
        entry: 3,
        rows: 5,
        layers: vec![
            Layer {
                members: vec![0, 1, 2, 3, 4],
                neighbours: vec![vec![1, 3], vec![0, 2, 3], vec![1], vec![0, 1, 4], vec![3]],
            },
            Layer {
                members: vec![1, 3],
                neighbours: vec![vec![3], vec![1]],
            },
        ],
        nav: None,
    }
}

#[test]
fn golden_v1_hnsw_graph_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/hnsw/graph.bin");
    let encoded = vellum::hnsw::encode_graph(&golden_graph());
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(encoded, golden, "the v1 graph section layout changed");
    let mut buf = vec![0u64; golden.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..golden.len()].copy_from_slice(&golden);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let g = vellum::hnsw::GraphView::open(bytes, &path, 0, 5, vellum::Metric::L2).unwrap();
    g.verify().unwrap();
    assert_eq!(
        (g.layers(), g.entry, g.m, g.m0, g.edges()),
        (2, 3, 2, 4, 12)
    );
    assert_eq!(g.neighbours(0, 3).unwrap(), &[0, 1, 4]);
    assert_eq!(g.neighbours(1, g.position(1, 3).unwrap()).unwrap(), &[1]);
}

#[test]
fn golden_v1_hnsw_graph_section_with_navigation_codes() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/hnsw/graph_nav_i8.bin");
    let mut graph = golden_graph();
    graph.nav = Some((
        vellum::hnsw::Nav::I8 {
            codes: vec![-127, 0, 1, 2, 127, -1, 5, 6, 7, 8],
            mid: 0.5,
            scale: 0.125,
        },
        2,
    ));
    let encoded = vellum::hnsw::encode_graph(&graph);
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(
        encoded, golden,
        "the v1 graph section layout (navigation codes) changed"
    );
    let mut buf = vec![0u64; golden.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..golden.len()].copy_from_slice(&golden);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let g = vellum::hnsw::GraphView::open(bytes, &path, 0, 5, vellum::Metric::L2).unwrap();
    g.verify().unwrap();
    match g.nav() {
        Some((vellum::hnsw::NavView::I8 { codes, mid, scale }, 2)) => {
            assert_eq!(codes, &[-127, 0, 1, 2, 127, -1, 5, 6, 7, 8]);
            assert_eq!((mid, scale), (0.5, 0.125));
        }
        other => panic!("expected i8 navigation codes, found {other:?}"),
    }
    // Header bytes 32..56 as format-spec/hnsw.md specifies them.
    assert_eq!(&golden[32..36], &5u32.to_le_bytes());
    assert_eq!(&golden[36..40], &2u32.to_le_bytes());
    assert_eq!(&golden[40..48], &256u64.to_le_bytes());
    assert_eq!(&golden[48..52], &0.5f32.to_le_bytes());
    assert_eq!(&golden[52..56], &0.125f32.to_le_bytes());
}

/// The manifest's `encoders` key as first released (`format-spec/golden/v1/encoders/MANIFEST`,
/// written before records carried `architecture` and `output`): it still decodes, with the
/// defaults for the keys it lacks.
#[test]
fn golden_v1_encoders_manifest() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/encoders/MANIFEST");
    let enc = decode_tiny_encoders(&golden);
    assert_eq!(enc.passage.architecture, None);
    assert_eq!(enc.passage.output, vellum::encode::OutputKind::Dense);
}

/// The encoder records of an `encoders` golden manifest (tiny-a for passages, tiny-b with a
/// prefix for queries), with the checks both goldens share.
fn decode_tiny_encoders(golden: &Path) -> vellum::encode::FieldEncoders {
    let bytes = std::fs::read(golden).unwrap();
    let m = vellum::format::manifest::Manifest::decode(golden, &bytes).unwrap();
    let enc = m.collections[0].encoders["emb"].clone();
    assert!(!enc.tied());
    assert_eq!(enc.passage.source, "tests/fixtures/encoders/tiny-a");
    assert_eq!(enc.passage.pooling, vellum::encode::Pooling::Cls);
    assert_eq!(enc.query.prefix, "query: ");
    assert_eq!((enc.query.dims, enc.query.max_length), (32, 64));
    enc
}

/// The manifest's `encoders` key with the records' `architecture` and `output` keys
/// (`format-spec/golden/v1/encoder-kinds/MANIFEST`): binding the encoders writes it byte for
/// byte, and it decodes to the expected records.
#[test]
fn golden_v1_encoder_kinds_manifest() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/encoder-kinds/MANIFEST");

    #[cfg(feature = "encoders")]
    {
        use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions};
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::dense("emb", 32, DType::F32, Metric::Cosine)),
        )
        .unwrap();
        let choice = EncoderChoice {
            passage: "tests/fixtures/encoders/tiny-a".into(),
            passage_options: EncoderOptions::parse("pooling=cls,normalize=true").unwrap(),
            query: Some("tests/fixtures/encoders/tiny-b".into()),
            query_options: EncoderOptions::parse("pooling=cls,normalize=true,prefix=query: ")
                .unwrap(),
            embed: false,
        };
        w.set_encoders("docs", "emb", prepare_encoders(db.path(), &choice).unwrap())
            .unwrap();
        w.commit().unwrap();
        let written = std::fs::read(t.path().join("MANIFEST")).unwrap();
        write_or_check_golden(&golden, &written);
    }
    let enc = decode_tiny_encoders(&golden);
    assert_eq!(enc.passage.architecture.as_deref(), Some("bert"));
    assert_eq!(enc.passage.output, vellum::encode::OutputKind::Dense);
}

/// A late-interaction (ColBERT) binding (`format-spec/golden/v1/encoder-colbert/MANIFEST`): the
/// Stanford test checkpoint tied on a multi-vector field; each side's record carries its
/// `late_interaction` settings. Binding writes it byte for byte; it decodes to those settings.
#[test]
fn golden_v1_colbert_encoders_manifest() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/golden/v1/encoder-colbert/MANIFEST");

    #[cfg(feature = "encoders")]
    {
        use vellum::encode::{prepare_encoders, EncoderChoice};
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::multi("tok", 16, DType::F16, Metric::Ip)),
        )
        .unwrap();
        let choice = EncoderChoice {
            passage: "tests/fixtures/colbert/stanford".into(),
            ..Default::default()
        };
        w.set_encoders("docs", "tok", prepare_encoders(db.path(), &choice).unwrap())
            .unwrap();
        w.commit().unwrap();
        let written = std::fs::read(t.path().join("MANIFEST")).unwrap();
        write_or_check_golden(&golden, &written);
    }
    let bytes = std::fs::read(&golden).unwrap();
    let m = vellum::format::manifest::Manifest::decode(&golden, &bytes).unwrap();
    let enc = &m.collections[0].encoders["tok"];
    assert!(enc.tied());
    assert_eq!(enc.passage.pooling, vellum::encode::Pooling::Tokens);
    assert_eq!(enc.passage.output, vellum::encode::OutputKind::Multi);
    let (p, q) = (
        enc.passage.late_interaction.as_ref().unwrap(),
        enc.query.late_interaction.as_ref().unwrap(),
    );
    assert_eq!(
        (p.role, q.role),
        (vellum::encode::Role::Passage, vellum::encode::Role::Query)
    );
    assert_eq!((p.marker, q.marker), (Some(2), Some(1))); // [unused1], [unused0]
    assert_eq!(p.skiplist.len(), 32);
    let e = q.expansion.unwrap();
    assert_eq!((e.length, e.token, e.attend, e.fixed), (24, 6, false, true));
    assert_eq!((enc.query.max_length, enc.passage.max_length), (24, 48));
}

/// A ColBERT binding with token pooling (`format-spec/golden/v1/encoder-colbert-pooled/MANIFEST`):
/// tied, the passage record carries `pool_factor`, the query record does not (queries are not
/// pooled).
#[test]
fn golden_v1_colbert_pooled_encoders_manifest() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/golden/v1/encoder-colbert-pooled/MANIFEST");

    #[cfg(feature = "encoders")]
    {
        use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions};
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::multi("tok", 16, DType::F16, Metric::Ip)),
        )
        .unwrap();
        let choice = EncoderChoice {
            passage: "tests/fixtures/colbert/stanford".into(),
            passage_options: EncoderOptions::parse("pool_factor=2").unwrap(),
            ..Default::default()
        };
        w.set_encoders("docs", "tok", prepare_encoders(db.path(), &choice).unwrap())
            .unwrap();
        w.commit().unwrap();
        let written = std::fs::read(t.path().join("MANIFEST")).unwrap();
        write_or_check_golden(&golden, &written);
    }
    let bytes = std::fs::read(&golden).unwrap();
    let m = vellum::format::manifest::Manifest::decode(&golden, &bytes).unwrap();
    let enc = &m.collections[0].encoders["tok"];
    let (p, q) = (
        enc.passage.late_interaction.as_ref().unwrap(),
        enc.query.late_interaction.as_ref().unwrap(),
    );
    assert_eq!((p.pool_factor, q.pool_factor), (Some(2), None));
}

/// The golden PLAID sections' codec and tokens: dimension 8, 2-bit residuals, two centroids,
/// 3 rows of 2, 1 and 2 tokens.
fn plaid_golden_input(
    half_centroids: bool,
) -> (
    vellum::format::plaid::PlaidCodec,
    Vec<f32>,
    [std::ops::Range<usize>; 3],
) {
    let e = |i: usize| -> Vec<f32> { (0..8).map(|j| if j == i { 1.0 } else { 0.0 }).collect() };
    let codec = vellum::format::plaid::PlaidCodec {
        dim: 8,
        nbits: 2,
        centroids: [e(0), e(1)].concat(),
        cutoffs: vec![-0.1, 0.0, 0.1],
        weights: vec![-0.15, -0.05, 0.05, 0.15],
        trained_rows: 3,
        half_centroids,
    };
    let tok = |i: usize, x: f32| {
        let mut v = e(i);
        v[7] = x;
        v
    };
    let tokens = [
        tok(0, 0.2),
        tok(1, -0.2),
        tok(1, 0.05),
        tok(0, -0.05),
        tok(0, 0.0),
    ]
    .concat();
    (codec, tokens, [0..2, 2..3, 3..5])
}

/// Copies `bytes` into an 8-aligned buffer (sections are 64-aligned in a mapped file).
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..bytes.len()].copy_from_slice(bytes);
    buf
}

/// The first PLAID section layout of `format-spec/plaid.md` (kind 22, layout bits 0: u32 codes,
/// f32 centroids), as vellum wrote it before the compact layout: still read.
#[test]
fn golden_v1_plaid_section() {
    use vellum::format::plaid::{Codes, PlaidView};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/plaid/section.bin");
    let (codec, _, ranges) = plaid_golden_input(false);
    let golden = std::fs::read(&path).unwrap();
    let buf = aligned(&golden);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let view = PlaidView::open(bytes, &path, 0, 3, 5, 8).unwrap();
    assert_eq!(view.codec(), codec);
    assert_eq!(view.codes, Codes::U32(&[0, 1, 1, 0, 0]));
    assert_eq!((view.list(0), view.list(1)), (&[0, 2][..], &[0, 1][..]));
    assert_eq!(view.residual_bytes(), 2);
    assert_eq!(
        &golden[0..16],
        &[8, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(&golden[48..56], &4u64.to_le_bytes());
    view.verify(&path, 0, 3, &|r| Ok(ranges[r].clone()))
        .unwrap();

    // A code naming no centroid (damage `open` does not look for): a search reports the file as
    // corrupt, and so does `verify`.
    let at = view.codes.as_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    let mut damaged = buf.clone();
    bytemuck::cast_slice_mut::<u64, u8>(&mut damaged)[at..at + 4]
        .copy_from_slice(&7u32.to_le_bytes());
    let bytes = &bytemuck::cast_slice::<u64, u8>(&damaged)[..golden.len()];
    let view = PlaidView::open(bytes, &path, 0, 3, 5, 8).unwrap();
    let query: Vec<f32> = (0..8).map(|j| if j == 0 { 1.0 } else { 0.0 }).collect();
    let params = vellum::plaid::PlaidSearch {
        ncells: 2,
        ..vellum::plaid::PlaidSearch::for_k(2)
    };
    let err = vellum::plaid::search::candidates(
        &view,
        &path,
        &query,
        &params,
        2,
        &|r| Ok(ranges[r as usize].clone()),
        &|_| true,
    )
    .unwrap_err();
    assert!(matches!(err, vellum::Error::Corrupt { .. }), "{err}");
    assert!(view
        .verify(&path, 0, 3, &|r| Ok(ranges[r].clone()))
        .is_err());

    // An inverted list naming a row past the segment's: corrupt too (not "no such row", and not
    // silently dropped as a deleted row would be).
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let view = PlaidView::open(bytes, &path, 0, 3, 5, 8).unwrap();
    let at = view.list_rows.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut damaged = buf.clone();
    bytemuck::cast_slice_mut::<u64, u8>(&mut damaged)[at..at + 4]
        .copy_from_slice(&9u32.to_le_bytes());
    let bytes = &bytemuck::cast_slice::<u64, u8>(&damaged)[..golden.len()];
    let view = PlaidView::open(bytes, &path, 0, 3, 5, 8).unwrap();
    let err = vellum::plaid::search::candidates(
        &view,
        &path,
        &query,
        &params,
        2,
        &|r| Ok(ranges[r as usize].clone()),
        &|r| r < 3,
    )
    .unwrap_err();
    assert!(matches!(err, vellum::Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("row 9"), "{err}");
}

/// The compact PLAID layout (layout bits 3: u16 codes, binary16 centroids), what vellum writes:
/// encoded byte for byte, decoded to the same codec, codes and lists.
#[test]
fn golden_v1_plaid_section_compact() {
    use vellum::format::plaid::{Codes, PlaidView};
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/golden/v1/plaid/section-u16-f16.bin");
    let (codec, tokens, ranges) = plaid_golden_input(true);
    let section = vellum::plaid::build::encode_segment(&codec, &tokens, &ranges);
    let encoded = section.encode();
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(
        encoded, golden,
        "the compact v1 PLAID section layout changed"
    );
    let buf = aligned(&golden);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let view = PlaidView::open(bytes, &path, 0, 3, 5, 8).unwrap();
    assert_eq!(view.codec(), codec);
    assert_eq!(view.codes, Codes::U16(&[0, 1, 1, 0, 0]));
    assert_eq!((view.list(0), view.list(1)), (&[0, 2][..], &[0, 1][..]));
    // Header: d = 8, b = 2, K = 2, layout bits 3; binary16 1.0 (0x3c00) opens the centroids.
    assert_eq!(
        &golden[0..16],
        &[8, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]
    );
    assert_eq!(&golden[64..66], &[0x00, 0x3c]);
    view.verify(&path, 0, 3, &|r| Ok(ranges[r].clone()))
        .unwrap();
    // The two layouts hold the same codec: the same id.
    let old = std::fs::read(path.with_file_name("section.bin")).unwrap();
    assert_eq!(golden[40..48], old[40..48]);
}

/// The screening-codes section of `format-spec/screen.md` (kind 21): 3 rows × 2 dimensions, `ip`.
#[test]
fn golden_v1_screening_codes_section() {
    use vellum::format::screen::{ScreenCodes, ScreenView};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/screen/section.bin");
    let rows = [[1.0f32, 0.0], [0.0, 0.5], [-1.0, 1.0]];
    let codes =
        ScreenCodes::build(vellum::Metric::Ip, 2, &|r| Ok(rows[r].to_vec()), rows.len()).unwrap();
    let encoded = codes.encode();
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(encoded, golden, "the v1 screening-codes layout changed");
    assert_eq!(golden.len(), 198);
    assert_eq!(&golden[0..4], &2u32.to_le_bytes());
    assert_eq!(&golden[4..8], &1u32.to_le_bytes());
    assert_eq!(&golden[8..16], &3u64.to_le_bytes());
    assert_eq!(&golden[16..20], &1u32.to_le_bytes());
    let mut buf = vec![0u64; golden.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..golden.len()].copy_from_slice(&golden);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&buf)[..golden.len()];
    let view = ScreenView::open(bytes, &path, 0, 3, 2, vellum::Metric::Ip).unwrap();
    assert_eq!(view.mid, &[0.0, 0.5]);
    assert_eq!(view.scale, &[1.0 / 127.0, 1.0 / 254.0]);
    assert_eq!(view.codes, &[127, -127, 0, 0, -127, 127]);
    assert_eq!(view.value_norm, &[1.0, 0.5, 2f32.sqrt()]);
    assert_eq!(&golden[192..198], &[127, 129, 0, 0, 129, 127]);
    view.verify(&path, 0, &|r| Ok(rows[r].to_vec())).unwrap();
    // A residual bound below the real residual is damage that verify reports.
    let mut damaged = buf.clone();
    let b = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut damaged)[..golden.len()];
    b[128 + 12..128 + 16].copy_from_slice(&0f32.to_le_bytes()); // residual_norm[0] = 0
    b[128 + 16..128 + 20].copy_from_slice(&0f32.to_le_bytes()); // residual_norm[1] = 0
    b[128 + 20..128 + 24].copy_from_slice(&0f32.to_le_bytes()); // residual_norm[2] = 0
    let view = ScreenView::open(b, &path, 0, 3, 2, vellum::Metric::Ip).unwrap();
    let err = view
        .verify(&path, 0, &|r| Ok(rows[r].to_vec()))
        .unwrap_err();
    assert!(err.to_string().contains("residual norm"), "{err}");
}

/// Encoder versions (`format-spec/golden/v1/versions/MANIFEST`): a field re-encoded from tiny-a
/// to tiny-b in pieces of 2 rows (version 2, version 1 kept for rollback with its tombstone),
/// then a re-encode back to tiny-a staged with one piece written. Writing it gives these bytes;
/// it decodes to those versions.
/// A re-encode into a new field (`reencode --new-field`): versions with their own `schema`.
/// The manifest holds a switch that added field `small` (its previous version, numbered 0, has
/// the fields without it) and a staged re-encode into another new field, `tiny`.
#[test]
fn golden_v1_versions_new_field_manifest() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/golden/v1/versions-new-field/MANIFEST");

    #[cfg(feature = "encoders")]
    {
        use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions};
        use vellum::ingest::reencode::{reencode, Reencode};
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::dense("emb", 32, DType::F32, Metric::Cosine)),
        )
        .unwrap();
        let bind = |model: &str, dims: usize| {
            let choice = EncoderChoice {
                passage: format!("tests/fixtures/encoders/{model}"),
                passage_options: EncoderOptions::parse(&format!(
                    "pooling=cls,normalize=true,dims={dims}"
                ))
                .unwrap(),
                ..Default::default()
            };
            prepare_encoders(db.path(), &choice).unwrap()
        };
        w.set_encoders("docs", "emb", bind("tiny-a", 32)).unwrap();
        for (i, text) in ["alpha", "beta", "gamma"].iter().enumerate() {
            let mut v = vec![0.0; 32];
            v[i] = 1.0;
            w.add(
                "docs",
                Document::new(*text).with_text(*text).with_dense("emb", v),
            )
            .unwrap();
        }
        w.commit().unwrap();
        let mut job = Reencode::new("docs", "emb", Some(bind("tiny-b", 16)));
        job.piece_rows = 2;
        job.new_field = Some(FieldSpec::dense("small", 16, DType::F32, Metric::Cosine));
        reencode(&mut w, &job, &mut |_| {}).unwrap();
        let tiny = FieldSpec::dense("tiny", 8, DType::F16, Metric::Ip);
        w.begin_staged_new_field("docs", &tiny, &bind("tiny-a", 8))
            .unwrap();
        let entry = w.committed().manifest().collection("docs").unwrap().clone();
        let piece = vellum::writer::pending_pieces(&entry, 2)[0];
        let mut column = vellum::writer::FieldColumn::new();
        for _ in 0..piece.rows {
            column.push(&[0u8; 8 * 2]);
        }
        w.stage_piece("docs", piece, column).unwrap();
        let written = std::fs::read(t.path().join("MANIFEST")).unwrap();
        write_or_check_golden(&golden, &written);
    }
    let bytes = std::fs::read(&golden).unwrap();
    let m = vellum::format::manifest::Manifest::decode(&golden, &bytes).unwrap();
    let c = &m.collections[0];
    let names: Vec<&str> = c.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["emb", "small"]);
    assert_eq!(c.encoders["small"].passage.dims, 16);
    let previous = c.versions.previous.as_ref().unwrap();
    assert_eq!((previous.field.as_str(), previous.version), ("small", 0));
    assert_eq!(previous.schema.as_ref().unwrap().fields.len(), 1);
    let staged = c.versions.staged.as_ref().unwrap();
    assert_eq!((staged.field.as_str(), staged.version), ("tiny", 1));
    let fields = &staged.schema.as_ref().unwrap().fields;
    assert_eq!(fields.len(), 3);
    assert_eq!(
        fields[2],
        FieldSpec::dense("tiny", 8, DType::F16, Metric::Ip)
    );
    assert_eq!(staged.pieces.len(), 1);
}

#[test]
fn golden_v1_versions_manifest() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/versions/MANIFEST");

    #[cfg(feature = "encoders")]
    {
        use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions};
        use vellum::ingest::reencode::{reencode, Reencode};
        let t = tempfile::tempdir().unwrap();
        let db = Database::create(t.path()).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::dense("emb", 32, DType::F32, Metric::Cosine)),
        )
        .unwrap();
        let bind = |model: &str| {
            let choice = EncoderChoice {
                passage: format!("tests/fixtures/encoders/{model}"),
                passage_options: EncoderOptions::parse("pooling=cls,normalize=true").unwrap(),
                ..Default::default()
            };
            prepare_encoders(db.path(), &choice).unwrap()
        };
        w.set_encoders("docs", "emb", bind("tiny-a")).unwrap();
        for (i, text) in ["alpha", "beta", "gamma", "delta", "epsilon"]
            .iter()
            .enumerate()
        {
            let mut v = vec![0.0; 32];
            v[i] = 1.0;
            w.add(
                "docs",
                Document::new(*text).with_text(*text).with_dense("emb", v),
            )
            .unwrap();
            if i == 2 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
        assert!(w.delete("docs", "beta").unwrap());
        w.commit().unwrap();
        let mut job = Reencode::new("docs", "emb", Some(bind("tiny-b")));
        job.piece_rows = 2;
        reencode(&mut w, &job, &mut |_| {}).unwrap();
        w.begin_staged("docs", "emb", &bind("tiny-a")).unwrap();
        let entry = w.committed().manifest().collection("docs").unwrap().clone();
        let piece = vellum::writer::pending_pieces(&entry, 2)[0];
        let mut column = vellum::writer::FieldColumn::new();
        for _ in 0..piece.rows {
            column.push(&[0u8; 32 * 4]);
        }
        w.stage_piece("docs", piece, column).unwrap();
        let written = std::fs::read(t.path().join("MANIFEST")).unwrap();
        write_or_check_golden(&golden, &written);
    }
    let bytes = std::fs::read(&golden).unwrap();
    let m = vellum::format::manifest::Manifest::decode(&golden, &bytes).unwrap();
    let v = &m.collections[0].versions;
    assert_eq!(v.current_of("emb"), 2);
    let previous = v.previous.as_ref().unwrap();
    assert_eq!((previous.field.as_str(), previous.version), ("emb", 1));
    assert_eq!(previous.segments.len(), 2);
    assert_eq!(previous.segments[0].deletes.unwrap().count, 1);
    assert_eq!(previous.pieces.len(), 3); // rows 0-1, 2 of the first segment; 0-1 of the second
    let staged = v.staged.as_ref().unwrap();
    assert_eq!((staged.version, staged.pieces.len()), (3, 1));
    assert!(staged.encoders.passage.source.ends_with("tiny-a"));
    assert!(m.collections[0].encoders["emb"]
        .passage
        .source
        .ends_with("tiny-b"));
}

/// With `VELLUM_REGEN_GOLDEN` set, writes `written` as the golden file; then checks that the
/// writer still produces it byte for byte.
#[allow(dead_code)] // used by the tests that need the `encoders` feature
fn write_or_check_golden(golden: &Path, written: &[u8]) {
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(golden, written).unwrap();
    }
    assert_eq!(
        written,
        std::fs::read(golden).unwrap(),
        "the writer no longer produces the golden file {}",
        golden.display()
    );
}

/// The documents of the codes-only PLAID case: 8-d tokens near two axes.
fn codes_only_docs() -> Vec<(String, Vec<f32>)> {
    let tok = |axis: usize, x: f32| -> Vec<f32> {
        (0..8)
            .map(|j| match j {
                _ if j == axis => 1.0,
                7 => x,
                6 => -x / 2.0,
                _ => 0.0,
            })
            .collect()
    };
    vec![
        ("a".into(), [tok(0, 0.25), tok(1, -0.25)].concat()),
        ("b".into(), tok(1, 0.125)),
        (
            "c".into(),
            [tok(0, -0.125), tok(0, 0.0), tok(1, 0.5)].concat(),
        ),
    ]
}

/// A database whose multi-vector field keeps only its PLAID codes
/// (`format-spec/golden/v1/plaid-codes-only/db`: the segment has no token section, its PLAID
/// section the compact layout): it opens, reads back decompressed tokens, searches and verifies.
/// k-means rounding may differ between CPUs, so this case is checked by reading, not rewritten.
#[test]
fn golden_v1_plaid_codes_only_database() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/golden/v1/plaid-codes-only/db");
    if std::env::var_os("VELLUM_REGEN_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        let db = Database::create(&golden).unwrap();
        let mut w = db.writer().unwrap();
        w.create_collection(
            "docs",
            Schema::new().with_field(FieldSpec::multi("tok", 8, DType::F16, Metric::Ip)),
        )
        .unwrap();
        w.set_plaid(
            "docs",
            "tok",
            Some(vellum::meta::PlaidParams::parse("nbits=2,k=2,min_rows=1,store=codes").unwrap()),
        )
        .unwrap();
        for (id, t) in codes_only_docs() {
            w.add("docs", Document::new(id).with_multi("tok", t))
                .unwrap();
        }
        w.commit().unwrap();
        drop((w, db));
        let _ = std::fs::remove_file(golden.join("LOCK"));
    }
    let t = tempfile::tempdir().unwrap();
    copy_dir(&golden, t.path());
    let db = Database::open(t.path()).unwrap();
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    assert!(c.plaid_params()["tok"].codes_only);
    let seg = &c.slots()[0].segment;
    assert!(!seg.stores_tokens(0));
    assert!(!seg
        .sections()
        .iter()
        .any(|e| e.kind == vellum::format::segment::SectionKind::MultiTokens));
    let view = seg.plaid(0).unwrap().unwrap();
    assert_eq!((view.k(), view.nbits, view.layout), (2, 2, 3));
    for (id, want) in codes_only_docs() {
        let got = c
            .get(&id)
            .unwrap()
            .unwrap()
            .multi("tok")
            .unwrap()
            .tokens
            .to_f32_vec();
        assert_eq!(got.len(), want.len(), "{id}");
        // 2-bit residuals of so few tokens are coarse: each token keeps its direction.
        for (g, w) in got.chunks_exact(8).zip(want.chunks_exact(8)) {
            let dot: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(dot / (norm(g) * norm(w)) > 0.9, "{id}: {g:?} vs {w:?}");
        }
    }
    let q = codes_only_docs()[1].1.clone();
    let hits = c
        .search(&SearchRequest::multi("tok", &q, 1).exact())
        .unwrap();
    assert_eq!(hits[0].len(), 1);
    let report = vellum::verify::verify_database(t.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
}
