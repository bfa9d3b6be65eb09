#!/usr/bin/env python3
"""Checks vellum's import rules: lower layers never import higher ones.

Each rule names a top-level module of `src/` and the crate modules it may NOT import. Every
`crate::<module>` path in the module's files counts, in `use` lists (`use crate::{a, b::c}`) and
in expressions, test code included; so does every `super::…` path that climbs out of the
module (resolved from the file's place in `src/`), and every crate-root re-export
(`crate::Collection` counts as `collection`, read from `src/lib.rs`). Comments and string literals
do not. Exits 1 and prints `file:line: <module> imports <forbidden>` for each violation.

Run: python3 tools/check_layers.py [src-dir]
"""

import pathlib
import re
import sys

# The layers: plain data and bytes at the bottom, algorithms above them, the engine on top.
BELOW_ALGORITHMS = {"gpu", "hnsw", "plaid", "filter", "search", "encode", "ingest", "collection", "writer", "db",
                    "snapshot", "verify", "interop", "eval"}
RULES = {
    # What the manifest records: plain serde data.
    "meta": BELOW_ALGORITHMS | {"format", "storage", "linalg"},
    # File-system primitives.
    "storage": BELOW_ALGORITHMS | {"format", "meta", "linalg", "schema", "document"},
    # Bytes <-> structs.
    "format": BELOW_ALGORITHMS | {"linalg"},
    # CPU kernels.
    "linalg": BELOW_ALGORITHMS | {"format", "meta", "storage", "schema", "document"},
    # GPU devices, matrices and kernels.
    "gpu": (BELOW_ALGORITHMS - {"gpu"}) | {"format", "meta", "storage", "schema", "document", "linalg"},
    # HNSW build and walk: below search and the engine.
    "hnsw": BELOW_ALGORITHMS - {"hnsw"},
    # PLAID build and candidate stages: below search and the engine.
    "plaid": BELOW_ALGORITHMS - {"plaid"},
    # Metadata filters: expressions and per-segment columns; below search and the engine.
    "filter": BELOW_ALGORITHMS - {"filter"},
    # Encoders: models, tokenization, pooling; never the engine or search.
    "encode": {"collection", "search", "writer", "db", "snapshot", "ingest", "hnsw", "plaid",
               "filter", "verify", "interop"},
    # Evaluation depends on nothing else of vellum.
    "eval": BELOW_ALGORITHMS - {"eval"} | {"format", "meta", "storage", "linalg", "schema",
                                          "document", "dtype"},
}

COMMENT = re.compile(r"//.*?$|/\*.*?\*/", re.S | re.M)
STRING = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"')
PATH = re.compile(r"\bcrate::(\{|[A-Za-z_][A-Za-z0-9_]*)")
SUPER = re.compile(r"\b((?:super::)+)(\{|[A-Za-z_][A-Za-z0-9_]*)")
REEXPORT = re.compile(r"^pub use (\w+)::(?:[\w:]*::)?(\{[^}]*\}|\w+);", re.M)


def strip(text: str) -> str:
    """Blanks comments and string literals, keeping line numbers."""
    keep_lines = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    text = STRING.sub(keep_lines, text)
    return COMMENT.sub(keep_lines, text)


def group_heads(text: str, start: int) -> list[str]:
    """The first path segment of every item of a `crate::{...}` group opening at `start`."""
    depth, item, heads, i = 0, "", [], start
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
            if depth == 1:
                item = ""
                i += 1
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        elif ch == "," and depth == 1:
            heads.append(item)
            item = ""
            i += 1
            continue
        if depth == 1:
            item += ch
        i += 1
    out = []
    for h in heads:
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", h)
        if m:
            out.append(m.group(1))
    return out


def root_reexports(lib_rs: str) -> dict:
    """Names re-exported at the crate root (`pub use module::{A, B};`) → their module."""
    out = {}
    for m in REEXPORT.finditer(strip(lib_rs)):
        module, names = m.group(1), m.group(2)
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", names):
            out[name] = module
    return out


def module_path(src: pathlib.Path, path: pathlib.Path) -> list:
    """The module path of a file: src/a/b.rs → [a, b]; src/a/mod.rs → [a]; src/a.rs → [a]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def imports(text: str, module: list, reexports: dict):
    """Yields (line, module) for every crate-level module a file's code refers to."""
    def resolve(head: str) -> str:
        return reexports.get(head, head)

    for m in PATH.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) == "{":
            for head in group_heads(text, m.start(1)):
                yield line, resolve(head)
        else:
            yield line, resolve(m.group(1))
    for m in SUPER.finditer(text):
        ups = m.group(1).count("super::")
        # `super` of a file's module; leaving the top-level module makes the next segment a
        # crate-level module.
        base = module[: len(module) - ups]
        if base:
            continue
        line = text.count("\n", 0, m.start()) + 1
        if m.group(2) == "{":
            for head in group_heads(text, m.start(2)):
                yield line, resolve(head)
        else:
            yield line, resolve(m.group(2))


def main() -> int:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    reexports = root_reexports((src / "lib.rs").read_text())
    violations = []
    for module, forbidden in sorted(RULES.items()):
        files = [src / f"{module}.rs"] + sorted((src / module).rglob("*.rs"))
        for path in files:
            if not path.exists():
                continue
            for line, target in imports(strip(path.read_text()), module_path(src, path), reexports):
                if target in forbidden:
                    violations.append(f"{path}:{line}: {module} imports {target}")
    for v in violations:
        print(v)
    if violations:
        print(f"{len(violations)} import-rule violation(s); see the rules in {__file__}")
        return 1
    print(f"import rules hold ({len(RULES)} layers checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
