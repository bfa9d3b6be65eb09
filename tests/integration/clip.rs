//! CLIP parity against transformers (`tests/fixtures/clip/generate.py`): the image processor's
//! pixels bit for bit (PNG) before normalisation and within 1e-6 after, JPEG within a stated
//! tolerance; the tiny random CLIP's image embeddings, penultimate hidden states and text
//! embeddings.

use std::path::{Path, PathBuf};

use vellum::encode::image::{load_image, ImageProcessor, ImageProcessorConfig};
use vellum::ingest::array::Array;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip")
        .join(rel)
}

fn npy(rel: &str) -> (Vec<f32>, Vec<usize>) {
    let a = Array::open(&fixture(rel), None).unwrap();
    let n: usize = a.shape().iter().product();
    let mut v = vec![0f32; n];
    a.read_f32(0, &mut v).unwrap();
    (v, a.shape().to_vec())
}

fn processor(size: usize) -> ImageProcessor {
    let config: ImageProcessorConfig = serde_json::from_value(serde_json::json!({
        "size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}
    }))
    .unwrap();
    ImageProcessor::new(config, Path::new("test")).unwrap()
}

/// JPEG decoders differ from libjpeg-turbo by a few levels on some pixels; what is allowed.
const JPEG_MAX_LEVELS: f32 = 6.0;
const JPEG_MEAN_LEVELS: f32 = 0.75;

#[test]
fn preprocessing_equals_transformers_pil_processor() {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("preprocess.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (size, images) in index["images"].as_object().unwrap() {
        let p = processor(size.parse().unwrap());
        for (name, stem) in images.as_object().unwrap() {
            let stem = stem.as_str().unwrap();
            let img = load_image(&fixture(&format!("images/{name}"))).unwrap();
            let got = p.resized_and_cropped(&img).unwrap();
            let (want, shape) = npy(&format!("pixels/{stem}_u8.npy"));
            assert_eq!(shape, [3, got.height, got.width], "{name} at {size}");
            let plane = got.width * got.height;
            let mut diffs = Vec::with_capacity(want.len());
            for (i, px) in got.pixels.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    diffs.push((f32::from(px[c]) - want[c * plane + i]).abs());
                }
            }
            let max = diffs.iter().cloned().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            if name.ends_with(".png") {
                assert_eq!(max, 0.0, "{name} at {size}: pixels differ from Pillow's");
            } else {
                assert!(
                    max <= JPEG_MAX_LEVELS && mean <= JPEG_MEAN_LEVELS,
                    "{name} at {size}: max {max}, mean {mean} levels"
                );
            }
            if size == "64" {
                let values = p.preprocess(&img, Path::new(name)).unwrap();
                let (want, _) = npy(&format!("pixels/{stem}_norm.npy"));
                let tol = if name.ends_with(".png") {
                    1e-6
                } else {
                    JPEG_MAX_LEVELS / 255.0 / 0.26
                };
                for (g, w) in values.iter().zip(&want) {
                    assert!((g - w).abs() <= tol, "{name}: {g} vs {w}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

#[test]
fn bad_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let err = load_image(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.png"), "{err}");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let err = load_image(&text).unwrap_err().to_string();
    assert!(
        err.contains("notes.png") && err.contains("not an image"),
        "{err}"
    );
    let bytes = std::fs::read(fixture("images/wide.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.png") && err.contains("decode"), "{err}");
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

#[test]
fn the_native_clip_pass_equals_transformers() {
    use vellum::encode::backend::native_clip::NativeClip;
    use vellum::encode::models::clip::ClipConfig;
    use vellum::encode::ModelDir;
    let dir = ModelDir::at(fixture("tiny"), "tiny").unwrap();
    let config = ClipConfig::from_dir(&dir).unwrap().expect("a CLIP config");
    let bytes = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    let model = NativeClip::load(
        &dir,
        &bytes,
        config,
        vellum::encode::ComputeType::F32,
        vellum::search::Device::Cpu,
    )
    .unwrap();
    let r = reference();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("preprocess.json")).unwrap())
            .unwrap();
    let images: Vec<(&String, &serde_json::Value)> =
        r["images"].as_object().unwrap().iter().collect();
    // All images in one batch, from the reference processor's pixel values (the processor is
    // compared on its own above; JPEG decoders differ by a few levels).
    let mut pixels = Vec::new();
    for (name, _) in &images {
        let stem = index["images"]["64"][name.as_str()].as_str().unwrap();
        pixels.extend(npy(&format!("pixels/{stem}_norm.npy")).0);
    }
    let out = model.encode_images(&pixels, true).unwrap();
    let (proj, tokens) = (24, 17 * 40);
    for (i, (name, want)) in images.iter().enumerate() {
        let emb = &out.embeddings[i * proj..(i + 1) * proj];
        let c = cosine(emb, &floats(&want["embedding"]));
        assert!(c >= 0.99999, "{name}: cosine {c}");
        let hs = &out.penultimate[i * tokens..(i + 1) * tokens];
        let want_hs = floats(&want["penultimate"]);
        let max = hs
            .iter()
            .zip(&want_hs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(max <= 1e-4, "{name}: penultimate max diff {max}");
    }
    // Texts: the tokenizer's ids, then the text tower.
    let tok = tokenizers::Tokenizer::from_file(fixture("tiny/tokenizer.json")).unwrap();
    for t in r["texts"].as_array().unwrap() {
        let enc = tok.encode(t["text"].as_str().unwrap(), true).unwrap();
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(77);
        let want_ids: Vec<u32> = t["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        if ids.len() == 77 {
            *ids.last_mut().unwrap() = want_ids[76];
        }
        assert_eq!(ids, want_ids, "{}", t["text"]);
        let emb = model.encode_texts(&[&ids]).unwrap();
        let c = cosine(&emb, &floats(&t["embedding"]));
        assert!(c >= 0.99999, "{}: cosine {c}", t["text"]);
    }
}

/// A database with a CLIP image-embedding field and a hidden-states tensor field, both bound to
/// the tiny CLIP; documents from a JSONL file naming the fixture images.
fn image_db(dir: &Path, docs: &str) -> vellum::Database {
    use vellum::encode::{prepare_encoders, EncoderChoice, EncoderOptions, OutputKind};
    use vellum::{Database, FieldSpec, Schema};
    let db = Database::create(dir.join("db")).unwrap();
    let mut w = db.writer().unwrap();
    let schema = Schema::new()
        .with_field(FieldSpec::parse("emb:dense:24:f32:cosine").unwrap())
        .with_field(FieldSpec::parse("feat:tensor:17x40:f32").unwrap());
    w.create_collection("img", schema).unwrap();
    let tiny = fixture("tiny").display().to_string();
    let emb = EncoderChoice {
        passage: tiny.clone(),
        ..Default::default()
    };
    let feat = EncoderChoice {
        passage: tiny,
        passage_options: EncoderOptions {
            output: Some(OutputKind::Tensor),
            ..Default::default()
        },
        ..Default::default()
    };
    w.set_encoders("img", "emb", prepare_encoders(db.path(), &emb).unwrap())
        .unwrap();
    w.set_encoders("img", "feat", prepare_encoders(db.path(), &feat).unwrap())
        .unwrap();
    w.commit().unwrap();
    std::fs::write(dir.join("docs.jsonl"), docs).unwrap();
    db
}

fn docs_jsonl(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "{{\"id\": \"{n}\", \"image\": \"{}\", \"metadata\": {{\"kind\": \"photo\"}}}}\n",
                fixture(&format!("images/{n}")).display()
            )
        })
        .collect()
}

#[test]
fn images_ingest_into_embedding_and_feature_fields_and_text_queries_find_them() {
    use vellum::ingest::pipeline::{ingest_text, TextIngest};
    use vellum::SearchRequest;
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "exact.png",
        "gray.png",
        "palette.png",
        "rgba.png",
        "tall.png",
        "wide.png",
    ];
    let db = image_db(dir.path(), &docs_jsonl(&names));
    let mut w = db.writer().unwrap();
    let docs = dir.path().join("docs.jsonl");
    let job = TextIngest::new("img", &docs);
    let stats = ingest_text(&mut w, &job, &mut |_| {}).unwrap();
    assert_eq!(stats.documents, 6);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("img").unwrap();
    let r = reference();
    for n in names {
        let d = c.get(n).unwrap().unwrap();
        let emb = d.dense("emb").unwrap().to_f32_vec();
        let want = floats(&r["images"][n]["embedding"]);
        assert!(cosine(&emb, &want) >= 0.99999, "{n}");
        let t = d.tensor("feat").unwrap();
        assert_eq!(t.shape, [17, 40]);
        let hs = t.data.to_f32_vec();
        let want = floats(&r["images"][n]["penultimate"]);
        let max = hs
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(max <= 1e-4, "{n}: {max}");
        assert!(d.metadata().unwrap().contains("\"image\""));
    }
    // Text queries through the field's query encoder (CLIP's text tower) rank as brute force.
    let texts: Vec<String> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let hits = c
        .search_texts(&refs, SearchRequest::text("emb", 3))
        .unwrap();
    for (t, h) in r["texts"].as_array().unwrap().iter().zip(&hits) {
        let q = floats(&t["embedding"]);
        let mut all: Vec<(f64, &str)> = names
            .iter()
            .map(|n| {
                (
                    cosine(
                        &c.get(n)
                            .unwrap()
                            .unwrap()
                            .dense("emb")
                            .unwrap()
                            .to_f32_vec(),
                        &q,
                    ),
                    *n,
                )
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<&str> = all.iter().take(3).map(|x| x.1).collect();
        assert_eq!(h.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), want);
    }
    // The query encoder's token ids are the reference tokenizer's (truncated at 77 with the end
    // token kept).
    let qe = c.query_encoder("emb").unwrap();
    for t in r["texts"].as_array().unwrap() {
        let p = qe
            .prepare(&vellum::encode::EncoderInput::Text(
                t["text"].as_str().unwrap(),
            ))
            .unwrap();
        let want: Vec<u32> = t["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(p.tokens(), want.as_slice());
    }
    // The feature cache exports as [N, 17, 40].
    let npy = dir.path().join("feat.npy");
    let s = vellum::interop::export_dense(c, "feat", &npy, &dir.path().join("ids.txt")).unwrap();
    assert_eq!(s.shape, [6, 17, 40]);
    assert_eq!(Array::open(&npy, None).unwrap().shape(), [6, 17, 40]);
}

#[test]
fn bad_images_stop_the_ingest_or_are_skipped_and_reported() {
    use vellum::ingest::pipeline::{ingest_text, TextIngest};
    let dir = tempfile::tempdir().unwrap();
    let mut docs = docs_jsonl(&["exact.png", "wide.png"]);
    docs.push_str("{\"id\": \"gone\", \"image\": \"no/such.png\"}\n");
    std::fs::write(
        dir.path().join("broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    docs.push_str("{\"id\": \"broken\", \"image\": \"broken.png\"}\n");
    docs.push_str(&docs_jsonl(&["tall.png"]));
    let db = image_db(dir.path(), &docs);
    let path = dir.path().join("docs.jsonl");
    let mut w = db.writer().unwrap();
    let err = ingest_text(&mut w, &TextIngest::new("img", &path), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("docs.jsonl") && err.contains("\"gone\"") && err.contains("such.png"),
        "{err}"
    );
    assert_eq!(db.snapshot().unwrap().collection("img").unwrap().len(), 0);
    let mut job = TextIngest::new("img", &path);
    job.skip_bad_images = true;
    let stats = ingest_text(&mut w, &job, &mut |_| {}).unwrap();
    assert_eq!(stats.documents, 3);
    let bad: Vec<&str> = stats.bad_images.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(bad, ["gone", "broken"]);
    assert!(
        stats.bad_images[1].1.contains("broken.png"),
        "{:?}",
        stats.bad_images
    );
    // A folder of images: one document per file, ids from the file names.
    let folder = dir.path().join("photos");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::copy(fixture("images/gray.png"), folder.join("a.png")).unwrap();
    std::fs::copy(fixture("images/photo.jpg"), folder.join("sub/b.jpg")).unwrap();
    std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    let stats = ingest_text(&mut w, &TextIngest::new("img", &folder), &mut |_| {}).unwrap();
    assert_eq!(stats.documents, 2);
    let snap = db.snapshot().unwrap();
    let c = snap.collection("img").unwrap();
    assert!(c.get("a").unwrap().is_some() && c.get("sub/b").unwrap().is_some());
    // File names that cannot be ids, or that share an id, are refused before anything is read.
    let clash = dir.path().join("clash");
    std::fs::create_dir_all(&clash).unwrap();
    std::fs::copy(fixture("images/gray.png"), clash.join("x.png")).unwrap();
    std::fs::copy(fixture("images/photo.jpg"), clash.join("x.jpg")).unwrap();
    let err = ingest_text(&mut w, &TextIngest::new("img", &clash), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("would both get the id \"x\""), "{err}");
    let spaced = dir.path().join("spaced");
    std::fs::create_dir_all(&spaced).unwrap();
    std::fs::copy(fixture("images/gray.png"), spaced.join("My Photo.png")).unwrap();
    let err = ingest_text(&mut w, &TextIngest::new("img", &spaced), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("My Photo.png"), "{err}");
}
