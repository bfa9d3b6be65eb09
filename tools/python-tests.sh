#!/usr/bin/env bash
# Builds the `vellum` Python wheel in a fresh virtual environment, installs it with the test
# dependencies (numpy, pytest, pyarrow, Ray) and runs the Python tests (python/tests).
# Usage: tools/python-tests.sh [pytest args]    (VENV=dir to reuse an environment; default
# .venv-python under the repository, recreated each run)
# The CLI parity test needs the `vellum` binary that `cargo test --workspace` builds; the MiniLM
# parity test needs tools/fetch-minilm.sh. pytest's exit status is this script's: 5 ("no tests
# collected") fails like a test failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-python}"
# Versions the tests were written against; Ray 2.40 has wheels for CPython 3.9-3.12.
REQUIREMENTS=(maturin==1.16.0 pytest numpy pyarrow "ray[data]==2.40.0")

rm -rf "$VENV"
if ! python3 -m venv "$VENV" 2>/dev/null; then
    python3 -m pip install --quiet --user virtualenv
    python3 -m virtualenv --quiet "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
rm -rf "$ROOT/python/dist"
(cd "$ROOT/python" && "$VENV/bin/maturin" build --release --quiet -o dist)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$ROOT"/python/dist/vellum-*.whl
# Run from outside the source tree so that `import vellum` is the installed wheel.
cd "$ROOT/python/tests"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@" .
