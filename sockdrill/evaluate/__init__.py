"""Scoring runs: the run journal, the diagnosis taxonomy, deterministic oracles, data-integrity checks,
one composite score and per-run reports.

Pipeline: the runner fills a ``Journal`` (and runs ``integrity.run_checks`` against the datastores),
then ``score(journal)`` runs the oracles and ``write_report(journal, result, out_dir)`` renders it.
"""

from sockdrill.evaluate.journal import (
    ActionEvent,
    GroundTruth,
    IntegrityCheck,
    Journal,
    Marker,
    SubmitEvent,
    Tokens,
    Topology,
)
from sockdrill.evaluate.oracles import ORACLE_IDS, get_oracle, run_oracle
from sockdrill.evaluate.report import write_report
from sockdrill.evaluate.score import WEIGHTS, Result, score
from sockdrill.evaluate.taxonomy import CATEGORIES, SEED_ROOT_CAUSES

__all__ = [
    "CATEGORIES", "ORACLE_IDS", "SEED_ROOT_CAUSES", "WEIGHTS", "ActionEvent", "GroundTruth", "IntegrityCheck",
    "Journal", "Marker", "Result", "SubmitEvent", "Tokens", "Topology", "get_oracle", "run_oracle", "score",
    "write_report",
]
