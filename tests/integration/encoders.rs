//! Built-in encoders against their reference implementations (outputs committed by
//! `tests/fixtures/encoders/generate.py`).

use vellum::encode::{EncoderOptions, TextEncoder};
use vellum::ingest::array::Array;

use crate::common::{fixture_path, minilm_dir};

fn sentences() -> Vec<String> {
    std::fs::read_to_string(fixture_path("encoders/sentences.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Asserts every row of `got` matches `want` (row-major, `dims` wide) to the given tolerances.
fn assert_close(got: &[f32], want: &[f32], dims: usize, min_cos: f64, max_abs: f32, label: &str) {
    assert_eq!(got.len(), want.len(), "{label}: output size");
    let mut worst_cos = 1f64;
    let mut worst_abs = 0f32;
    for (i, (g, w)) in got.chunks(dims).zip(want.chunks(dims)).enumerate() {
        let c = cosine(g, w);
        let a = g
            .iter()
            .zip(w)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            c >= min_cos && a <= max_abs,
            "{label}: text {i}: cosine {c}, max abs diff {a}"
        );
        worst_cos = worst_cos.min(c);
        worst_abs = worst_abs.max(a);
    }
    eprintln!("{label}: min cosine {worst_cos}, max abs diff {worst_abs}");
}

#[test]
fn minilm_matches_sentence_transformers() {
    let texts = sentences();
    assert!(texts.len() >= 100);
    let reference = Array::open_npy(&fixture_path("encoders/minilm_reference.npy")).unwrap();
    assert_eq!(reference.shape(), &[texts.len(), 384]);
    let mut want = vec![0f32; texts.len() * 384];
    reference.read_f32(0, &mut want).unwrap();

    let encoder =
        TextEncoder::load(minilm_dir().to_str().unwrap(), &EncoderOptions::default()).unwrap();
    let r = encoder.record();
    assert_eq!((r.dims, r.max_length, r.normalize), (384, 256, true));
    assert_eq!(r.pooling, vellum::encode::Pooling::Mean);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = encoder.encode(&refs).unwrap();
    assert_close(&got, &want, 384, 0.99999, 1e-4, "all-MiniLM-L6-v2");
    // Texts far beyond max_length really are truncated (not an artefact of a short sample).
    assert!(texts
        .iter()
        .any(|t| encoder.tokenize(t).unwrap().len() == 256));
}

#[test]
fn tiny_berts_match_transformers_for_each_option() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("encoders/tiny_reference.json")).unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for case in reference["cases"].as_array().unwrap() {
        let model = fixture_path(&format!("encoders/{}", case["model"].as_str().unwrap()));
        let options = EncoderOptions::parse(case["options"].as_str().unwrap()).unwrap();
        let encoder = TextEncoder::load(model.to_str().unwrap(), &options).unwrap();
        let dims = encoder.dims();
        let want: Vec<f32> = case["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(want.len(), texts.len() * dims);
        let got = encoder.encode(&texts).unwrap();
        assert_close(
            &got,
            &want,
            dims,
            0.99999,
            1e-4,
            case["options"].as_str().unwrap(),
        );
    }
}
