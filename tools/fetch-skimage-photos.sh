#!/usr/bin/env bash
# Fetches the photographs scikit-image ships (skimage/data/*.png|jpg, ~26 images, public domain
# or CC0 per its README) with a one-line caption each, without scikit-image itself: pip downloads
# one pinned wheel (15 MB, platform-independent data inside) and the images and `_fetchers.py`
# are unpacked from it. Writes DEST/images/*, DEST/photos.jsonl ({"id", "image", "text"}: the
# caption is the first line of the loader's docstring) and DEST/captions.tsv (id<TAB>caption).
# Usage: tools/fetch-skimage-photos.sh [DEST]   (default: tests/data/skimage; does nothing when
# DEST/photos.jsonl exists). Needs python3 with pip.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/tests/data/skimage}"
WHEEL=scikit_image-0.25.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=a17e17eb8562660cc0d31bb55643a4da996a81944b82c54805c91b3fe66f4824

if [ -f "$DEST/photos.jsonl" ]; then
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching scikit-image's photographs (PyPI wheel scikit-image 0.25.2, 15 MB) ..." >&2
python3 -m pip download --no-deps --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.12 --platform manylinux_2_17_x86_64 scikit-image==0.25.2 -d "$tmp"
echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --quiet
staged="$DEST.partial.$$"
rm -rf "$staged"
mkdir -p "$staged/images"
python3 - "$tmp/$WHEEL" "$staged" <<'PY'
import ast, json, pathlib, sys, zipfile

wheel, out = zipfile.ZipFile(sys.argv[1]), pathlib.Path(sys.argv[2])
tree = ast.parse(wheel.read("skimage/data/_fetchers.py").decode())
captions = {}
for fn in tree.body:
    if not isinstance(fn, ast.FunctionDef) or not ast.get_docstring(fn):
        continue
    for node in ast.walk(fn):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_load"
                and node.args and isinstance(node.args[0], ast.Constant)):
            path = node.args[0].value
            if path.endswith((".png", ".jpg")):
                captions[path.split("/")[-1]] = ast.get_docstring(fn).splitlines()[0].strip()
# Only the images inside the wheel (a few larger ones are downloaded on demand by skimage).
shipped = {n.split("/")[-1] for n in wheel.namelist() if n.startswith("skimage/data/")}
captions = {k: v for k, v in captions.items() if k in shipped}
docs, queries = [], []
for name in sorted(captions):
    (out / "images" / name).write_bytes(wheel.read(f"skimage/data/{name}"))
    stem = name.rsplit(".", 1)[0]
    docs.append(json.dumps({"id": stem, "image": f"images/{name}", "text": captions[name]}))
    queries.append(f"{stem}\t{captions[name]}")
(out / "photos.jsonl").write_text("\n".join(docs) + "\n")
(out / "captions.tsv").write_text("\n".join(queries) + "\n")
print(f"{len(docs)} captioned photographs", file=sys.stderr)
PY
mkdir -p "$(dirname "$DEST")"
# Another process may have finished first; either copy is the same.
mv -T "$staged" "$DEST" 2>/dev/null || rm -rf "$staged"
if [ ! -f "$DEST/photos.jsonl" ]; then
    echo "could not place the photographs in $DEST (is it a non-empty folder?)" >&2
    exit 1
fi
echo "scikit-image's photographs are in $DEST" >&2
