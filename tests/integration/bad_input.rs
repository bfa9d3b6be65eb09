//! Bad input files: each gives an error naming the file, row or line and field, and nothing
//! already committed is lost.

use std::path::Path;

use vellum::ingest::array::{write_npy, write_npy_f32};
use vellum::ingest::{ingest, Mode, VectorInput};
use vellum::{DType, Database, FieldSpec, Metric, Schema};

struct Fixture {
    dir: tempfile::TempDir,
    db: Database,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("db")).unwrap();
    let mut w = db.writer().unwrap();
    w.create_collection(
        "c",
        Schema::new()
            .with_field(FieldSpec::dense("e", 3, DType::F32, Metric::Ip))
            .with_field(FieldSpec::multi("t", 2, DType::F16, Metric::Ip)),
    )
    .unwrap();
    w.commit().unwrap();
    drop(w);
    let f = Fixture { dir, db };
    // A committed document that must survive every failed ingest.
    f.write("ok.jsonl", b"{\"id\":\"keep\",\"text\":\"k\"}\n");
    write_npy_f32(&f.path("ok_e.npy"), &[1, 3], &[1.0, 2.0, 3.0]).unwrap();
    write_npy_f32(&f.path("ok_t.npy"), &[1, 2], &[1.0, 2.0]).unwrap();
    write_npy(
        &f.path("ok_l.npy"),
        "<i8",
        &[1],
        bytemuck::cast_slice(&[1i64]),
    )
    .unwrap();
    f.run("ok.jsonl", "ok_e.npy", "ok_t.npy", "ok_l.npy")
        .unwrap();
    f
}

impl Fixture {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    fn run(&self, docs: &str, e: &str, t: &str, l: &str) -> vellum::Result<()> {
        let mut w = self.db.writer()?;
        let mut tv = VectorInput::parse(&format!("t={}", self.path(t).display()))?;
        tv.lengths = Some((self.path(l), None));
        let inputs = [
            VectorInput::parse(&format!("e={}", self.path(e).display()))?,
            tv,
        ];
        ingest(
            &mut w,
            "c",
            &self.path(docs),
            &inputs,
            Mode::Add,
            &mut |_| {},
        )?;
        w.commit()?;
        Ok(())
    }

    /// Two documents with valid vectors, then the given overrides.
    fn expect_error(
        &self,
        docs: &[u8],
        e: Option<(&str, &[usize], Vec<u8>)>,
        lengths: Option<Vec<i64>>,
        needles: &[&str],
    ) {
        self.write("d.jsonl", docs);
        let (descr, shape, data) =
            e.unwrap_or(("<f4", &[2, 3], bytemuck::cast_slice(&[0.5f32; 6]).to_vec()));
        write_npy(&self.path("e.npy"), descr, shape, &data).unwrap();
        write_npy_f32(&self.path("t.npy"), &[3, 2], &[0.1; 6]).unwrap();
        let l = lengths.unwrap_or(vec![1, 2]);
        write_npy(
            &self.path("l.npy"),
            "<i8",
            &[l.len()],
            bytemuck::cast_slice(&l),
        )
        .unwrap();
        let err = self
            .run("d.jsonl", "e.npy", "t.npy", "l.npy")
            .unwrap_err()
            .to_string();
        for n in needles {
            assert!(err.contains(n), "expected {n:?} in: {err}");
        }
        self.assert_intact();
    }

    fn assert_intact(&self) {
        let snap = self.db.snapshot().unwrap();
        let c = snap.collection("c").unwrap();
        assert_eq!(c.len(), 1, "committed data changed");
        assert_eq!(
            c.get("keep")
                .unwrap()
                .unwrap()
                .dense("e")
                .unwrap()
                .to_f32_vec(),
            vec![1.0, 2.0, 3.0]
        );
        let r = vellum::verify::verify_database(&self.path("db")).unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

const TWO: &[u8] = b"{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"y\"}\n";

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

#[test]
fn dimension_mismatch() {
    fixture().expect_error(
        TWO,
        Some(("<f4", &[2, 4], f32_bytes(&[0.0; 8]))),
        None,
        &["e.npy", "expects [N, 3]", "found [2, 4]"],
    );
}

#[test]
fn integer_vectors_are_refused() {
    fixture().expect_error(
        TWO,
        Some(("<i4", &[2, 3], vec![0; 24])),
        None,
        &["e.npy", "floating point"],
    );
}

#[test]
fn row_count_mismatch() {
    fixture().expect_error(
        TWO,
        Some(("<f4", &[3, 3], f32_bytes(&[0.0; 9]))),
        None,
        &["e.npy", "has 3 rows", "has 2 documents"],
    );
}

#[test]
fn nan_and_infinity_name_row_and_field() {
    let f = fixture();
    let mut v = [0.5f32; 6];
    v[4] = f32::NAN;
    f.expect_error(
        TWO,
        Some(("<f4", &[2, 3], f32_bytes(&v))),
        None,
        &[
            "e.npy",
            "row 1",
            "document \"b\"",
            "field \"e\"",
            "element 1 is NaN",
        ],
    );
    v[4] = f32::INFINITY;
    f.expect_error(
        TWO,
        Some(("<f4", &[2, 3], f32_bytes(&v))),
        None,
        &["row 1", "inf"],
    );
}

#[test]
fn duplicate_ids_in_file_and_against_committed() {
    let f = fixture();
    f.expect_error(
        b"{\"id\":\"a\"}\n{\"id\":\"a\"}\n",
        None,
        None,
        &["d.jsonl", "line 2", "duplicate id \"a\""],
    );
    f.expect_error(
        b"{\"id\":\"a\"}\n{\"id\":\"keep\"}\n",
        None,
        None,
        &["line 2", "already committed"],
    );
}

#[test]
fn empty_ids_bad_utf8_and_bad_json() {
    let f = fixture();
    f.expect_error(
        b"{\"id\":\"a\"}\n{\"id\":\"\"}\n",
        None,
        None,
        &["d.jsonl", "line 2", "empty document id"],
    );
    f.expect_error(
        b"{\"id\":\"a\"}\n{\"id\":\"\xc3\x28\"}\n",
        None,
        None,
        &["line 2", "invalid UTF-8"],
    );
    f.expect_error(
        b"{\"id\":\"a\"}\n{\"id\":\"b\"\n",
        None,
        None,
        &["line 2", "invalid JSON"],
    );
    f.expect_error(
        b"{\"id\":\"a\"}\n[1,2]\n",
        None,
        None,
        &["line 2", "expected a JSON object"],
    );
}

#[test]
fn truncated_vector_file() {
    let f = fixture();
    f.write("d.jsonl", TWO);
    write_npy_f32(&f.path("e.npy"), &[2, 3], &[0.5; 6]).unwrap();
    let bytes = std::fs::read(f.path("e.npy")).unwrap();
    std::fs::write(f.path("e.npy"), &bytes[..bytes.len() - 5]).unwrap();
    write_npy_f32(&f.path("t.npy"), &[3, 2], &[0.1; 6]).unwrap();
    write_npy(
        &f.path("l.npy"),
        "<i8",
        &[2],
        bytemuck::cast_slice(&[1i64, 2]),
    )
    .unwrap();
    let err = f
        .run("d.jsonl", "e.npy", "t.npy", "l.npy")
        .unwrap_err()
        .to_string();
    assert!(err.contains("e.npy") && err.contains("truncated"), "{err}");
    std::fs::write(f.path("e.npy"), b"not numpy").unwrap();
    let err = f
        .run("d.jsonl", "e.npy", "t.npy", "l.npy")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("e.npy") && err.contains("not a .npy file"),
        "{err}"
    );
    f.assert_intact();
}

#[test]
fn multi_vector_lengths_must_add_up() {
    let f = fixture();
    f.expect_error(
        TWO,
        None,
        Some(vec![1, 1]),
        &["l.npy", "sum to 2", "3 token rows"],
    );
    f.expect_error(
        TWO,
        None,
        Some(vec![3, 0]),
        &["l.npy", "row 1", "at least one token"],
    );
    f.expect_error(
        TWO,
        None,
        Some(vec![3]),
        &["l.npy", "1 token counts for 2 documents"],
    );
}

#[test]
fn safetensors_input_names_missing_tensors() {
    let f = fixture();
    let path = f.path("v.safetensors");
    let data: Vec<u8> = bytemuck::cast_slice(&[0.25f32; 6]).to_vec();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &data).unwrap();
    safetensors::serialize_to_file([("e", view)], None, &path).unwrap();
    f.write("d.jsonl", TWO);
    let mut w = f.db.writer().unwrap();
    let inputs = [VectorInput::parse(&format!("e={}:wrong", path.display())).unwrap()];
    let err = ingest(
        &mut w,
        "c",
        &f.path("d.jsonl"),
        &inputs,
        Mode::Add,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("v.safetensors")
            && err.contains("no such tensor")
            && err.contains("the file has: e"),
        "{err}"
    );
    let inputs = [VectorInput::parse(&format!("e={}", path.display())).unwrap()];
    let err = ingest(
        &mut w,
        "c",
        &f.path("d.jsonl"),
        &inputs,
        Mode::Add,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("field \"t\"") && err.contains("has no input"),
        "{err}"
    );
    drop(w);
    f.assert_intact();
    assert!(Path::new(&path).exists());
}

/// Callers can branch on the kind of a mistake: each has its own error variant.
#[test]
fn errors_are_typed_by_kind_of_mistake() {
    use vellum::hnsw::HnswParams;
    use vellum::{Error, SearchRequest, ShardSet};
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::build_all_kinds(&dir.path().join("db"));
    let snap = db.snapshot().unwrap();
    let c = snap.collection("docs").unwrap();
    let doc = c.get("doc-1").unwrap().unwrap();
    assert!(matches!(
        doc.multi("emb"),
        Err(Error::WrongFieldKind { found: "dense", .. })
    ));
    assert!(matches!(
        c.search(&SearchRequest::dense("img", &[0.0; 6], 1)),
        Err(Error::WrongFieldKind {
            found: "tensor",
            ..
        })
    ));
    assert!(matches!(
        c.search(&SearchRequest::dense("emb", &[1.0; 5], 1)),
        Err(Error::InvalidQuery(_))
    ));
    assert!(matches!(
        c.search(&SearchRequest::dense("emb", &[f32::NAN; 8], 1)),
        Err(Error::InvalidQuery(_))
    ));
    assert!(matches!(
        HnswParams::parse("m=1"),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        vellum::eval::parse_measures("ndcg@x"),
        Err(Error::InvalidParameter { .. })
    ));
    let mut w = db.writer().unwrap();
    assert!(matches!(
        w.set_index("docs", "tok", Some(HnswParams::default())),
        Err(Error::WrongFieldKind { found: "multi", .. })
    ));
    drop(w);
    #[cfg(feature = "encoders")]
    assert!(matches!(
        c.load_encoder(
            "emb",
            vellum::encode::Role::Query,
            &vellum::encode::EncoderOptions::default()
        ),
        Err(Error::NoEncoder { .. })
    ));
    // The same database twice is two overlapping shards.
    let p = dir.path().join("db");
    let shards = ShardSet::open(&[&p, &p]).unwrap();
    let q = [0.5f32; 8];
    assert!(matches!(
        shards.search("docs", &SearchRequest::dense("emb", &q, 3)),
        Err(Error::MismatchedShards(_))
    ));
    assert!(matches!(
        shards.collections("nope"),
        Err(Error::Shard { .. })
    ));
    // Ingest without an input for a field names the field and what it needs.
    let mut w = db.writer().unwrap();
    let docs = dir.path().join("d.jsonl");
    std::fs::write(&docs, "{\"id\": \"x\"}\n").unwrap();
    let err = vellum::ingest::ingest(
        &mut w,
        "docs",
        &docs,
        &[],
        vellum::ingest::Mode::Add,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::MissingInput { field, .. } if field == "emb"),
        "{err}"
    );
}
