"""Shared fixtures: repository paths, the tiny test encoders, the CLI binary, a fresh database."""

import os
import pathlib

import pytest

import vellum

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_A = REPO / "tests" / "fixtures" / "encoders" / "tiny-a"
TINY_B = REPO / "tests" / "fixtures" / "encoders" / "tiny-b"
SENTENCES = REPO / "tests" / "fixtures" / "encoders" / "sentences.jsonl"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"


@pytest.fixture
def db(tmp_path):
    d = vellum.create(tmp_path / "db")
    yield d
    d.close()


@pytest.fixture(scope="session")
def cli():
    """The `vellum` CLI built by `cargo test` / `cargo build` (VELLUM_CLI overrides)."""
    if os.environ.get("VELLUM_CLI"):
        return os.environ["VELLUM_CLI"]
    built = [p for p in (REPO / "target" / prof / "vellum" for prof in ("release", "debug"))
             if p.exists()]
    if built:
        return str(max(built, key=lambda p: p.stat().st_mtime))
    pytest.fail("no vellum CLI binary: run `cargo build -p vellum-cli` (or set VELLUM_CLI)")


@pytest.fixture(scope="session")
def minilm():
    if not (MINILM / "config.json").exists():
        pytest.fail(f"{MINILM} is missing: run tools/fetch-minilm.sh")
    return MINILM
