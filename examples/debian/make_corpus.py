#!/usr/bin/env python3
"""Builds the sample corpus from Debian package descriptions (real English text, offline).

Reads Debian's English package descriptions (fetch them once with
`apt-get update -o Acquire::Languages=en`) and writes:
  corpus.jsonl  one document per package: {"id": package, "text": long description}
  queries.tsv   qid<TAB>one-line summary, for a sample of the packages
  qrels.txt     TREC qrels "qid 0 package 1": each summary's own package (known-item retrieval)

Selection is deterministic: packages with a long description of at least 200 characters, sorted
by name, every k-th one so that 2,000 documents remain; every 10th document gives a query.

For training (`vellum train`, see benches/RESULTS.md): `make_corpus.py OUT --docs N --train`
takes N documents the same way and also writes train_queries.tsv / train_qrels.txt from the
summaries of the documents that give no held-out query (every 10th gives a held-out query, the
others train), and align_texts.txt: the one-line summaries of every package outside the corpus
(unjudged query-like text for `vellum train --query-only --align-texts`; texts equal to a
held-out query, ignoring case and spacing, are left out).
"""
import json
import subprocess
import sys
from pathlib import Path

N_DOCS = 2000
QUERY_EVERY = 10


def packages(text):
    for stanza in text.split("\n\n"):
        fields, key = {}, None
        for line in stanza.split("\n"):
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and "Description-en" in fields:
            yield fields


def description(raw):
    summary, _, rest = raw.partition("\n")
    paragraphs, cur = [], []
    for line in rest.split("\n"):
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            paragraphs.append(" ".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.strip())
    paragraphs.append(" ".join(cur))
    return summary.strip(), "\n".join(p for p in paragraphs if p)


def main(out, n_docs=N_DOCS, with_train=False):
    lists = sorted(Path("/var/lib/apt/lists").glob("*_main_i18n_Translation-en*"))
    if not lists:
        sys.exit("no Translation-en files: run apt-get update -o Acquire::Languages=en")
    dump = "\n\n".join(
        subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(p)], capture_output=True, text=True, check=True).stdout
        for p in lists
    )
    by_name, summaries = {}, {}
    for p in packages(dump):
        summary, long = description(p["Description-en"])
        summaries.setdefault(p["Package"], summary.replace("\t", " "))
        if len(long) >= 200 and summary:
            by_name.setdefault(p["Package"], (summary, long))
    names = sorted(by_name)
    if len(names) < n_docs:
        sys.exit(f"only {len(names)} packages with long descriptions; run apt-get update -o Acquire::Languages=en")
    step = len(names) / n_docs
    chosen = [names[int(i * step)] for i in range(n_docs)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w") as f:
        for n in chosen:
            f.write(json.dumps({"id": n, "text": by_name[n][1]}, ensure_ascii=False) + "\n")
    with open(out / "queries.tsv", "w") as q, open(out / "qrels.txt", "w") as r:
        for i, n in enumerate(chosen[::QUERY_EVERY]):
            summary = by_name[n][0].replace("\t", " ")
            q.write(f"q{i}\t{summary}\n")
            r.write(f"q{i} 0 {n} 1\n")
    if with_train:
        with open(out / "train_queries.tsv", "w") as q, open(out / "train_qrels.txt", "w") as r:
            for i, n in enumerate(chosen):
                if i % QUERY_EVERY == 0:
                    continue
                summary = by_name[n][0].replace("\t", " ")
                q.write(f"t{i}\t{summary}\n")
                r.write(f"t{i} 0 {n} 1\n")
        # Compared case- and space-insensitively (the models lowercase their input).
        norm = lambda t: " ".join(t.casefold().split())  # noqa: E731
        held_out = {norm(by_name[n][0]) for n in chosen[::QUERY_EVERY]}
        in_corpus = set(chosen)
        seen = set()
        with open(out / "align_texts.txt", "w") as f:
            for n in sorted(summaries):
                s = summaries[n]
                if n in in_corpus or not s or norm(s) in held_out or norm(s) in seen:
                    continue
                seen.add(norm(s))
                f.write(s + "\n")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent)
    ap.add_argument("--docs", type=int, default=N_DOCS)
    ap.add_argument("--train", action="store_true", help="also write train_queries.tsv / train_qrels.txt")
    a = ap.parse_args()
    main(a.out, a.docs, a.train)
