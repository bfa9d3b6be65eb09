"""Distributed ingest and search on Ray (``pip install "vellum[ray]"``).

vellum has one writer per database, so a corpus is spread over ``num_shards`` databases, each
written by one Ray actor that owns it (encoding with the fields' encoders on that actor's CPUs, or
its GPU once vellum's GPU encoders land: ``num_gpus`` is passed to Ray), committing as it goes. The
driver then writes a small shard-set manifest, ``ROOT/vellum-shards.json`` (shard paths, document
counts, the node each shard lives on, encoder fingerprints), and refuses shards whose field specs
or encoders differ.

Search opens one read-only actor per shard (on the shard's node, so node-local disks work) and
merges the per-shard top-``k`` with vellum's own shard merge: exact search over ``n`` shards equals
one database holding every document, hit for hit, ties included (equal scores rank by id
descending everywhere).

>>> import ray, vellum.ray as vr
>>> ray.init()                                                           # doctest: +SKIP
>>> vr.ingest("corpus.jsonl", "shards/", collection="docs",              # doctest: +SKIP
...           fields=["emb:dense:384:f32:cosine"], encoders={"emb": "models/all-MiniLM-L6-v2"},
...           num_shards=4)
>>> with vr.ShardedSearcher("shards/") as s:                             # doctest: +SKIP
...     ids, scores = s.search_text(["how do I list files"], k=10)

Inputs: a JSONL / TSV path (every actor reads its deterministic share ``i, i+n, ...`` with vellum's
own resumable ingest pipeline; the file must be readable on every node), a Parquet path, or any
``ray.data.Dataset`` with an ``id`` and a ``text`` column (other columns become metadata, or field
vectors with ``vectors={field: column}``). A shard actor that dies is restarted by Ray and resumes
from its last commit (ids already committed are skipped, never encoded twice).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field as dc_field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

import vellum
from vellum._vellum import encoder_differences, merge_shard_results
from vellum.errors import InvalidInputError, ShardError

try:
    import ray
except ImportError as e:  # pragma: no cover - exercised only without ray
    raise ImportError("vellum.ray needs Ray: pip install 'vellum[ray]' (or 'ray[default]')") from e

__all__ = ["ingest", "start_ingest", "IngestJob", "ShardedSearcher", "read_manifest", "MANIFEST"]

MANIFEST = "vellum-shards.json"
"""File name of the shard-set manifest inside the root directory."""

_FORMAT = "vellum-shards/1"


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def _jsonable(v: Any) -> Any:
    """A Dataset cell as JSON metadata: arrays become lists, a non-finite float (a missing
    value) None, dates and times ISO 8601 text, bytes and other objects their ``str``."""
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _differences(path: str, col: "vellum.Collection", spec: Dict[str, Any]) -> Optional[str]:
    """What an existing shard's collection holds that the ingest's spec does not declare."""
    have = sorted(col.fields.values())
    want = sorted(vellum.Collection._spec_strings(spec["fields"]))
    if have != want:
        return f"{path}: collection {col.name!r} has fields {have}, the ingest declares {want}"
    stored = col.encoders
    if sorted(stored) != sorted(spec["encoders"]):
        return (f"{path}: fields with encoders are {sorted(stored)}, the ingest declares "
                f"{sorted(spec['encoders'])}")
    for field, model in spec["encoders"].items():
        passage_opts = dict(spec["encoder_options"].get(field, {}))
        query_opts = dict(spec["query_encoder_options"].get(field, {}))
        if field in spec["query_encoders"]:
            query = (spec["query_encoders"][field], query_opts)
        else:  # tied: the query options apply over the passage options
            query = (model, {**passage_opts, **query_opts})
        for role, (source, opts) in (("passage", (model, passage_opts)), ("query", query)):
            expected = vellum.Encoder(source, **opts).record
            diff = encoder_differences(json.dumps(expected), json.dumps(stored[field][role]))
            if diff:
                return (f"{path}: field {field!r} was encoded by another {role} encoder than the "
                        f"ingest declares ({source}): {'; '.join(diff)}")
    return None


class _ShardWriter:
    """Owns one shard database: creates it (and the collection) if missing, else reopens it."""

    def __init__(self, path: str, collection: str, spec: Dict[str, Any]):
        manifest = os.path.join(path, "MANIFEST")
        self.path = path
        self.problem: Optional[str] = None
        self.db = vellum.open(path) if os.path.exists(manifest) else vellum.create(path)
        if collection not in self.db.collections():
            self.col = self.db.create_collection(collection, **spec)
        else:
            # Reopened (a restart, a resumed run): it must hold what this ingest declares.
            self.col = self.db[collection]
            self.problem = _differences(path, self.col, spec)

    def _check(self) -> None:
        if self.problem is not None:
            raise ShardError(self.problem)

    def ingest_file(self, docs: str, index: int, count: int, commit_every: int) -> Dict[str, Any]:
        self._check()
        stats = self.col.ingest(docs, shard=(index, count), commit_every=commit_every)
        return self._report(stats.get("skipped", 0), stats.get("commits", 0))

    def ingest_dataset(self, shard: Any, columns: Dict[str, Any], batch_size: int,
                       commit_every: int) -> Dict[str, Any]:
        self._check()
        id_col, text_col = columns["id"], columns["text"]
        vector_cols: Dict[str, str] = columns["vectors"]
        meta_cols: Optional[List[str]] = columns["metadata"]
        skipped = commits = since = 0
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
            ids = [str(x) for x in batch[id_col].tolist()]
            keep = [i for i, x in enumerate(ids) if x not in self.col]
            skipped += len(ids) - len(keep)
            if not keep:
                continue
            texts = None
            if text_col in batch:
                texts = [batch[text_col][i] for i in keep]
                texts = ["" if t is None else str(t) for t in texts]
            names = meta_cols if meta_cols is not None else [
                c for c in batch if c not in (id_col, text_col) and c not in vector_cols.values()]
            metadata = None
            if names:
                lists = {c: batch[c].tolist() for c in names}
                metadata = []
                for i in keep:
                    m: Dict[str, Any] = {}
                    for c in names:
                        v = _jsonable(lists[c][i])
                        if c == "metadata" and isinstance(v, dict):
                            m.update(v)
                        elif v is not None:
                            m[c] = v
                    metadata.append(m)
            vectors = {}
            for f, c in vector_cols.items():
                col = batch[c]
                rows = [np.asarray(col[i], dtype=np.float32) for i in keep]
                kind = self.col.fields[f].split(":")[1]
                vectors[f] = rows if kind == "multi" else np.stack(rows)
            self.col.add([ids[i] for i in keep], vectors=vectors, texts=texts, metadata=metadata)
            since += len(keep)
            if since >= commit_every:
                self.db.commit()
                commits += 1
                since = 0
        if self.db.has_changes:
            self.db.commit()
            commits += 1
        return self._report(skipped, commits)

    def _report(self, skipped: int, commits: int) -> Dict[str, Any]:
        fingerprints = {}
        for f, records in self.col.encoders.items():
            fingerprints[f] = {"passage": records["passage"]["fingerprint"],
                               "query": records["query"]["fingerprint"]}
        return {
            "path": self.path,
            "documents": len(self.col),
            "skipped": skipped,
            "commits": commits,
            "node_id": _node_id(),
            "fields": self.col.fields,
            "encoders": fingerprints,
            "records": self.col.encoders,
        }


class _ShardReader:
    """Searches one shard, read-only and memory-mapped."""

    def __init__(self, path: str, collection: str):
        self.col = vellum.open(path, read_only=True)[collection]

    def search(self, queries: Any, k: int, field: Optional[str], ef: Optional[int],
               exact: bool) -> Tuple[List[List[Optional[str]]], np.ndarray]:
        ids, scores = self.col.search(queries, k, field=field, ef=ef, exact=exact)
        return ids.tolist(), scores

    def search_text(self, texts: List[str], k: int, field: Optional[str], ef: Optional[int],
                    exact: bool) -> Tuple[List[List[Optional[str]]], np.ndarray]:
        ids, scores = self.col.search_text(texts, k, field=field, ef=ef, exact=exact)
        return ids.tolist(), scores

    def encode_queries(self, texts: List[str], field: Optional[str]) -> Any:
        return self.col.encode_queries(texts, field=field)

    def node_id(self) -> str:
        return _node_id()


@dataclass
class IngestJob:
    """A running distributed ingest (:func:`start_ingest`): one actor per shard."""

    root: str
    collection: str
    paths: List[str]
    actors: List[Any]
    refs: List[Any]
    manifest: Optional[Dict[str, Any]] = dc_field(default=None)

    def wait(self) -> Dict[str, Any]:
        """Waits for every shard, checks that they agree (field specs, encoder fingerprints),
        writes ``ROOT/vellum-shards.json`` and returns it."""
        # Each actor is stopped as soon as its shard is done, freeing its resources for shards
        # still waiting to be scheduled (num_shards may exceed the cluster's CPUs).
        reports: List[Any] = [None] * len(self.refs)
        index = {ref: i for i, ref in enumerate(self.refs)}
        pending = list(self.refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                i = index[done[0]]
                reports[i] = ray.get(done[0])
                ray.kill(self.actors[i])
        except BaseException:
            # Stop every shard (releasing the writer locks) so that a re-run can start at once.
            for a in self.actors:
                ray.kill(a)
            raise
        self.manifest = _write_manifest(self.root, self.collection, reports)
        return self.manifest


def _check_agree(reports: Sequence[Dict[str, Any]]) -> None:
    first = reports[0]
    for r in reports[1:]:
        if r["fields"] != first["fields"]:
            raise ShardError(f"shard {r['path']} has fields {r['fields']}, shard {first['path']} "
                             f"{first['fields']}")
        if sorted(r["records"]) != sorted(first["records"]):
            raise ShardError(f"shard {r['path']} has encoders on fields {sorted(r['records'])}, "
                             f"shard {first['path']} on {sorted(first['records'])}")
        for field, records in first["records"].items():
            for role in ("passage", "query"):
                diff = encoder_differences(json.dumps(records[role]),
                                           json.dumps(r["records"][field][role]))
                if diff:
                    raise ShardError(
                        f"shard {r['path']} was encoded by other encoders than shard "
                        f"{first['path']} (field {field!r}, {role}): {'; '.join(diff)}")


def _write_manifest(root: str, collection: str, reports: List[Dict[str, Any]]) -> Dict[str, Any]:
    _check_agree(reports)
    manifest = {
        "format": _FORMAT,
        "collection": collection,
        "fields": reports[0]["fields"],
        "encoders": reports[0]["encoders"],
        "shards": [
            {
                "path": os.path.relpath(r["path"], root),
                "documents": r["documents"],
                "node_id": r["node_id"],
            }
            for r in reports
        ],
        "documents": sum(r["documents"] for r in reports),
        "skipped": [r["skipped"] for r in reports],
    }
    tmp = os.path.join(root, f"{MANIFEST}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, MANIFEST))
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable
    finally:
        os.close(fd)
    return manifest


def read_manifest(root: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Reads ``ROOT/vellum-shards.json`` (shard paths resolved against ``ROOT``)."""
    root = os.fspath(root)
    path = os.path.join(root, MANIFEST)
    try:
        with open(path) as f:
            m = json.load(f)
    except FileNotFoundError:
        raise vellum.errors.NotFoundError(
            f"no shard-set manifest {path}: write the shards with vellum.ray.ingest") from None
    if m.get("format") != _FORMAT:
        raise ShardError(f"{path}: format {m.get('format')!r}, expected {_FORMAT!r}")
    for s in m["shards"]:
        s["path"] = os.path.normpath(os.path.join(root, s["path"]))
    return m


def start_ingest(
    source: Any,
    root: Union[str, "os.PathLike[str]"],
    *,
    collection: str,
    fields: Sequence[str],
    num_shards: int = 2,
    encoders: Optional[Mapping[str, str]] = None,
    query_encoders: Optional[Mapping[str, str]] = None,
    encoder_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    query_encoder_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    hnsw: Optional[Mapping[str, str]] = None,
    embed_model: bool = True,
    id_column: str = "id",
    text_column: str = "text",
    metadata_columns: Optional[Sequence[str]] = None,
    vectors: Optional[Mapping[str, str]] = None,
    batch_size: int = 256,
    commit_every: int = 10_000,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_restarts: int = 3,
) -> IngestJob:
    """Starts a distributed ingest and returns at once (see :func:`ingest`)."""
    if num_shards < 1:
        raise InvalidInputError(f"num_shards = {num_shards}: at least 1")
    root = os.path.abspath(os.fspath(root))
    os.makedirs(root, exist_ok=True)
    spec = {
        "fields": list(fields),
        "hnsw": dict(hnsw or {}),
        "encoders": {f: os.path.abspath(p) if os.path.exists(p) else p
                     for f, p in (encoders or {}).items()},
        "query_encoders": {f: os.path.abspath(p) if os.path.exists(p) else p
                           for f, p in (query_encoders or {}).items()},
        "encoder_options": dict(encoder_options or {}),
        "query_encoder_options": dict(query_encoder_options or {}),
        "embed_model": embed_model,
    }
    writer = ray.remote(_ShardWriter).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
        max_task_retries=max_restarts)
    paths = [os.path.join(root, f"shard-{i:04d}-of-{num_shards:04d}") for i in range(num_shards)]
    actors = [writer.remote(p, collection, spec) for p in paths]
    if isinstance(source, (str, os.PathLike)) and not os.fspath(source).endswith(".parquet") \
            and not os.path.isdir(os.fspath(source)):
        docs = os.path.abspath(os.fspath(source))
        refs = [a.ingest_file.remote(docs, i, num_shards, commit_every)
                for i, a in enumerate(actors)]
    else:
        ds = ray.data.read_parquet(os.fspath(source)) if isinstance(source, (str, os.PathLike)) \
            else source
        if not hasattr(ds, "split"):
            raise InvalidInputError(
                f"source is {type(source).__name__}: give a JSONL/TSV/Parquet path or a "
                "ray.data.Dataset")
        parts = ds.split(num_shards)
        columns = {"id": id_column, "text": text_column, "vectors": dict(vectors or {}),
                   "metadata": list(metadata_columns) if metadata_columns is not None else None}
        refs = [a.ingest_dataset.remote(p, columns, batch_size, commit_every)
                for a, p in zip(actors, parts)]
    return IngestJob(root=root, collection=collection, paths=paths, actors=actors, refs=refs)


def ingest(source: Any, root: Union[str, "os.PathLike[str]"], **kwargs: Any) -> Dict[str, Any]:
    """Ingests ``source`` into ``num_shards`` vellum databases under ``root`` (one Ray actor
    each) and writes the shard-set manifest; returns it.

    ``source``: a JSONL/TSV path (as ``vellum ingest`` reads it), a Parquet path, or a
    ``ray.data.Dataset`` (``id_column``, ``text_column``; ``vectors = {field: column}`` for
    precomputed vectors; ``metadata_columns``, default every other column). The collection is
    created in each shard with ``fields``, ``encoders`` (model folders reachable from every node;
    ``embed_model=True`` copies them into each shard so the shards are self-contained) and
    ``hnsw``. Each actor commits every ``commit_every`` documents; one that dies is restarted up to
    ``max_restarts`` times and resumes from its last commit. ``num_cpus`` / ``num_gpus`` are each
    actor's Ray resources (vellum's encoders run on CPU today; ``num_gpus`` reserves GPUs for
    when they run there).

    Running it again with the same source, root and ``num_shards`` resumes an interrupted ingest:
    documents go to the same shards (by position), and ids already committed there are skipped.
    A shard whose fields or encoders differ from the ones declared is refused
    (:class:`~vellum.errors.ShardError`). Documents are assigned to shards by position, not by id:
    adding to a shard set with a *different* input can place an id that one shard already holds
    into another; add such documents through the shard that holds them (``vellum.open(path)``)."""
    return start_ingest(source, root, **kwargs).wait()


class ShardedSearcher:
    """Searches a shard set written by :func:`ingest`: one read-only actor per shard, placed on
    the shard's node; per-shard top-``k`` merged exactly as vellum merges shards.

    ``num_cpus`` is the CPUs each shard actor reserves (default 0: actors only run while they
    answer, and any number of shards fit on a node; give 1 or more to dedicate cores)."""

    def __init__(self, root: Union[str, "os.PathLike[str]"], *, num_cpus: float = 0):
        self.manifest = read_manifest(root)
        self.collection = self.manifest["collection"]
        self.names = [s["path"] for s in self.manifest["shards"]]
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        reader = ray.remote(_ShardReader)
        self.actors = [
            reader.options(
                num_cpus=num_cpus,
                scheduling_strategy=NodeAffinitySchedulingStrategy(s["node_id"], soft=True),
            ).remote(s["path"], self.collection)
            for s in self.manifest["shards"]
        ]

    def _merge(self, refs: List[Any], k: int) -> Tuple[np.ndarray, np.ndarray]:
        results = [(ids, np.asarray(scores).tolist()) for ids, scores in ray.get(refs)]
        ids, scores = merge_shard_results(results, k, self.names)
        return vellum._pad(ids, k), scores

    def search(self, queries: Any, k: int = 10, *, field: Optional[str] = None,
               ef: Optional[int] = None, exact: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """As :meth:`vellum.Collection.search`, over every shard."""
        q = ray.put(queries)
        return self._merge([a.search.remote(q, k, field, ef, exact) for a in self.actors], k)

    def search_text(self, texts: Union[str, Sequence[str]], k: int = 10, *,
                    field: Optional[str] = None, ef: Optional[int] = None,
                    exact: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """As :meth:`vellum.Collection.search_text`, over every shard: the first shard's actor
        encodes the queries once with the field's query encoder (the same in every shard: the
        manifest checked the fingerprints), every shard searches the vectors."""
        if field is None:
            with_encoders = list(self.manifest["encoders"])
            if len(with_encoders) != 1:
                raise InvalidInputError(
                    f"the shards have {len(with_encoders)} fields with an encoder "
                    f"({', '.join(with_encoders) or 'none'}); say which with field=...")
            field = with_encoders[0]
        vectors = ray.get(self.actors[0].encode_queries.remote(vellum._texts(texts), field))
        return self.search(vectors, k, field=field, ef=ef, exact=exact)

    def close(self) -> None:
        """Stops the shard actors."""
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def __enter__(self) -> "ShardedSearcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
