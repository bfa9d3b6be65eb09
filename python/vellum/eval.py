"""Evaluation with trec_eval's measures (equal to ``pytrec_eval``) and run files.

>>> from vellum.eval import evaluate
>>> evaluate({"q1": {"d1": 1}}, {"q1": {"d1": 0.9, "d2": 0.8}}, ["mrr@10", "recall@100"])
{'mrr@10': 1.0, 'recall@100': 1.0}
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Mapping, Sequence, Union

import numpy as np

from ._vellum import evaluate as _evaluate
from ._vellum import write_run as _write_run

__all__ = ["evaluate", "run_from_results", "write_run"]

Qrels = Union[str, "os.PathLike[str]", Mapping[str, Mapping[str, int]]]
RunLike = Union[str, "os.PathLike[str]", Mapping[str, Mapping[str, float]]]


def evaluate(
    qrels: Qrels,
    run: RunLike,
    measures: Union[str, Sequence[str]] = ("mrr@10", "recall@100"),
    per_query: bool = False,
) -> Dict[str, Any]:
    """Evaluates ``run`` against ``qrels`` on the queries present in both, as ``trec_eval`` /
    ``pytrec_eval`` do (documents ranked by score descending, equal scores by id descending).

    ``qrels``: a path (TREC ``qid iter docid rel`` or BEIR TSV) or ``{qid: {docid: grade}}``.
    ``run``: a path (TREC or Tevatron TSV) or ``{qid: {docid: score}}``. ``measures``: ``mrr[@k]``,
    ``recall@k``, ``p@k``, ``ndcg[@k]``, ``map[@k]``, ``success@k`` (trec_eval's ``recip_rank``,
    ``recall_k``, ``P_k``, ``ndcg_cut_k``, ``map_cut_k``, ``success_k``; as ``vellum eval``).
    Returns ``{measure: mean}`` and, with ``per_query``, ``"per_query": {qid: {measure: value}}``.
    Queries that could not be evaluated are reported with a ``UserWarning``."""
    if not isinstance(measures, str):
        measures = ",".join(measures)
    q = os.fspath(qrels) if isinstance(qrels, (str, os.PathLike)) else qrels
    r = os.fspath(run) if isinstance(run, (str, os.PathLike)) else run
    means, notes = _evaluate(q, r, measures, per_query)
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return json.loads(means)


def run_from_results(
    query_ids: Sequence[str], ids: np.ndarray, scores: np.ndarray
) -> Dict[str, Dict[str, float]]:
    """Turns search results (``ids``, ``scores`` ``[n, k]``) into a run dict for
    :func:`evaluate`; ``None`` ids (fewer than ``k`` hits) are skipped."""
    return {
        qid: {d: float(s) for d, s in zip(row, srow) if d is not None}
        for qid, row, srow in zip(query_ids, ids, scores)
    }


def write_run(
    path: Union[str, "os.PathLike[str]"],
    query_ids: Sequence[str],
    ids: np.ndarray,
    scores: np.ndarray,
    format: str = "trec",
    tag: str = "vellum",
) -> None:
    """Writes search results as a run file: ``"trec"`` (``qid Q0 docid rank score tag``),
    ``"tsv"`` (Tevatron's ``qid<TAB>docid<TAB>score``) or ``"json"`` (one line per query) —
    the same bytes ``vellum search --format`` writes."""
    _write_run(
        os.fspath(path),
        [str(q) for q in query_ids],
        [list(r) for r in ids],
        np.asarray(scores, dtype=np.float32).tolist(),
        format,
        tag,
    )
