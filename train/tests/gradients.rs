//! The differentiable encoder against its references: vellum's native forward pass (to 1e-5),
//! PyTorch's gradients of Tevatron's loss (committed by tests/fixtures/train/generate.py), and
//! "every trainable parameter receives a non-zero gradient".

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use vellum::encode::{EncoderOptions, ModelDir, TextEncoder};
use vellum_train::loss::contrastive_loss;
use vellum_train::tower::Tower;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn tower(name: &str, options: &str) -> Tower {
    let dir = ModelDir::at(fixtures().join("encoders").join(name), name).unwrap();
    let options = EncoderOptions::parse(options).unwrap();
    let record = TextEncoder::from_dir(&dir, &options)
        .unwrap()
        .record()
        .clone();
    Tower::load(&dir, &record, None, &Device::Cpu).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

#[test]
fn forward_equals_the_native_pass() {
    for (name, options) in [
        ("tiny-a", "pooling=mean,normalize=true"),
        ("tiny-a", "pooling=cls"),
        ("tiny-roberta", "pooling=last,dims=16"),
    ] {
        let t = tower(name, options);
        let texts = [
            "a short one",
            "",
            "a rather longer text with many more words in it than the first",
        ];
        let seqs: Vec<Vec<u32>> = texts.iter().map(|s| t.tokenize(s).unwrap()).collect();
        let got: Vec<f32> = t
            .encode(&seqs)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let want = t.native().encode_tokens(&refs).unwrap();
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{name} {options}: max abs difference {diff}");
    }
}

#[test]
fn gradients_match_pytorch_and_reach_every_parameter() {
    let text = std::fs::read_to_string(fixtures().join("train/reference_grads.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let queries = ids(&reference["queries"]);
    let passages = ids(&reference["passages"]);
    let group = reference["group"].as_u64().unwrap() as usize;
    let temperature = reference["temperature"].as_f64().unwrap();
    for name in ["tiny-a", "tiny-roberta"] {
        let want = &reference["models"][name];
        let t = tower(name, "pooling=mean,normalize=true");
        let q = t.encode(&queries).unwrap();
        let p = t.encode(&passages).unwrap();
        let loss = contrastive_loss(&q, &p, group, temperature).unwrap();
        let value = loss.to_scalar::<f32>().unwrap() as f64;
        let want_loss = want["loss"].as_f64().unwrap();
        assert!(
            (value - want_loss).abs() < 1e-5,
            "{name}: loss {value} vs {want_loss}"
        );
        let grads = loss.backward().unwrap();
        let mut checked = 0;
        for (used, var) in t.trainable_vars() {
            let g: Vec<f32> = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: {used} received no gradient"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let norm = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            let r = &want["grads"][used.as_str()];
            let want_norm = r["norm"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no reference for {used}"));
            checked += 1;
            if used.ends_with("attention.self.key.bias") {
                // Mathematically zero: the key bias adds `q · b` to every score of a query
                // alike, which the softmax cancels. Both sides hold rounding noise only.
                assert!(
                    norm < 1e-5 && want_norm < 1e-5,
                    "{name}: {used}: {norm} / {want_norm}"
                );
                continue;
            }
            assert!(norm > 0.0, "{name}: {used} has a zero gradient");
            assert!(
                (norm - want_norm).abs() <= 1e-3 * want_norm,
                "{name}: {used}: gradient norm {norm} vs PyTorch {want_norm}"
            );
            for (a, b) in g.iter().zip(r["first"].as_array().unwrap()) {
                let b = b.as_f64().unwrap();
                assert!(
                    (*a as f64 - b).abs() <= 1e-3 * want_norm.max(1e-6),
                    "{name}: {used}: gradient value {a} vs PyTorch {b}"
                );
            }
        }
        // Every parameter PyTorch trains is trained here (the pooler is unused by both).
        assert_eq!(checked, want["grads"].as_object().unwrap().len(), "{name}");
    }
}

#[test]
fn mismatched_query_and_passage_counts_are_refused() {
    // 2 queries with groups of 2 need 4 passages, not 3.
    let q = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let p = Tensor::zeros((3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(contrastive_loss(&q, &p, 2, 1.0).is_err());
}
