//! The issue's three commands, end to end through the CLI, with real and tiny models.

mod common;

use std::path::{Path, PathBuf};

use common::{fail, fail_line, ok, ok_line};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn minilm() -> PathBuf {
    if let Some(d) = std::env::var_os("VELLUM_MINILM_DIR") {
        return d.into();
    }
    let dir = root().join("models/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        let status = std::process::Command::new("bash")
            .arg(root().join("tools/fetch-minilm.sh"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "tools/fetch-minilm.sh failed");
    }
    dir
}

/// The first `n` documents of the sample corpus, and the queries whose answer is among them.
fn sample(dir: &Path, n: usize) -> (PathBuf, PathBuf, PathBuf) {
    let ex = root().join("examples/debian");
    let docs: Vec<String> = std::fs::read_to_string(ex.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(String::from)
        .collect();
    let ids: Vec<String> = docs
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let qrels: Vec<String> = std::fs::read_to_string(ex.join("qrels.txt"))
        .unwrap()
        .lines()
        .filter(|l| ids.iter().any(|id| l.split(' ').nth(2) == Some(id)))
        .map(String::from)
        .collect();
    let qids: Vec<&str> = qrels.iter().map(|l| l.split(' ').next().unwrap()).collect();
    let queries: Vec<String> = std::fs::read_to_string(ex.join("queries.tsv"))
        .unwrap()
        .lines()
        .filter(|l| qids.contains(&l.split('\t').next().unwrap()))
        .map(String::from)
        .collect();
    assert!(queries.len() >= n / 10);
    let paths = (
        dir.join("corpus.jsonl"),
        dir.join("queries.tsv"),
        dir.join("qrels.txt"),
    );
    std::fs::write(&paths.0, docs.join("\n") + "\n").unwrap();
    std::fs::write(&paths.1, queries.join("\n") + "\n").unwrap();
    std::fs::write(&paths.2, qrels.join("\n") + "\n").unwrap();
    paths
}

#[test]
fn minilm_create_ingest_search_as_written_in_the_issue() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sample(d, 100);
    let model = minilm();
    let m = model.display();
    ok_line(
        d,
        &format!("create DB --collection docs --field emb:dense:384:f32:cosine --encoder emb={m}"),
    );
    let out = ok_line(d, "ingest DB --collection docs --docs corpus.jsonl");
    assert!(out.contains("encoded and ingested 100 documents"), "{out}");
    let run = ok_line(
        d,
        "search DB --collection docs --field emb --queries queries.tsv -k 10 --format trec",
    );
    assert_eq!(run.lines().count(), 10 * 10);
    // Known-item retrieval: a package's one-line summary finds its own description.
    std::fs::write(d.join("run.trec"), &run).unwrap();
    let eval = ok_line(d, "eval --run run.trec --qrels qrels.txt --metrics mrr@10");
    let mrr: f64 = eval
        .lines()
        .find(|l| l.starts_with("mrr@10"))
        .unwrap()
        .rsplit('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mrr >= 0.6, "MRR@10 {mrr}\n{eval}");
    // Re-running the ingest resumes: everything is already committed.
    let out = ok_line(d, "ingest DB --collection docs --docs corpus.jsonl");
    assert!(
        out.contains("encoded and ingested 0 documents")
            && out.contains("skipped 100 already committed"),
        "{out}"
    );
}

#[test]
fn untied_embedded_tiny_models_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (corpus, queries, _) = sample(d, 30);
    let fx = root().join("tests/fixtures/encoders");
    let (a, b) = (fx.join("tiny-a"), fx.join("tiny-b"));
    let (a, b) = (a.display(), b.display());
    let out = ok(
        d,
        &[
            "create",
            "DB",
            "--collection",
            "docs",
            "--field",
            "emb:dense:32:f32:cosine",
            "--encoder",
            &format!("emb={a}"),
            "--query-encoder",
            &format!("emb={b}"),
            "--encoder-options",
            "emb=pooling=cls,normalize=true",
            "--query-encoder-options",
            "emb=pooling=last,prefix=query: ",
            "--embed-model",
        ],
    );
    assert!(
        out.contains("encoder emb (query)")
            && out.contains("pooling=Last")
            && out.contains("(embedded)"),
        "{out}"
    );
    // TSV documents work as well as JSONL.
    let rows: Vec<String> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = v["text"].as_str().unwrap().replace(['\t', '\n'], " ");
            format!("{}\t{text}", v["id"].as_str().unwrap())
        })
        .collect();
    std::fs::write(d.join("corpus.tsv"), rows.join("\n") + "\n").unwrap();
    ok_line(
        d,
        "ingest DB --collection docs --docs corpus.tsv --commit-every 7",
    );
    let info = ok_line(d, "info DB");
    assert!(
        info.contains("30 documents") && info.contains("5 segments"),
        "{info}"
    );
    let run = ok_line(
        d,
        "search DB --collection docs --field emb --queries queries.tsv -k 3 --format tsv",
    );
    let n_queries = std::fs::read_to_string(&queries).unwrap().lines().count();
    assert_eq!(run.lines().count(), 3 * n_queries);

    // JSONL queries give the same run as TSV.
    let jsonl: Vec<String> = std::fs::read_to_string(&queries)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, text) = l.split_once('\t').unwrap();
            serde_json::json!({"id": id, "text": text}).to_string()
        })
        .collect();
    std::fs::write(d.join("queries.jsonl"), jsonl.join("\n") + "\n").unwrap();
    let run_jsonl = ok_line(
        d,
        "search DB --collection docs --field emb --queries queries.jsonl -k 3 --format tsv",
    );
    assert_eq!(run_jsonl, run);

    // Errors: duplicate query ids, a collection without encoders, a flag for an unknown field,
    // a missing model.
    std::fs::write(d.join("dup.tsv"), "q1\tfirst\nq1\tsecond\n").unwrap();
    let e = fail_line(
        d,
        "search DB --collection docs --field emb --queries dup.tsv",
    );
    assert!(
        e.contains("dup.tsv:line 2") && e.contains("duplicate query id \"q1\""),
        "{e}"
    );
    ok_line(
        d,
        "create DB --collection plain --field emb:dense:32:f32:cosine",
    );
    let e = fail_line(
        d,
        "search DB --collection plain --field emb --queries queries.tsv",
    );
    assert!(e.contains("no encoder is bound to this field"), "{e}");
    let e = fail_line(d, "ingest DB --collection plain --docs corpus.jsonl");
    assert!(
        e.contains("field \"emb\"")
            && e.contains("--vectors emb=FILE")
            && e.contains("--encoder emb=MODEL"),
        "{e}"
    );
    let e = fail_line(
        d,
        &format!("create DB --collection c2 --field emb:dense:32 --query-encoder emb={b}"),
    );
    assert!(e.contains("has no --encoder emb=MODEL"), "{e}");
    let e = fail_line(
        d,
        "create DB --collection c3 --field emb:dense:32 --encoder emb=/no/such/model",
    );
    assert!(e.contains("no such folder"), "{e}");
    // Shards encoded by different models cannot be searched as one.
    ok_line(
        d,
        &format!("create S2 --collection docs --field emb:dense:32:f32:cosine --encoder emb={b}"),
    );
    ok_line(d, "ingest S2 --collection docs --docs corpus.tsv");
    let e = fail_line(
        d,
        "search --db DB --db S2 --collection docs --field emb --queries queries.tsv",
    );
    assert!(
        e.contains("mismatched shards") && e.contains("model: expected"),
        "{e}"
    );
    // Nothing half-made: the failed create left no collection behind.
    assert!(!ok_line(d, "info DB").contains("collection c3"));
}

/// SIGKILL in the middle of an encoding ingest loses at most what was not committed yet, and
/// the same command then finishes the job.
#[test]
fn killed_ingest_resumes_from_its_last_commit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sample(d, 2000);
    let a = root().join("tests/fixtures/encoders/tiny-a");
    ok_line(
        d,
        &format!(
            "create DB --collection docs --field emb:dense:32:f32:cosine --encoder emb={}",
            a.display()
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vellum"))
        .current_dir(d)
        .args([
            "ingest",
            "DB",
            "--collection",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--commit-every",
            "64",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first commit (generation 2), then kill.
    let start = std::time::Instant::now();
    loop {
        let info = ok_line(d, "info DB --json");
        let v: serde_json::Value = serde_json::from_str(&info).unwrap();
        if v["generation"].as_u64().unwrap() >= 2 || start.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let finished_anyway = child.wait().unwrap().success();
    eprintln!("first ingest finished before the kill: {finished_anyway}");
    let out = ok_line(d, "ingest DB --collection docs --docs corpus.jsonl");
    eprintln!("re-run: {out}");
    let info = ok_line(d, "info DB --json");
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["collections"][0]["documents"], 2000, "{out}");
    if !finished_anyway {
        assert!(out.contains("already committed"), "{out}");
    }
    ok_line(d, "verify DB");
}

/// A Hugging Face model id resolves from the local cache (`HF_HUB_CACHE` layout:
/// models--ORG--NAME/refs/main -> snapshots/COMMIT/), offline.
#[test]
fn model_ids_resolve_from_the_hugging_face_cache() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let repo = d.join("hub/models--vellum-test--tiny-a");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(
            root().join("tests/fixtures/encoders/tiny-a").join(f),
            snap.join(f),
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vellum"))
            .current_dir(d)
            .env("HF_HUB_CACHE", d.join("hub"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "create",
        "DB",
        "--collection",
        "docs",
        "--field",
        "emb:dense:32:f32:cosine",
        "--encoder",
        "emb=vellum-test/tiny-a",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("encoder emb (passage): vellum-test/tiny-a"),
        "{stdout}"
    );
    let out = run(&[
        "create",
        "DB",
        "--collection",
        "c2",
        "--field",
        "emb:dense:32",
        "--encoder",
        "emb=vellum-test/absent",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not in the Hugging Face cache"),
        "{err}"
    );
}

#[test]
fn colbert_create_ingest_search_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sample(d, 80);
    let model = root().join("tests/fixtures/colbert/stanford");
    let m = model.display();
    let out = ok_line(
        d,
        &format!("create DB --collection docs --field tok:multi:16:f16:ip --encoder tok={m}"),
    );
    assert!(
        out.contains("late interaction (stanford checkpoint)"),
        "{out}"
    );
    let out = ok_line(d, "ingest DB --collection docs --docs corpus.jsonl");
    assert!(out.contains("encoded and ingested 80 documents"), "{out}");
    let info = ok_line(d, "info DB");
    assert!(info.contains("expansion=24 tokens"), "{info}");
    let run = ok_line(
        d,
        "search DB --collection docs --field tok --queries queries.tsv -k 5 --format trec --encoder-options truncate=true",
    );
    let queries = std::fs::read_to_string(d.join("queries.tsv")).unwrap();
    assert_eq!(run.lines().count(), 5 * queries.lines().count());
    // A document's own text, encoded as a query, finds the document first.
    let own: Vec<String> = std::fs::read_to_string(d.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .take(10)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let short: String = v["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .take(8)
                .collect::<Vec<_>>()
                .join(" ");
            format!("{}\t{short}", v["id"].as_str().unwrap())
        })
        .collect();
    std::fs::write(d.join("own.tsv"), own.join("\n") + "\n").unwrap();
    let run = ok_line(
        d,
        "search DB --collection docs --field tok --queries own.tsv -k 1 --format trec --encoder-options truncate=true",
    );
    let found = run
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[0] == f[2]
        })
        .count();
    assert!(found >= 8, "{found} of 10 found themselves:\n{run}");
    // A query longer than the query length is a clear error.
    std::fs::write(
        d.join("long.tsv"),
        format!("q1\t{}\n", "terminal emulator ".repeat(30)),
    )
    .unwrap();
    let e = fail_line(
        d,
        "search DB --collection docs --field tok --queries long.tsv -k 1",
    );
    assert!(
        e.contains("query length of 24 tokens") && e.contains("truncate=true"),
        "{e}"
    );

    // Token pooling at ingest: about half the vectors stored; text search still finds the
    // documents.
    let out = ok_line(
        d,
        &format!("create POOLED --collection docs --field tok:multi:16:f16:ip --encoder tok={m} --encoder-options tok=pool_factor=2"),
    );
    assert!(out.contains("pool_factor=2"), "{out}");
    ok_line(d, "ingest POOLED --collection docs --docs corpus.jsonl");
    // Token vectors dominate the segment bytes (16 × f16 per token vs a short text).
    let bytes = |db: &str| -> u64 {
        let info = ok_line(d, &format!("info {db}"));
        let line = info
            .lines()
            .find(|l| l.starts_with("collection docs:"))
            .unwrap_or_else(|| panic!("{info}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        words[words.len() - 2].parse().unwrap()
    };
    let (full, pooled) = (bytes("DB"), bytes("POOLED"));
    assert!(pooled * 4 < full * 3, "{full} bytes pooled to {pooled}");
    let run = ok_line(
        d,
        "search POOLED --collection docs --field tok --queries own.tsv -k 1 --format trec --encoder-options truncate=true",
    );
    let found = run
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[0] == f[2]
        })
        .count();
    // A random tiny model: pooled vectors still find most documents (quality is measured on
    // real vectors in benches/RESULTS.md).
    assert!(found >= 5, "{found} of 10 found themselves:\n{run}");
}

/// CLIP: create with an image-embedding field and a feature (tensor) field, ingest a JSONL of
/// image paths (relative to the file) and a folder of images, search by text, export features.
#[test]
fn clip_images_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let images = root().join("tests/fixtures/clip/images");
    std::fs::create_dir_all(d.join("photos")).unwrap();
    let names = [
        "exact.png",
        "gray.png",
        "photo.jpg",
        "rotated.jpg",
        "wide.png",
    ];
    let mut jsonl = String::new();
    for n in names {
        std::fs::copy(images.join(n), d.join("photos").join(n)).unwrap();
        jsonl.push_str(&format!(
            "{{\"id\": \"{n}\", \"image\": \"photos/{n}\", \"text\": \"caption of {n}\"}}\n"
        ));
    }
    jsonl.push_str("{\"id\": \"lost\", \"image\": \"photos/lost.png\"}\n");
    std::fs::write(d.join("images.jsonl"), jsonl).unwrap();
    std::fs::write(
        d.join("q.tsv"),
        "q1\ta photo of the cat\nq2\tcoffee and a man\n",
    )
    .unwrap();
    let m = root().join("tests/fixtures/clip/tiny");
    let m = m.display();
    let out = ok_line(
        d,
        &format!("create DB --collection img --field emb:dense:24:f32:cosine --field feat:tensor:17x40:f16 --encoder emb={m} --encoder feat={m} --embed-model"),
    );
    assert!(out.contains("clip"), "{out}");
    let err = fail_line(d, "ingest DB --collection img --docs images.jsonl");
    assert!(
        err.contains("\"lost\"") && err.contains("lost.png"),
        "{err}"
    );
    let out = ok_line(
        d,
        "ingest DB --collection img --docs images.jsonl --skip-bad-images",
    );
    assert!(
        out.contains("encoded and ingested 5 documents") && out.contains("1 with bad images"),
        "{out}"
    );
    let run = ok_line(
        d,
        "search DB --collection img --field emb --queries q.tsv -k 3",
    );
    assert_eq!(run.lines().count(), 6, "{run}");
    let out = ok_line(
        d,
        "export DB --collection img --field feat --vectors feat.npy --ids ids.txt",
    );
    assert!(out.contains("exported 5 rows of shape [17, 40]"), "{out}");
    let a = vellum::ingest::array::Array::open(&d.join("feat.npy"), None).unwrap();
    assert_eq!(a.shape(), [5, 17, 40]);
    // A folder of images into a second collection.
    ok_line(
        d,
        &format!("create DB --collection folder --field emb:dense:24:f32:cosine --encoder emb={m}"),
    );
    let out = ok_line(d, "ingest DB --collection folder --docs photos");
    assert!(out.contains("encoded and ingested 5 documents"), "{out}");
    let doc = ok_line(d, "get DB --collection folder --id rotated");
    assert!(doc.contains("rotated.jpg"), "{doc}");
    ok_line(d, "verify DB");
}

/// The captioned photographs scikit-image ships (tools/fetch-skimage-photos.sh), ingested by the
/// CLI into a CLIP image field and a feature field; every caption retrieves k photographs, the
/// features export as [N, 17, 40]. (The tiny CLIP has random weights: this checks the pipeline on
/// real files of every kind — RGB, RGBA, grayscale, JPEG, large — not retrieval quality.)
#[test]
fn clip_on_scikit_image_photos() {
    let photos = match std::env::var_os("VELLUM_SKIMAGE_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("tests/data/skimage"),
    };
    if !photos.join("photos.jsonl").is_file() {
        let status = std::process::Command::new("bash")
            .arg(root().join("tools/fetch-skimage-photos.sh"))
            .arg(&photos)
            .status()
            .unwrap();
        assert!(status.success(), "tools/fetch-skimage-photos.sh failed");
    }
    let n = std::fs::read_to_string(photos.join("photos.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(n >= 20, "{n} photographs");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let m = root().join("tests/fixtures/clip/tiny");
    ok_line(
        d,
        &format!("create DB --collection photos --field emb:dense:24:f32:cosine --field feat:tensor:17x40:f16 --encoder emb={} --encoder feat={}", m.display(), m.display()),
    );
    let docs = photos.join("photos.jsonl");
    let out = ok(
        d,
        &[
            "ingest",
            "DB",
            "--collection",
            "photos",
            "--docs",
            docs.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains(&format!("encoded and ingested {n} documents")),
        "{out}"
    );
    let q = photos.join("captions.tsv");
    let run = ok(
        d,
        &[
            "search",
            "DB",
            "--collection",
            "photos",
            "--field",
            "emb",
            "--queries",
            q.to_str().unwrap(),
            "-k",
            "5",
        ],
    );
    assert_eq!(run.lines().count(), 5 * n, "{run}");
    let out = ok_line(
        d,
        "export DB --collection photos --field feat --vectors feat.npy --ids ids.txt",
    );
    assert!(
        out.contains(&format!("exported {n} rows of shape [17, 40]")),
        "{out}"
    );
    let a = vellum::ingest::array::Array::open(&d.join("feat.npy"), None).unwrap();
    assert_eq!(a.shape(), [n, 17, 40]);
    ok_line(d, "verify DB");
}

/// `vellum train` end to end: fine-tune tiny-a on the sample's summaries (queries + qrels), with
/// held-out evaluation and checkpoints; the trained folder binds to a new collection as any
/// model; a second run into the same folder needs --resume.
/// Creates collection `docs` in `db` (a field `emb:dense:32:f32:cosine` encoded by `encoder`,
/// mean pooling, normalised) and ingests `corpus` into it.
fn create_and_ingest(d: &Path, db: &str, encoder: &str, corpus: &Path) {
    ok(
        d,
        &[
            "create",
            db,
            "-c",
            "docs",
            "--field",
            "emb:dense:32:f32:cosine",
            "--encoder",
            encoder,
            "--encoder-options",
            "emb=pooling=mean,normalize=true",
        ],
    );
    ok(
        d,
        &[
            "ingest",
            db,
            "-c",
            "docs",
            "--docs",
            corpus.to_str().unwrap(),
        ],
    );
}

#[test]
fn train_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (corpus, queries, qrels) = sample(d, 100);
    let a = root().join("tests/fixtures/encoders/tiny-a");
    let encoder = format!("emb={}", a.display());
    let create = |db: &str, encoder: &str| create_and_ingest(d, db, encoder, &corpus);
    create("DB", &encoder);
    let (q, r) = (queries.to_str().unwrap(), qrels.to_str().unwrap());
    let train = [
        "train",
        "DB",
        "-c",
        "docs",
        "-f",
        "emb",
        "--queries",
        q,
        "--qrels",
        r,
        "-o",
        "OUT",
        "--max-steps",
        "6",
        "--batch-size",
        "4",
        "--group-size",
        "3",
        "--lr",
        "1e-3",
        "--mine-depth",
        "10",
        "--save-every",
        "3",
        "--eval-queries",
        q,
        "--eval-qrels",
        r,
        "--eval-depth",
        "10",
    ];
    let out = ok(d, &train);
    assert!(
        out.contains("trained 6 steps (6 in this run")
            && out.contains("held-out before: mrr@10")
            && out.contains("held-out after:  mrr@10"),
        "{out}"
    );
    assert!(d.join("OUT/checkpoint-3/trainer_state.json").is_file());
    assert!(d.join("OUT/checkpoint-6/optimizer.safetensors").is_file());
    let e = fail(d, &train);
    assert!(e.contains("already holds checkpoints"), "{e}");
    let mut resumed = train.to_vec();
    resumed.push("--resume");
    let out = ok(d, &resumed);
    assert!(out.contains("trained 6 steps (0 in this run"), "{out}");

    // The trained model is a model folder like any other.
    create("DB2", &format!("emb={}", d.join("OUT").display()));
    let run = ok(
        d,
        &[
            "search",
            "--db",
            "DB2",
            "-c",
            "docs",
            "-f",
            "emb",
            "--queries",
            q,
            "-k",
            "5",
        ],
    );
    assert!(run.lines().count() >= 10 * 5, "{run}");

    // Train and re-encode in one command: DB then ranks as a database built with the trained
    // model; rollback returns to the results before.
    let search = |db: &str| {
        let run = ok(
            d,
            &[
                "search",
                "--db",
                db,
                "-c",
                "docs",
                "-f",
                "emb",
                "--queries",
                q,
                "-k",
                "5",
            ],
        );
        run.lines()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    let before = search("DB");
    let mut chained = train[..train.len() - 6].to_vec();
    chained[11] = "OUT3";
    chained.extend(["--reencode", "--piece-rows", "30"]);
    let out = ok(d, &chained);
    assert!(out.contains("re-encoded docs.emb: version 1 -> 2"), "{out}");
    create("DB3", &format!("emb={}", d.join("OUT3").display()));
    assert_eq!(search("DB"), search("DB3"));
    assert_ne!(search("DB"), before);
    let info = ok(d, &["info", "DB"]);
    assert!(
        info.contains("encoder version emb: 2")
            && info.contains("kept for rollback: emb version 1"),
        "{info}"
    );
    let out = ok(
        d,
        &["reencode", "DB", "-c", "docs", "-f", "emb", "--rollback"],
    );
    assert!(out.contains("version 2 -> 1"), "{out}");
    assert_eq!(search("DB"), before);
    // Another dimension is refused, naming both; nothing changes.
    let e = fail(
        d,
        &[
            "reencode",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--encoder",
            a.to_str().unwrap(),
            "--encoder-options",
            "dims=16",
        ],
    );
    assert!(
        e.contains("16") && e.contains("32") && e.contains("--new-field"),
        "{e}"
    );
    assert_eq!(search("DB"), before);
    // With --new-field the 16-dim vectors go into a new field beside emb (its dtype and
    // metric); emb's results stay; a rollback removes the field again.
    let out = ok(
        d,
        &[
            "reencode",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--encoder",
            a.to_str().unwrap(),
            "--encoder-options",
            "dims=16",
            "--new-field",
            "emb16",
        ],
    );
    assert!(
        out.contains("re-encoded docs.emb16: version 0 -> 1"),
        "{out}"
    );
    assert_eq!(search("DB"), before);
    let info = ok(d, &["info", "DB"]);
    assert!(info.contains("emb16") && info.contains("16"), "{info}");
    let field16 = ok(
        d,
        &[
            "search",
            "--db",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb16",
            "--queries",
            q,
            "-k",
            "5",
        ],
    );
    assert!(field16.lines().count() >= 10 * 5, "{field16}");
    let out = ok(
        d,
        &["reencode", "DB", "-c", "docs", "-f", "emb16", "--rollback"],
    );
    assert!(out.contains("version 1 -> 0"), "{out}");
    let e = fail(
        d,
        &[
            "search",
            "--db",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb16",
            "--queries",
            q,
            "-k",
            "5",
        ],
    );
    assert!(e.contains("emb16"), "{e}");
    assert_eq!(search("DB"), before);
    let out = ok(d, &["reencode", "DB", "-c", "docs", "--drop-previous"]);
    assert!(out.contains("dropped"), "{out}");

    // Rounds: mine → train → re-encode twice, the second mining with the first round's vectors;
    // run again with --resume, both rounds are found done.
    let mut rounds = train[..train.len() - 6].to_vec();
    rounds[11] = "OUT4";
    rounds.extend(["--reencode", "--rounds", "2"]);
    let out = ok(d, &rounds);
    assert!(
        out.contains("round 2 of 2") && out.contains("version 2 -> 3"),
        "{out}"
    );
    assert!(d.join("OUT4/round-2/training_report.json").is_file());
    let e = fail(d, &rounds);
    assert!(e.contains("--resume"), "{e}");
    rounds.push("--resume");
    let out = ok(d, &rounds);
    assert_eq!(
        out.matches("trained and re-encoded already").count(),
        2,
        "{out}"
    );

    // Bad input names the file and line.
    std::fs::write(
        d.join("bad.jsonl"),
        "{\"query_id\": \"x\", \"query\": \"q\", \"positive_document_ids\": [\"missing\"]}\n",
    )
    .unwrap();
    let e = fail(
        d,
        &[
            "train",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--train",
            "bad.jsonl",
            "-o",
            "O2",
        ],
    );
    assert!(
        e.contains("bad.jsonl:1: document id \"missing\" is not in collection \"docs\""),
        "{e}"
    );
}

/// `vellum train --query-only`: a truncated student aligned on the training queries and on
/// unlabelled `--align-texts`, trained against the stored vectors, reported against the current
/// query encoder and bound as the field's query encoder (stored vectors unchanged).
#[test]
fn query_only_training_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (corpus, queries, qrels) = sample(d, 100);
    let a = root().join("tests/fixtures/encoders/tiny-a");
    create_and_ingest(d, "DB", &format!("emb={}", a.display()), &corpus);
    let get = || ok(d, &["get", "DB", "-c", "docs", "--id", "0ad", "--vectors"]);
    let stored = get();
    std::fs::write(
        d.join("align.txt"),
        "x1\tparser for configuration files\n\nfonts for the console\nnetwork time daemon\n",
    )
    .unwrap();
    std::fs::write(d.join("blank.txt"), "\n \n").unwrap();
    let (q, r) = (queries.to_str().unwrap(), qrels.to_str().unwrap());
    let args = |out: &'static str, texts: &'static str| {
        vec![
            "train",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--queries",
            q,
            "--qrels",
            r,
            "-o",
            out,
            "--query-only",
            "--student-layers",
            "1",
            "--align-steps",
            "5",
            "--align-texts",
            texts,
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--group-size",
            "2",
            "--mine-depth",
            "5",
            "--eval-queries",
            q,
            "--eval-qrels",
            r,
        ]
    };
    let e = fail(d, &args("BLANK", "blank.txt"));
    assert!(e.contains("--align-texts blank.txt: no texts"), "{e}");
    let mut bad = args("BAD", "align.txt");
    bad.extend(["--bind", "--bind-options", "dtype=int4"]);
    let e = fail(d, &bad);
    assert!(e.contains("--bind-options") && e.contains("int4"), "{e}");
    assert!(!d.join("BAD").exists());
    let mut bound = args("STUDENT", "align.txt");
    bound.extend(["--bind", "--bind-options", "dtype=int8"]);
    let out = ok(d, &bound);
    assert!(
        out.contains("trained a 1-layer query encoder (5 alignment + 3 contrastive steps")
            && out.contains("held-out, current query encoder (2 layers): mrr@10")
            && out.contains("held-out, trained query encoder (1 layers): mrr@10")
            && out.contains("query encoding: "),
        "{out}"
    );
    let info = ok(d, &["info", "DB"]);
    assert!(info.contains("STUDENT"), "{info}");
    let query_line = info
        .lines()
        .find(|l| l.contains("encoder emb (query)"))
        .unwrap_or_default();
    assert!(
        query_line.contains("STUDENT") && query_line.contains("dtype=Int8"),
        "{info}"
    );
    assert_eq!(get(), stored);
}

/// `--encoder-options device=cuda:0` encodes on the GPU where there is one (the vectors the CPU
/// gives, to f32 rounding) and is a one-line error naming the missing driver elsewhere, with
/// nothing committed.
#[test]
fn ingest_on_a_gpu_device() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (corpus, _, _) = sample(d, 20);
    let a = root().join("tests/fixtures/encoders/tiny-a");
    for db in ["CPU", "GPU"] {
        ok(
            d,
            &[
                "create",
                db,
                "--collection",
                "docs",
                "--field",
                "emb:dense:32:f32:cosine",
                "--encoder",
                &format!("emb={}", a.display()),
            ],
        );
    }
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&corpus)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let corpus = corpus.display().to_string();
    ok(d, &["ingest", "CPU", "-c", "docs", "--docs", &corpus]);
    let gpu = [
        "ingest",
        "GPU",
        "-c",
        "docs",
        "--docs",
        &corpus,
        "--encoder-options",
        "device=cuda:0",
    ];
    if vellum::gpu::driver_present() {
        ok(d, &gpu);
        let get = |db: &str| ok(d, &["get", db, "-c", "docs", "--id", &id, "--vectors"]);
        let v = |s: String| -> Vec<f64> {
            let j: serde_json::Value = serde_json::from_str(&s).unwrap();
            j["fields"]["emb"]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (c, g) = (v(get("CPU")), v(get("GPU")));
        let dot: f64 = c.iter().zip(&g).map(|(a, b)| a * b).sum();
        assert!(dot > 0.99999, "cosine {dot}");
    } else {
        let e = fail(d, &gpu);
        assert!(e.contains("cuda:0: no CUDA driver found"), "{e}");
        // Nothing was committed.
        let e = fail(d, &["get", "GPU", "-c", "docs", "--id", &id]);
        assert!(e.contains(&id), "{e}");
    }
}
