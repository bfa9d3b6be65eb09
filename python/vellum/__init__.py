"""vellum: an embedded search-index database for neural retrieval.

A database is a directory of named collections. Each document has an id, text, JSON metadata and
a value for each of the collection's vector fields: ``dense`` (one vector), ``multi`` (ColBERT-style
token vectors) or ``tensor`` (a fixed-shape array). Fields may have built-in encoders, so documents
and queries can be given as text.

>>> import numpy as np, vellum
>>> db = vellum.create("my-db")                                          # doctest: +SKIP
>>> docs = db.create_collection("docs", ["emb:dense:384:f32:cosine"])    # doctest: +SKIP
>>> docs.add(["a", "b"], vectors={"emb": np.random.rand(2, 384)}, texts=["x", "y"])  # doctest: +SKIP
>>> db.commit()                                                          # doctest: +SKIP
>>> ids, scores = docs.search(np.random.rand(5, 384), k=10)              # doctest: +SKIP

Shapes and dtypes: dense vectors and queries are ``[n, dim]`` (or ``[dim]`` for one query) of any
real dtype, read in place when they are C-contiguous float32 and converted once otherwise.
Search returns ``ids`` (object array ``[n, k]`` of ``str``, ``None`` past the last hit) and
``scores`` (float32 ``[n, k]``, higher is better, ``-inf`` past the last hit; for L2 fields the
negated squared distance). Every long call releases the GIL.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import errors, eval  # noqa: A004 (vellum.eval, as the CLI's `vellum eval`)
from ._vellum import NativeDatabase, NativeEncoder, NativeShardSet, __version__
from ._vellum import field_specs as _canonical_specs
from ._vellum import verify as _verify
from .errors import InvalidInputError

__all__ = [
    "Database",
    "Collection",
    "Encoder",
    "ShardSet",
    "create",
    "open",
    "verify",
    "errors",
    "eval",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]


def create(path: PathLike) -> "Database":
    """Creates a new, empty database at ``path`` (the directory is created if missing; it must
    not already hold a database: :class:`~vellum.errors.AlreadyExistsError`)."""
    return Database(NativeDatabase.create(os.fspath(path)))


def open(path: PathLike, read_only: bool = False) -> "Database":  # noqa: A001 (shadows open)
    """Opens an existing database. With ``read_only=True`` the handle never takes the writer
    lock, so any number of processes can search while one writes."""
    return Database(NativeDatabase.open(os.fspath(path), read_only))


def verify(path: PathLike) -> Dict[str, Any]:
    """Checks every checksum and structure of the database at ``path``. Returns
    ``{"ok", "generation", "collections", "segments", "live_documents", "bytes", "problems",
    "unreferenced_files"}``."""
    return json.loads(_verify(os.fspath(path)))


def _as_ids(ids: Iterable[Any], what: str = "ids") -> List[str]:
    if isinstance(ids, str):
        raise InvalidInputError(f"{what} must be a sequence of str, not one str ({ids!r})")
    out = list(ids)
    for i, x in enumerate(out):
        if not isinstance(x, str):
            raise InvalidInputError(
                f"{what}[{i}] is {type(x).__name__} {x!r}: document ids are str")
    return out


def _pad(ids: List[List[str]], k: int) -> np.ndarray:
    out = np.full((len(ids), k), None, dtype=object)
    for q, row in enumerate(ids):
        out[q, : len(row)] = row
    return out


class Database:
    """An open database: collections, the single writer (opened on the first write, held until
    :meth:`close`) and reads of the last commit.

    Use it as a context manager to commit on success and discard on error::

        with vellum.open("db") as db:
            db["docs"].add(...)
    """

    def __init__(self, native: NativeDatabase):
        self._db = native

    @property
    def path(self) -> str:
        """The database directory."""
        return os.fspath(self._db.path)

    @property
    def read_only(self) -> bool:
        """Whether the handle was opened read-only."""
        return self._db.read_only

    def create_collection(
        self,
        name: str,
        fields: Sequence[str],
        *,
        hnsw: Optional[Mapping[str, str]] = None,
        encoders: Optional[Mapping[str, PathLike]] = None,
        query_encoders: Optional[Mapping[str, PathLike]] = None,
        encoder_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
        query_encoder_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
        embed_model: bool = False,
    ) -> "Collection":
        """Creates a collection and commits it.

        ``fields`` are vellum field specs, as the CLI takes them: ``"emb:dense:384:f32:cosine"``,
        ``"tok:multi:128:f16:ip"``, ``"img:tensor:50x768:f16"``. ``hnsw`` maps a dense field to
        its HNSW parameters (``"m=16,ef_construction=200"``; ``""`` for defaults). ``encoders``
        maps a field to a model folder (or Hugging Face cache id): documents given as text are
        then encoded at :meth:`Collection.add` / :meth:`Collection.ingest`, and queries by
        :meth:`Collection.search_text`; ``query_encoders`` gives an untied query model,
        ``*_options`` the encoder options (``pooling``, ``normalize``, ``prefix``,
        ``max_length``, ``dims``, ...); ``embed_model`` copies the models into the database.
        """

        def opts(m: Optional[Mapping[str, Mapping[str, Any]]]) -> Dict[str, Dict[str, str]]:
            return {f: {k: _option(v) for k, v in o.items()} for f, o in (m or {}).items()}

        self._db.create_collection(
            name,
            list(fields),
            dict(hnsw or {}),
            {f: os.fspath(p) for f, p in (encoders or {}).items()},
            {f: os.fspath(p) for f, p in (query_encoders or {}).items()},
            opts(encoder_options),
            opts(query_encoder_options),
            embed_model,
        )
        return Collection(self, name)

    def collection(self, name: str) -> "Collection":
        """The collection ``name`` (:class:`~vellum.errors.NotFoundError` if absent)."""
        self._db.schema(name)
        return Collection(self, name)

    __getitem__ = collection

    def collections(self) -> List[str]:
        """Names of the committed collections."""
        return self._db.collections()

    def commit(self) -> Dict[str, int]:
        """Publishes every buffered change atomically and durably. Returns ``{"generation",
        "added", "deleted"}``."""
        generation, added, deleted = self._db.commit()
        return {"generation": generation, "added": added, "deleted": deleted}

    def rollback(self) -> None:
        """Discards the uncommitted changes."""
        self._db.rollback()

    @property
    def has_changes(self) -> bool:
        """Whether there are uncommitted changes."""
        return self._db.has_changes()

    def info(self) -> Dict[str, Any]:
        """Statistics of the last commit (what ``vellum info --json`` prints)."""
        return json.loads(self._db.stats())

    def verify(self) -> Dict[str, Any]:
        """Checks every checksum and structure (see :func:`vellum.verify`)."""
        return verify(self.path)

    def backup(self, dest: PathLike) -> Dict[str, int]:
        """Copies the last commit into a new database at ``dest`` and verifies the copy; safe
        while a writer runs. Returns ``{"generation", "files", "bytes", "models"}``."""
        return json.loads(self._db.backup(os.fspath(dest)))

    def close(self) -> None:
        """Releases the writer lock; uncommitted changes are discarded."""
        self._db.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._db.has_changes():
                self._db.commit()
        finally:
            self._db.close()

    def __repr__(self) -> str:
        return repr(self._db)


class Collection:
    """A collection of a :class:`Database`. Writes are buffered until :meth:`commit` (or
    :meth:`Database.commit`); reads see the last commit."""

    def __init__(self, db: Database, name: str):
        self.db = db
        self.name = name

    # --- schema -----------------------------------------------------------------------------

    @property
    def fields(self) -> Dict[str, str]:
        """``{field: spec}`` in schema order, e.g. ``{"emb": "emb:dense:384:f32:cosine"}``."""
        return {n: spec for n, spec, _ in self.db._db.schema(self.name)}

    @property
    def encoders(self) -> Dict[str, Dict[str, Any]]:
        """``{field: {"passage": record, "query": record}}`` for fields with encoders."""
        return json.loads(self.db._db.encoders_json(self.name))

    @staticmethod
    def _spec_strings(fields: Sequence[str]) -> List[str]:
        """Field specs in vellum's canonical spelling (as :attr:`fields` gives them)."""
        return [s for _, s, _ in _canonical_specs(list(fields))]

    def _field(self, field: Optional[str], *, text: bool = False) -> str:
        if field is not None:
            return field
        candidates = list(self.encoders) if text else []
        what = "fields with an encoder"
        if not candidates:
            # No encoder anywhere: pick the vector field, and let the search name the problem.
            candidates = [n for n, _, kind in self.db._db.schema(self.name) if kind != "tensor"]
            what = "dense or multi fields"
        if len(candidates) == 1:
            return candidates[0]
        raise InvalidInputError(
            f"collection {self.name!r} has {len(candidates)} {what} ({', '.join(candidates) or 'none'}); "
            "say which with field=...")

    # --- writes -----------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[str],
        vectors: Optional[Mapping[str, Any]] = None,
        texts: Optional[Sequence[str]] = None,
        metadata: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> int:
        """Buffers new documents (all or nothing: an error adds none). Returns how many.

        ``vectors`` maps a field to its values for all documents: dense ``[n, dim]``; tensor
        ``[n, *shape]``; multi a list of ``n`` arrays ``[tokens_i, dim]`` or a tuple ``(tokens
        [total, dim], lengths [n])``. A field with an encoder that is not in ``vectors`` is
        encoded from ``texts`` (with the metadata's ``title`` prepended, as Tevatron does).
        ``metadata`` is one JSON-serialisable dict per document. An id that is already live is
        an error (:class:`~vellum.errors.InvalidInputError`, kind ``DuplicateId``): use
        :meth:`upsert`.
        """
        return self._insert(ids, vectors, texts, metadata, upsert=False)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Optional[Mapping[str, Any]] = None,
        texts: Optional[Sequence[str]] = None,
        metadata: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> int:
        """Like :meth:`add`, replacing live documents with the same ids."""
        return self._insert(ids, vectors, texts, metadata, upsert=True)

    def _insert(self, ids, vectors, texts, metadata, *, upsert: bool) -> int:
        ids = _as_ids(ids)
        if texts is not None:
            texts = [t for t in texts]
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise InvalidInputError(f"texts[{i}] is {type(t).__name__}: texts are str")
        meta = None
        if metadata is not None:
            meta = []
            for i, m in enumerate(metadata):
                if not isinstance(m, Mapping):
                    raise InvalidInputError(
                        f"metadata[{i}] is {type(m).__name__}: metadata is one dict per document")
                try:
                    meta.append(json.dumps(m, allow_nan=False))
                except (TypeError, ValueError) as e:
                    raise InvalidInputError(f"metadata[{i}] is not JSON-serialisable: {e}") from e
        return self.db._db.add(self.name, ids, dict(vectors or {}), texts, meta, upsert)

    def delete(self, ids: Sequence[str]) -> int:
        """Buffers deletions; returns how many of the ids were live."""
        return self.db._db.delete(self.name, _as_ids(ids))

    def commit(self) -> Dict[str, int]:
        """Commits the database's buffered changes (see :meth:`Database.commit`)."""
        return self.db.commit()

    def ingest(
        self,
        docs: PathLike,
        *,
        vectors: Optional[Mapping[str, PathLike]] = None,
        lengths: Optional[Mapping[str, PathLike]] = None,
        upsert: bool = False,
        shard: Optional[Tuple[int, int]] = None,
        commit_every: int = 10_000,
        skip_bad_images: bool = False,
    ) -> Dict[str, Any]:
        """Ingests a file as ``vellum ingest`` does. Without ``vectors``, the documents (JSONL
        ``id``/``text``/``image``/``metadata`` or Tevatron's ``docid``/``title``/``text``, TSV,
        or a folder of images) are encoded by the fields' encoders (CLIP fields from the images,
        whose paths are relative to the file; ``skip_bad_images`` skips and lists documents
        whose image cannot be read, in ``bad_images``) in a pipeline that commits every ``commit_every``
        documents and resumes after a crash (ids already committed are skipped). With
        ``vectors = {field: "file.npy" | "file.safetensors:tensor"}`` (and ``lengths`` for multi
        fields) precomputed rows are read in document order. ``shard=(i, n)`` takes documents
        ``i, i+n, ...``. Returns the stats (``documents``, ``skipped``, ``commits``,
        ``generation``, ...). Ctrl-C during an encoding ingest commits what was encoded, then
        raises ``KeyboardInterrupt``; running it again resumes."""
        return json.loads(self.db._db.ingest(
            self.name,
            os.fspath(docs),
            {f: os.fspath(p) for f, p in (vectors or {}).items()},
            {f: os.fspath(p) for f, p in (lengths or {}).items()},
            upsert,
            tuple(shard) if shard is not None else None,
            commit_every,
            skip_bad_images,
        ))

    # --- reads ------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Live documents of the last commit."""
        return self.db._db.count(self.name)

    def __contains__(self, doc_id: str) -> bool:
        """Whether ``doc_id`` is live for this handle's writer: committed, or added by this
        handle and not yet committed (what :meth:`add` checks against). Reads (``len``,
        :meth:`get`, searches) see the last commit only."""
        return self.db._db.contains(self.name, doc_id)

    def get(self, doc_id: str) -> Optional[Dict[str, Any]]:
        """The committed document ``doc_id``: ``{"id", "text", "metadata" (dict), "vectors":
        {field: float32 array}}`` (dense ``[dim]``, multi ``[tokens, dim]``, tensor its shape),
        or ``None``."""
        d = self.db._db.get(self.name, doc_id)
        if d is None:
            return None
        d["metadata"] = json.loads(d["metadata"])
        return d

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        field: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        plaid: Optional[Mapping[str, Any]] = None,
        filter: Union[None, str, Mapping[str, Any]] = None,
        device: Optional[str] = None,
        gpu_precision: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` documents per query vector. Returns ``(ids, scores)``, each ``[n, k]``.

        Dense fields take ``[dim]`` or ``[n, dim]``; multi-vector fields (MaxSim) take one
        ``[tokens, dim]`` array, an ``[n, tokens, dim]`` array or a list of ``[tokens_i, dim]``
        arrays. Fields with an HNSW index are searched approximately (``ef`` candidates, default
        ``max(k, the index's ef_search)``) unless ``exact``; multi-vector fields with a PLAID
        index through PLAID's stages (``plaid={"ncells": .., "ndocs": .., "full_scores": ..,
        "centroid_threshold": .., "decompress": ..}`` over the paper's defaults for ``k``;
        ``full_scores``, default ``ndocs // 4``, at least ``k``, is how many documents per segment
        the last stage scores by full MaxSim) unless ``exact``. Equal
        scores rank by id descending (trec_eval's order), on every path and across shards.

        ``filter`` keeps only documents whose metadata matches (a dict or its JSON text), in
        MongoDB's operator style: ``{"lang": "en", "year": {"$gte": 2000}}``; operators
        ``$eq $ne $in $nin $gt $gte $lt $lte $exists``, ``$and $or $not``; dotted keys look into
        nested objects; an array value matches if any element does. Exact search returns the
        best ``k`` matching documents; HNSW and PLAID search the matching rows exactly where
        they are few.

        ``device="cuda:0"`` searches exactly on that NVIDIA GPU, with the CPU's results (the
        field is copied to the GPU at the first search and reused while its segments stay the
        same; HNSW and PLAID indexes are not used there); ``gpu_precision`` (``"stored"``,
        ``"tf32"``, ``"f16"``, ``"bf16"``) sets the type of a dense field's copy. Without a CUDA
        driver this raises an error naming it."""
        ids, scores, _ = self.db._db.search(
            self.name, self._field(field), queries, k, ef, exact, False, _plaid(plaid),
            _filter(filter), device, gpu_precision)
        return _pad(ids, k), scores

    def search_text(
        self,
        texts: Union[str, Sequence[str]],
        k: int = 10,
        *,
        field: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        plaid: Optional[Mapping[str, Any]] = None,
        filter: Union[None, str, Mapping[str, Any]] = None,
        device: Optional[str] = None,
        gpu_precision: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search`, with queries encoded by the field's own query encoder."""
        ids, scores, _ = self.db._db.search_text(
            self.name, self._field(field, text=True), _texts(texts), k, ef, exact, False,
            _plaid(plaid), _filter(filter), device, gpu_precision)
        return _pad(ids, k), scores

    def search_two_stage(
        self,
        queries: Any = None,
        rerank_queries: Any = None,
        k: int = 10,
        *,
        field: str,
        rerank_field: str,
        texts: Union[None, str, Sequence[str]] = None,
        rerank_texts: Union[None, str, Sequence[str]] = None,
        depth: int = 100,
        combine: Optional[Tuple[float, float]] = None,
        filter: Union[None, str, Mapping[str, Any]] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        device: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Two-stage search (retrieve, then re-rank): the best ``depth`` documents per query by
        ``field`` (``queries`` as vectors, or ``texts``; with ``filter``, ``ef``, ``exact`` as
        :meth:`search`), re-scored by ``rerank_field`` (dense, or exact MaxSim on a multi-vector
        field) with the paired query (``rerank_queries`` or ``rerank_texts``, one per query),
        keeping the best ``k``. The final score is the second stage's, or with ``combine=(w1,
        w2)`` ``w1 * first + w2 * second``. ``device="cuda:0"`` runs both stages on that GPU
        (exact, as :meth:`search`). Returns ``(ids, scores)``, each ``[n, k]``."""
        ids, scores, _ = self.db._db.search_two_stage(
            self.name, field, queries, None if texts is None else _texts(texts),
            rerank_field, rerank_queries,
            None if rerank_texts is None else _texts(rerank_texts), k, depth,
            _combine(combine), _filter(filter), ef, exact, device)
        return _pad(ids, k), scores

    def rerank(
        self,
        candidates: Sequence[Sequence[Any]],
        queries: Any = None,
        k: int = 10,
        *,
        field: str,
        texts: Union[None, str, Sequence[str]] = None,
        combine: Optional[Tuple[float, float]] = None,
        filter: Union[None, str, Mapping[str, Any]] = None,
        device: Optional[str] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The second stage alone: re-scores each query's ``candidates`` (ids, or ``(id,
        first-stage score)`` pairs, e.g. read back from a saved run) with ``field`` and the
        query's vector (``queries``) or text (``texts``), keeping the best ``k``. Candidates the
        collection no longer holds are skipped. ``device="cuda:0"`` scores a multi-vector
        field's candidates on that GPU (same results as the CPU)."""
        cands = []
        for row in candidates:
            out = []
            for c in row:
                if c is None or (not isinstance(c, str) and c[0] is None):
                    continue  # the padding of a search() row shorter than k
                if isinstance(c, str):
                    if combine is not None:
                        raise InvalidInputError(
                            "combine weighs the first-stage score: give candidates as (id, score) pairs")
                    out.append((c, 0.0))
                else:
                    out.append((str(c[0]), float(c[1])))
            cands.append(out)
        ids, scores, _ = self.db._db.rerank(
            self.name, field, cands, queries, None if texts is None else _texts(texts), k,
            _combine(combine), _filter(filter), device)
        return _pad(ids, k), scores

    def encode_queries(
        self, texts: Union[str, Sequence[str]], *, field: Optional[str] = None
    ) -> Union[np.ndarray, List[np.ndarray]]:
        """Encodes query texts with the field's own query encoder (what :meth:`search_text`
        searches with): float32 ``[n, dims]``, or a list of ``[tokens_i, dims]`` arrays for a
        multi-vector field."""
        return self.db._db.encode_queries(self.name, self._field(field, text=True), _texts(texts))

    def query(
        self,
        queries: Any = None,
        *,
        texts: Union[None, str, Sequence[str]] = None,
        k: int = 10,
        field: Optional[str] = None,
        ef: Optional[int] = None,
        exact: bool = False,
        filter: Union[None, str, Mapping[str, Any]] = None,
    ) -> List[List[Dict[str, Any]]]:
        """Search for applications: per query, a list of ``{"id", "score", "text",
        "metadata"}`` dicts, best first. Give ``queries`` (vectors, as :meth:`search`) or
        ``texts``; ``filter`` as in :meth:`search`."""
        if (queries is None) == (texts is None):
            raise InvalidInputError("give either queries (vectors) or texts")
        if texts is not None:
            ids, scores, docs = self.db._db.search_text(
                self.name, self._field(field, text=True), _texts(texts), k, ef, exact, True,
                None, _filter(filter))
        else:
            ids, scores, docs = self.db._db.search(
                self.name, self._field(field), queries, k, ef, exact, True, None,
                _filter(filter))
        return [
            [
                {"id": i, "score": float(scores[q, j]), "text": t, "metadata": json.loads(m)}
                for j, (i, (t, m)) in enumerate(zip(row, drow))
            ]
            for q, (row, drow) in enumerate(zip(ids, docs))
        ]

    def query_arrow(self, queries: Any = None, **kwargs: Any) -> "Any":
        """:meth:`query` as a ``pyarrow.Table`` with columns ``query`` (int32, the query's
        position), ``rank`` (int32, from 1), ``id``, ``score`` (float32), ``text`` and
        ``metadata`` (JSON text). Needs ``pyarrow``."""
        import pyarrow as pa

        rows = self.query(queries, **kwargs)
        cols: Dict[str, list] = {"query": [], "rank": [], "id": [], "score": [], "text": [], "metadata": []}
        for q, hits in enumerate(rows):
            for r, h in enumerate(hits):
                cols["query"].append(q)
                cols["rank"].append(r + 1)
                cols["id"].append(h["id"])
                cols["score"].append(h["score"])
                cols["text"].append(h["text"])
                cols["metadata"].append(json.dumps(h["metadata"]))
        schema = pa.schema([
            ("query", pa.int32()), ("rank", pa.int32()), ("id", pa.string()),
            ("score", pa.float32()), ("text", pa.string()), ("metadata", pa.string()),
        ])
        return pa.table(cols, schema=schema)

    # --- maintenance ------------------------------------------------------------------------

    def info(self) -> Dict[str, Any]:
        """This collection's statistics (documents, segments, bytes per field, indexes)."""
        for c in self.db.info()["collections"]:
            if c["name"] == self.name:
                return c
        raise errors.NotFoundError(f"no collection named {self.name!r}")

    def compact(self) -> Dict[str, int]:
        """Merges the segments into one and drops deleted rows (crash-safe). Returns
        ``{"generation", "segments_before", "segments_after", "rows_dropped"}``."""
        g, before, after, dropped = self.db._db.compact(self.name)
        return {"generation": g, "segments_before": before, "segments_after": after,
                "rows_dropped": dropped}

    def reencode(
        self,
        field: str,
        encoder: Optional[PathLike] = None,
        *,
        query_encoder: Optional[PathLike] = None,
        encoder_options: Optional[Mapping[str, Any]] = None,
        query_encoder_options: Optional[Mapping[str, Any]] = None,
        embed_model: bool = False,
        piece_rows: int = 10_000,
        keep_previous: bool = True,
        new_field: Optional[str] = None,
    ) -> Dict[str, int]:
        """Re-encodes ``field`` from the stored text with a new encoder (a model folder or cached
        model id of the field's dimension) as a new encoder version: new segments are written
        beside the current ones (searches keep seeing the current version), then one commit
        switches the field. ``encoder=None`` continues an interrupted re-encode. The replaced
        version is kept for :meth:`rollback_version` unless ``keep_previous=False``.
        ``new_field`` encodes into a new field instead (an encoder of another dimension, say):
        ``"NAME"`` takes ``field``'s kind, dtype and metric and the encoder's dimension,
        ``"NAME:KIND:DIM[:DTYPE[:METRIC]]"`` gives them; ``field`` stays as it is, the switch
        adds the new field, and :meth:`rollback_version` removes it. Returns
        ``{"generation", "from_version", "to_version", "encoded"}``."""
        opts = lambda m: {k: str(v) for k, v in (m or {}).items()}
        g, a, b, n = self.db._db.reencode(
            self.name, field, None if encoder is None else str(encoder),
            None if query_encoder is None else str(query_encoder), opts(encoder_options),
            opts(query_encoder_options), embed_model, piece_rows, keep_previous, new_field)
        return {"generation": g, "from_version": a, "to_version": b, "encoded": n}

    def train(
        self,
        field: str,
        output: PathLike,
        *,
        train: Optional[PathLike] = None,
        queries: Optional[PathLike] = None,
        qrels: Optional[PathLike] = None,
        mine_depth: int = 0,
        mine_skip: int = 0,
        eval_queries: Optional[PathLike] = None,
        eval_qrels: Optional[PathLike] = None,
        eval_depth: int = 100,
        resume: bool = False,
        reencode: bool = False,
        piece_rows: int = 10_000,
        **settings: Any,
    ) -> Dict[str, Any]:
        """Fine-tunes ``field``'s encoders on the collection's own data, as ``vellum train``:
        Tevatron's contrastive loss on ``train`` (Tevatron train JSONL) or ``queries`` + ``qrels``
        (passages read from the collection), hard negatives mined ``mine_depth`` deep with the
        field's search, held-out re-ranking evaluation on ``eval_queries`` + ``eval_qrels``.
        ``settings`` are the training settings by name (``epochs``, ``max_steps``,
        ``batch_size``, ``group_size``, ``accumulation``, ``temperature``, ``lr``,
        ``weight_decay``, ``warmup_ratio``, ``max_grad_norm``, ``seed``, ``query_max_len``,
        ``passage_max_len``, ``untie``, ``prefer_mined``, ``save_every``,
        ``save_total_limit``, ``eval_every``). Checkpoints and the trained Hugging Face /
        sentence-transformers model go to ``output``; Ctrl-C stops after writing a checkpoint
        (raises ``Interrupted``) and ``resume=True`` continues. With ``reencode=True`` the field
        is then re-encoded with the trained model (:meth:`reencode`). Returns the training
        report (``training_report.json``), with ``"reencode"`` added when re-encoded."""
        opt = lambda p: None if p is None else str(p)
        text, done = self.db._db.train(
            self.name, field, str(output), opt(train), opt(queries), opt(qrels), mine_depth,
            mine_skip, opt(eval_queries), opt(eval_qrels), eval_depth, resume,
            {k: "none" if v is None else str(v) for k, v in settings.items()}, reencode,
            piece_rows)
        saved = json.loads(text)  # {"settings", "report"}
        report = dict(saved["report"], settings=saved["settings"])
        if done is not None:
            g, a, b, n = done
            report["reencode"] = {"generation": g, "from_version": a, "to_version": b,
                                  "encoded": n}
        return report

    def train_query_encoder(
        self,
        field: str,
        output: PathLike,
        *,
        train: Optional[PathLike] = None,
        queries: Optional[PathLike] = None,
        qrels: Optional[PathLike] = None,
        mine_depth: int = 0,
        mine_skip: int = 0,
        eval_queries: Optional[PathLike] = None,
        eval_qrels: Optional[PathLike] = None,
        student_layers: Optional[int] = None,
        student: Optional[PathLike] = None,
        align_steps: int = 200,
        align_loss: str = "cosine",
        align_lr: float = 1e-4,
        align_texts: Optional[Sequence[str]] = None,
        train_embeddings: bool = False,
        bind: bool = False,
        bind_options: Optional[Mapping[str, Any]] = None,
        embed_model: bool = False,
        **settings: Any,
    ) -> Dict[str, Any]:
        """Trains only a small query encoder for ``field``'s stored passage vectors, as ``vellum
        train --query-only`` (Cohen et al., "Extremely efficient online query encoding for
        dense retrieval", 2024): nothing is re-encoded. The student — the current query model's
        first ``student_layers`` layers (default 2), or the model folder ``student`` with the
        field's dimension — is aligned to the current query encoder (``align_steps`` steps of
        ``align_loss`` "cosine" or "mse" at ``align_lr``) on the training queries and the
        unjudged ``align_texts`` (strings), then trained contrastively against the stored
        vectors of each query's positive and hard negatives. Training data, mining and
        ``settings`` as in :meth:`train` (``max_steps``, ``batch_size``, ``group_size``, ``lr``,
        ...). With ``eval_queries`` + ``eval_qrels`` both encoders are evaluated by full
        retrieval and their query speeds measured. ``bind=True`` then makes the trained model
        the field's query encoder in one commit, with the encoder options ``bind_options``
        (e.g. ``{"dtype": "int8"}``; ``embed_model`` copies it into the database).
        Returns the report (``training_report.json``: ``align_losses``, ``losses``, ``teacher``,
        ``student``, ``queries_per_sec``, ...), with ``"generation"`` when bound."""
        opt = lambda p: None if p is None else str(p)
        if isinstance(align_texts, (str, bytes)):
            raise TypeError("align_texts: expected a sequence of strings, not one string")
        text, generation = self.db._db.train_query_encoder(
            self.name, field, str(output), opt(train), opt(queries), opt(qrels), mine_depth,
            mine_skip, opt(eval_queries), opt(eval_qrels), student_layers, opt(student),
            align_steps, align_loss, float(align_lr), list(align_texts or []), train_embeddings,
            {k: "none" if v is None else str(v) for k, v in settings.items()}, bind,
            {k: _option(v) for k, v in (bind_options or {}).items()}, embed_model)
        report = json.loads(text)
        if generation is not None:
            report["generation"] = generation
        return report

    def rollback_version(self) -> Dict[str, Any]:
        """Switches back to the encoder version the last re-encode replaced, in one commit
        (calling it again switches forward). Deletions since carry over; refused once documents
        were added or the collection compacted. Returns ``{"generation", "field",
        "from_version", "to_version"}``."""
        g, f, a, b = self.db._db.rollback_version(self.name)
        return {"generation": g, "field": f, "from_version": a, "to_version": b}

    def drop_previous_version(self) -> bool:
        """Drops the encoder version kept for rollback (its files are freed)."""
        return self.db._db.drop_version(self.name, "previous")

    def abort_reencode(self) -> bool:
        """Discards an unfinished re-encode (its new segments are removed)."""
        return self.db._db.drop_version(self.name, "staged")

    def plaid_index(self, field: str, params: Optional[str] = "") -> int:
        """Sets the PLAID index of a multi-vector field (``"nbits=2,centroids=4096"``; ``""`` for
        defaults; ``None`` drops it), rewrites the collection so every segment has it (the codec
        trained on all documents) and returns the generation. Later adds reuse the codec;
        compaction re-clusters past ``recluster_percent`` growth. ``store=codes`` keeps only the
        compressed codes (no full-precision tokens; reads and searches decompress them)."""
        return self.db._db.plaid_index(self.name, field, params)

    def index(self, field: str, params: Optional[str] = "") -> int:
        """Sets the HNSW index of a dense field (``"m=16,ef_construction=200,ef_search=64"``;
        ``""`` for defaults; ``None`` drops it) and builds it; returns the generation."""
        return self.db._db.index(self.name, field, params)

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, fields={list(self.fields.values())})"


def _texts(texts: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(f"texts[{i}] is {type(t).__name__}: query texts are str")
    return out


def _filter(f: Union[None, str, Mapping[str, Any]]) -> Optional[str]:
    """A metadata filter's JSON text."""
    if f is None or isinstance(f, str):
        return f

    def plain(v: Any) -> Any:
        # NumPy scalars (np.int64(2000), np.float32(0.5), np.bool_) as Python numbers.
        if hasattr(v, "item"):
            return v.item()
        raise TypeError(f"filter value {v!r} of type {type(v).__name__} is not JSON")
    return json.dumps(f, default=plain)


def _combine(weights: Optional[Tuple[float, float]]) -> Optional[Tuple[float, float]]:
    if weights is None:
        return None
    w = tuple(float(x) for x in weights)
    if len(w) != 2 or not all(math.isfinite(x) for x in w):
        raise InvalidInputError(
            "combine is (w1, w2), finite: w1 * first-stage score + w2 * second-stage score")
    return w  # type: ignore[return-value]


def _plaid(options: Optional[Mapping[str, Any]]) -> Optional[Dict[str, float]]:
    return None if options is None else {k: float(v) for k, v in options.items()}


def _option(value: Any) -> str:
    """An encoder option's text form (Python booleans as ``true`` / ``false``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class Encoder:
    """A built-in encoder on its own: ``Encoder("models/all-MiniLM-L6-v2").encode(texts)``.

    ``options`` are encoder options (``pooling``, ``normalize``, ``prefix``, ``max_length``,
    ``dims``, ``batch_size``, ``dtype``: ``f32`` (default), ``f16`` / ``bf16`` (weights rounded)
    or ``int8`` (quantized linear layers: faster, vectors close to but not equal to f32's), ...),
    applied over the model folder's own defaults.

    A late-interaction (ColBERT) checkpoint — Stanford ``HF_ColBERT``, PyLate, or a
    sentence-transformers multi-vector model — gives one vector per token: ``role="query"``
    encodes queries (marker, ``[MASK]`` expansion to the query length), the default
    ``role="passage"`` documents (marker, punctuation skiplist); ``truncate=True`` cuts queries
    longer than the query length instead of raising."""

    def __init__(self, source: PathLike, **options: Any):
        self._e = NativeEncoder(os.fspath(source), {k: _option(v) for k, v in options.items()})

    def encode(self, texts: Union[str, Sequence[str]]) -> Union[np.ndarray, List[np.ndarray]]:
        """float32 ``[n, dims]`` for a dense encoder; a list of ``[tokens_i, dims]`` for a
        multi-vector one. Equal to what ingest stores for the same texts."""
        return self._e.encode(_texts(texts))

    @property
    def dims(self) -> int:
        """Values per output vector."""
        return self._e.dims

    @property
    def output(self) -> str:
        """``"dense"`` or ``"multi"``: the field kind the encoder fills."""
        return self._e.output

    @property
    def record(self) -> Dict[str, Any]:
        """What a field records for this encoder (source, fingerprint, resolved options)."""
        return json.loads(self._e.record_json())


class ShardSet:
    """Databases that hold disjoint shards of one collection, searched in this process as one
    (the CLI's ``vellum search --db A --db B``): every shard is searched and the per-shard top-``k``
    merged, equal scores by id descending, so the answer equals one database holding every
    document. Fields must have the same spec (and encoders) in every shard
    (:class:`~vellum.errors.ShardError` otherwise). For shards on other machines use
    :class:`vellum.ray.ShardedSearcher`."""

    def __init__(self, paths: Sequence[PathLike]):
        self._s = NativeShardSet([os.fspath(p) for p in paths])

    @property
    def paths(self) -> List[str]:
        """The databases, in the order given."""
        return [os.fspath(p) for p in self._s.paths()]

    def search(self, collection: str, queries: Any, k: int = 10, *, field: str,
               ef: Optional[int] = None, exact: bool = False,
               filter: Union[None, str, Mapping[str, Any]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """As :meth:`Collection.search`, over every shard."""
        ids, scores, _ = self._s.search(collection, field, queries, k, ef, exact, _filter(filter))
        return _pad(ids, k), scores

    def search_text(self, collection: str, texts: Union[str, Sequence[str]], k: int = 10, *,
                    field: str, ef: Optional[int] = None, exact: bool = False,
                    filter: Union[None, str, Mapping[str, Any]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """As :meth:`Collection.search_text`: the queries are encoded once, by the field's query
        encoder (which every shard must accept)."""
        ids, scores, _ = self._s.search_text(collection, field, _texts(texts), k, ef, exact,
                                             _filter(filter))
        return _pad(ids, k), scores
