#!/usr/bin/env python3
"""Checks vellum's import rules: lower layers never import higher ones.

Each rule names a top-level module of `src/` and the crate modules it may NOT import. Every
`crate::<module>` path in the module's files counts, in `use` lists (`use crate::{a, b::c}`) and
in expressions, test code included; comments and string literals do not. Exits 1 and prints
`file:line: <module> imports <forbidden>` for each violation.

Run: python3 tools/check_layers.py [src-dir]
"""

import pathlib
import re
import sys

# The layers: plain data and bytes at the bottom, algorithms above them, the engine on top.
BELOW_ALGORITHMS = {"hnsw", "search", "encode", "ingest", "collection", "writer", "db",
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
    # HNSW build and walk: below search and the engine.
    "hnsw": BELOW_ALGORITHMS - {"hnsw"},
    # Encoders: models, tokenization, pooling; never the engine or search.
    "encode": {"collection", "search", "writer", "db", "snapshot", "ingest", "hnsw", "verify",
               "interop"},
    # Evaluation depends on nothing else of vellum.
    "eval": BELOW_ALGORITHMS - {"eval"} | {"format", "meta", "storage", "linalg", "schema",
                                          "document", "dtype"},
}

COMMENT = re.compile(r"//.*?$|/\*.*?\*/", re.S | re.M)
STRING = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"')
PATH = re.compile(r"\bcrate::(\{|[A-Za-z_][A-Za-z0-9_]*)")


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


def imports(text: str):
    """Yields (line, module) for every crate-level module a file's code refers to."""
    for m in PATH.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) == "{":
            for head in group_heads(text, m.start(1)):
                yield line, head
        else:
            yield line, m.group(1)


def main() -> int:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    violations = []
    for module, forbidden in sorted(RULES.items()):
        files = [src / f"{module}.rs"] + sorted((src / module).rglob("*.rs"))
        for path in files:
            if not path.exists():
                continue
            for line, target in imports(strip(path.read_text())):
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
