//! The `vellum` binary end to end: the issue's command flow, output formats, exit codes.

mod common;

use std::path::Path;

use common::{fail, fail_line, ok, ok_line, vellum};

use vellum::ingest::array::{write_npy, write_npy_f32};

/// Corpus of 50 docs with 4-d vectors; queries are copies of docs 7 and 21.
fn setup(dir: &Path) {
    let mut corpus = String::new();
    let mut vecs = Vec::new();
    for i in 0..50 {
        corpus.push_str(&format!(
            "{{\"id\":\"doc{i}\",\"text\":\"passage {i}\",\"metadata\":{{\"i\":{i}}}}}\n"
        ));
        let a = i as f32 * 0.37;
        vecs.extend_from_slice(&[a.sin(), a.cos(), (2.0 * a).sin(), 0.5]);
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    write_npy_f32(&dir.join("corpus.npy"), &[50, 4], &vecs).unwrap();
    let q: Vec<f32> = vecs[7 * 4..8 * 4]
        .iter()
        .chain(&vecs[21 * 4..22 * 4])
        .copied()
        .collect();
    write_npy_f32(&dir.join("queries.npy"), &[2, 4], &q).unwrap();
    std::fs::write(dir.join("query_ids.txt"), "q7\nq21\n").unwrap();
    // ColBERT-style tokens: doc i has 1 + i % 3 tokens.
    let lens: Vec<i64> = (0..50).map(|i| 1 + i % 3).collect();
    let total: i64 = lens.iter().sum();
    let toks: Vec<f32> = (0..total as usize * 2)
        .map(|j| ((j * 7 % 11) as f32 - 5.0) / 5.0)
        .collect();
    write_npy_f32(&dir.join("tok.npy"), &[total as usize, 2], &toks).unwrap();
    write_npy(
        &dir.join("tok_len.npy"),
        "<i8",
        &[50],
        bytemuck::cast_slice(&lens),
    )
    .unwrap();
    let img: Vec<f32> = (0..50 * 6).map(|j| j as f32).collect();
    write_npy_f32(&dir.join("img.npy"), &[50, 2, 3], &img).unwrap();
}

#[test]
fn the_documented_flow_works() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    ok(
        d,
        &[
            "create",
            "DB",
            "--collection",
            "docs",
            "--field",
            "emb:dense:4:f32:cosine",
            "--field",
            "tok:multi:2:f16:ip",
            "--field",
            "img:tensor:2x3:f16",
        ],
    );
    ok(
        d,
        &[
            "ingest",
            "DB",
            "--collection",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--vectors",
            "emb=corpus.npy",
            "--vectors",
            "tok=tok.npy",
            "--lengths",
            "tok=tok_len.npy",
            "--vectors",
            "img=img.npy",
        ],
    );
    let trec = ok(
        d,
        &[
            "search",
            "DB",
            "--collection",
            "docs",
            "--field",
            "emb",
            "--query-vectors",
            "queries.npy",
            "--query-ids",
            "query_ids.txt",
            "-k",
            "10",
            "--format",
            "trec",
        ],
    );
    let lines: Vec<&str> = trec.lines().collect();
    assert_eq!(lines.len(), 20);
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        (first[0], first[1], first[2], first[3], first[5]),
        ("q7", "Q0", "doc7", "1", "vellum")
    );
    assert!((first[4].parse::<f32>().unwrap() - 1.0).abs() < 1e-5);
    assert!(lines[10].starts_with("q21 Q0 doc21 1 "));
    let tsv = ok(
        d,
        &[
            "search",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--query-vectors",
            "queries.npy",
            "--query-ids",
            "query_ids.txt",
            "-k",
            "3",
            "--format",
            "tsv",
        ],
    );
    assert!(tsv.starts_with("q7\tdoc7\t"), "{tsv}");
    let json = ok(
        d,
        &[
            "search",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--query-vectors",
            "queries.npy",
            "-k",
            "2",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["qid"].as_str(), v["hits"][0]["docid"].as_str()),
        (Some("0"), Some("doc7"))
    );

    let info = ok(d, &["info", "DB"]);
    assert!(info.contains("collection docs: 50 documents"), "{info}");
    assert!(
        info.contains("field tok:multi:2:f16:ip") && info.contains("segment "),
        "{info}"
    );
    assert_eq!(ok(d, &["verify", "DB"]).lines().last(), Some("ok"));

    std::fs::write(d.join("ids.txt"), "doc7\ndoc8\nmissing\n").unwrap();
    let del = ok(
        d,
        &["delete", "DB", "--collection", "docs", "--ids", "ids.txt"],
    );
    assert!(
        del.contains("deleted 2 documents") && del.contains("1 ids not found"),
        "{del}"
    );
    let trec = ok(
        d,
        &[
            "search",
            "DB",
            "--collection",
            "docs",
            "--field",
            "emb",
            "--query-vectors",
            "queries.npy",
            "--query-ids",
            "query_ids.txt",
            "-k",
            "10",
            "--format",
            "trec",
        ],
    );
    assert!(
        !trec.contains(" doc7 ") && !trec.contains(" doc8 "),
        "deleted docs returned"
    );
    let compact = ok(d, &["compact", "DB", "--collection", "docs"]);
    assert!(compact.contains("2 deleted rows dropped"), "{compact}");
    let info: serde_json::Value = serde_json::from_str(&ok(d, &["info", "DB", "--json"])).unwrap();
    assert_eq!(info["collections"][0]["documents"], 48);
    assert_eq!(
        info["collections"][0]["segments"].as_array().unwrap().len(),
        1
    );
    let doc: serde_json::Value = serde_json::from_str(&ok(
        d,
        &["get", "DB", "-c", "docs", "--id", "doc5", "--vectors"],
    ))
    .unwrap();
    assert_eq!(doc["text"], "passage 5");
    assert_eq!(doc["fields"]["tok"]["shape"], serde_json::json!([3, 2]));
    assert_eq!(
        doc["fields"]["img"]["values"],
        serde_json::json!([30.0, 31.0, 32.0, 33.0, 34.0, 35.0])
    );

    // Multi-vector search by token matrix + lengths.
    write_npy_f32(&d.join("qt.npy"), &[2, 2], &[1.0, 0.0, 0.0, 1.0]).unwrap();
    write_npy(
        &d.join("ql.npy"),
        "<i8",
        &[1],
        bytemuck::cast_slice(&[2i64]),
    )
    .unwrap();
    let m = ok(
        d,
        &[
            "search",
            "DB",
            "-c",
            "docs",
            "-f",
            "tok",
            "--query-vectors",
            "qt.npy",
            "--query-lengths",
            "ql.npy",
            "-k",
            "3",
        ],
    );
    assert_eq!(m.lines().count(), 3);
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let e = fail(d, &["info", "nowhere"]);
    assert!(e.contains("no vellum database at nowhere"), "{e}");
    ok(d, &["create", "DB", "-c", "docs", "-f", "emb:dense:4"]);
    let e = fail(d, &["create", "DB", "-c", "docs", "-f", "emb:dense:4"]);
    assert!(e.contains("already exists"), "{e}");
    let e = fail(d, &["create", "DB", "-c", "x", "-f", "emb:dense:four"]);
    assert!(e.contains("not a positive integer"), "{e}");
    write_npy_f32(&d.join("bad.npy"), &[50, 3], &[0.0; 150]).unwrap();
    let e = fail(
        d,
        &[
            "ingest",
            "DB",
            "-c",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--vectors",
            "emb=bad.npy",
        ],
    );
    assert!(e.contains("bad.npy") && e.contains("expects [N, 4]"), "{e}");
    let e = fail(
        d,
        &[
            "search",
            "DB",
            "-c",
            "nope",
            "-f",
            "emb",
            "--query-vectors",
            "queries.npy",
        ],
    );
    assert!(e.contains("no collection named \"nope\""), "{e}");
    std::fs::write(d.join("dup.txt"), "a\na\n").unwrap();
    let e = fail(
        d,
        &[
            "search",
            "DB",
            "-c",
            "docs",
            "-f",
            "emb",
            "--query-vectors",
            "queries.npy",
            "--query-ids",
            "dup.txt",
        ],
    );
    assert!(e.contains("appears more than once"), "{e}");
    // Bad usage is exit code 2 (clap).
    assert_eq!(vellum(d, &["search"]).status.code(), Some(2));
    assert!(vellum(d, &["--help"]).status.success());
}

#[test]
fn verify_fails_on_a_damaged_database() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    ok(d, &["create", "DB", "-c", "docs", "-f", "emb:dense:4"]);
    ok(
        d,
        &[
            "ingest",
            "DB",
            "-c",
            "docs",
            "--docs",
            "corpus.jsonl",
            "--vectors",
            "emb=corpus.npy",
        ],
    );
    let seg = std::fs::read_dir(d.join("DB/docs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let out = vellum(d, &["verify", "DB"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("problem:") && stdout.contains("checksum mismatch"),
        "{stdout}"
    );
}

/// Searches `DB` with the two queries of [`setup`].
const SEARCH_QUERIES: [&str; 10] = [
    "search",
    "DB",
    "--collection",
    "docs",
    "--field",
    "emb",
    "--query-vectors",
    "queries.npy",
    "-k",
    "3",
];

/// The corpus of [`setup`] in database `DB`, collection `docs`, with field `spec` (`emb:…`).
fn dense_db(d: &Path, spec: &str) {
    setup(d);
    common::ok_line(d, &format!("create DB --collection docs --field {spec}"));
    common::ok_line(
        d,
        "ingest DB --collection docs --docs corpus.jsonl --vectors emb=corpus.npy",
    );
}

/// When stderr is not a terminal (CI logs, nohup, cron), long commands print a plain progress
/// line every `VELLUM_PROGRESS_SECS` seconds instead of drawing a bar.
#[test]
fn progress_is_logged_when_stderr_is_not_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    dense_db(d, "emb:dense:4:f32:cosine");
    // 2,000 queries, one per batch: enough steps for several progress lines.
    let q: Vec<f32> = (0..2000 * 4)
        .map(|j| ((j * 13 % 17) as f32) / 17.0 + 0.1)
        .collect();
    write_npy_f32(&d.join("many.npy"), &[2000, 4], &q).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vellum"))
        .current_dir(d)
        .env("VELLUM_PROGRESS_SECS", "0.000001")
        .args([
            "search",
            "DB",
            "--collection",
            "docs",
            "--field",
            "emb",
            "--query-vectors",
            "many.npy",
            "-k",
            "3",
            "--batch",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("vellum: ")).collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(lines.iter().all(|l| l.contains("/2000 queries")), "{err}");
    // Without the override the interval is seconds: a short command prints no progress line.
    let out = vellum(d, &SEARCH_QUERIES);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Damage met during a search is reported as the database's (the damaged file first), not
/// blamed on the query file.
#[test]
fn damage_found_while_searching_names_the_damaged_file() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    dense_db(d, "emb:dense:4:f32:ip");
    let seg = std::fs::read_dir(d.join("DB/docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "vseg"))
        .unwrap();
    let s = vellum::format::segment::Segment::open(&seg, 0).unwrap();
    let offsets = s
        .sections()
        .iter()
        .find(|e| e.kind.name() == "id offsets")
        .unwrap()
        .offset as usize;
    drop(s);
    // Every id's end offset points far past the id bytes (found only when a hit's id is read).
    let mut bytes = std::fs::read(&seg).unwrap();
    for row in 1..=50 {
        bytes[offsets + row * 8 + 6] = 0x7f;
    }
    std::fs::write(&seg, bytes).unwrap();
    let e = fail(d, &SEARCH_QUERIES);
    assert!(
        e.starts_with("error: corrupt file ") && e.contains(".vseg"),
        "{e}"
    );
    assert!(!e.contains("queries.npy"), "{e}");
}

#[test]
fn backup_copies_a_verified_commit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    dense_db(d, "emb:dense:4:f32:ip");
    let out = ok(d, &["backup", "DB", "COPY"]);
    assert!(
        out.contains("backed up generation 2") && out.contains("(verified)"),
        "{out}"
    );
    assert!(ok(d, &["verify", "COPY"]).contains("ok"));
    let search = |db: &str| {
        ok(
            d,
            &[
                "search",
                db,
                "--collection",
                "docs",
                "--field",
                "emb",
                "--query-vectors",
                "queries.npy",
                "-k",
                "5",
            ],
        )
    };
    assert_eq!(search("DB"), search("COPY"));
    let e = fail(d, &["backup", "DB", "COPY"]);
    assert!(e.contains("already exists"), "{e}");
}

/// `--filter` and two-stage search: re-ranking queries pair with stage-1 queries by id; saved
/// candidates re-ranked later give the same run; bad filters and unpaired queries are one-line
/// errors.
#[test]
fn filter_and_two_stage_search() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    common::ok_line(
        d,
        "create DB --collection docs --field emb:dense:4:f32:ip --field tok:multi:2:f32:ip",
    );
    common::ok_line(
        d,
        "ingest DB --collection docs --docs corpus.jsonl --vectors emb=corpus.npy --vectors tok=tok.npy --lengths tok=tok_len.npy",
    );
    let base = [
        "search",
        "DB",
        "-c",
        "docs",
        "-f",
        "emb",
        "--query-vectors",
        "queries.npy",
        "--query-ids",
        "query_ids.txt",
    ];
    // Metadata {"i": i}: only doc0..doc19 pass.
    let mut args = base.to_vec();
    args.extend(["-k", "5", "--filter", r#"{"i": {"$lt": 20}}"#]);
    let run = ok(d, &args);
    assert_eq!(run.lines().count(), 10);
    for line in run.lines() {
        let doc: usize = line.split(' ').nth(2).unwrap()[3..].parse().unwrap();
        assert!(doc < 20, "{line}");
    }
    std::fs::write(d.join("filter.json"), r#"{"i": {"$in": [3, 4]}}"#).unwrap();
    let mut args = base.to_vec();
    args.extend(["--filter", "@filter.json"]);
    assert_eq!(ok(d, &args).lines().count(), 4);
    let mut args = base.to_vec();
    args.extend(["--filter", r#"{"i": {"$lt": "20"}}"#]);
    let err = fail(d, &args);
    assert!(
        err.contains("filter at $.i.$lt: expected a number"),
        "{err}"
    );

    // Re-ranking queries: token matrices for q21 then q7 (the other order than stage 1).
    write_npy_f32(&d.join("rq.npy"), &[3, 2], &[1.0, 0.0, 0.0, 1.0, 0.5, 0.5]).unwrap();
    write_npy(
        &d.join("rq_len.npy"),
        "<i8",
        &[2],
        bytemuck::cast_slice(&[2i64, 1]),
    )
    .unwrap();
    std::fs::write(d.join("rq_ids.txt"), "q21\nq7\n").unwrap();
    let rerank = [
        "--rerank-field",
        "tok",
        "--rerank-query-vectors",
        "rq.npy",
        "--rerank-query-lengths",
        "rq_len.npy",
        "--rerank-query-ids",
        "rq_ids.txt",
        "-k",
        "3",
    ];
    let mut args = base.to_vec();
    args.extend(rerank);
    args.extend(["--depth", "10", "--save-candidates", "cand.trec"]);
    let two_stage = ok(d, &args);
    assert_eq!(two_stage.lines().count(), 6);
    let candidates = std::fs::read_to_string(d.join("cand.trec")).unwrap();
    assert_eq!(candidates.lines().count(), 20);
    for line in two_stage.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert!(candidates
            .lines()
            .any(|c| c.starts_with(&format!("{} Q0 {} ", f[0], f[2]))));
    }
    // Later, from the saved candidates.
    let mut args = vec!["search", "DB", "-c", "docs", "--candidates", "cand.trec"];
    args.extend(rerank);
    assert_eq!(ok(d, &args), two_stage);
    // A weighted sum changes the scores.
    let mut args2 = args.clone();
    args2.extend(["--combine", "sum:1,0"]);
    let first_only = ok(d, &args2);
    let stage1_top: Vec<&str> = candidates
        .lines()
        .filter(|l| l.starts_with("q7 "))
        .take(3)
        .collect();
    let got: Vec<&str> = first_only
        .lines()
        .filter(|l| l.starts_with("q7 "))
        .collect();
    for (a, b) in stage1_top.iter().zip(&got) {
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
        assert_eq!((fa[2], fa[4]), (fb[2], fb[4]));
    }
    args2.pop();
    args2.push("sum:1");
    assert!(fail(d, &args2).contains("sum:W1,W2"));
    // A stage-1 query without a re-ranking query.
    std::fs::write(d.join("rq_ids.txt"), "q21\nq8\n").unwrap();
    let mut args = base.to_vec();
    args.extend(rerank);
    let err = fail(d, &args);
    assert!(
        err.contains("query \"q7\" has no re-ranking query in rq.npy"),
        "{err}"
    );
}

/// `--device cuda:0` searches on the GPU where there is one (equal to the CPU's run) and is a
/// one-line error naming the missing driver where there is none; a bad device is refused.
#[test]
fn search_on_a_gpu_device() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    ok_line(
        d,
        "create DB --collection docs --field emb:dense:4:f32:cosine",
    );
    ok_line(
        d,
        "ingest DB --collection docs --docs corpus.jsonl --vectors emb=corpus.npy",
    );
    let search = "search DB --collection docs --field emb --query-vectors queries.npy --query-ids query_ids.txt -k 5";
    let cpu = ok_line(d, search);
    let gpu_line = format!("{search} --device cuda:0 --gpu-precision f16");
    if vellum::gpu::driver_present() {
        assert_eq!(ok_line(d, &gpu_line), cpu);
    } else {
        let e = fail_line(d, &gpu_line);
        assert!(e.contains("cuda:0: no CUDA driver found"), "{e}");
    }
    // Argument errors (clap: exit status 2).
    for (arg, message) in [
        ("--device gpu", "expected cpu or cuda:N"),
        ("--gpu-precision f8", "expected stored, tf32, f16 or bf16"),
    ] {
        let line = format!("{search} {arg}");
        let out = vellum(d, &line.split_whitespace().collect::<Vec<_>>());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(2) && e.contains(message), "{e}");
    }
}
