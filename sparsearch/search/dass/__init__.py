"""DASS: differentiable, sparsity-aware architecture search as a sparsearch strategy.

Mousavi et al., "DASS: Differentiable Architecture Search for Sparse Neural Networks"
(arXiv 2207.06968), on DARTS (Liu et al., arXiv 1806.09055), with DARTS-PT's
perturbation-based derivation (Wang et al., arXiv 2108.04392). ``run_dass`` is the
strategy (dispatched by ``search.strategy=dass``); ``search_lambda`` is the pure per-lambda
work a parallel runner maps over lambdas.
"""

from sparsearch.search.dass.derive import Derivation, derive_argmax, derive_pt, genotype_of
from sparsearch.search.dass.job import (
    LambdaJob,
    LambdaOutcome,
    build_supernet,
    search_lambda,
    warm_up,
)
from sparsearch.search.dass.plan import SupernetPlan, layer_candidates, plan_supernet
from sparsearch.search.dass.run import check_dass, record_outcome, run_dass, sweep_points
from sparsearch.search.dass.sweep import SweepPoint, next_lambda

__all__ = [
    "Derivation",
    "LambdaJob",
    "LambdaOutcome",
    "SupernetPlan",
    "SweepPoint",
    "build_supernet",
    "check_dass",
    "derive_argmax",
    "derive_pt",
    "genotype_of",
    "layer_candidates",
    "next_lambda",
    "plan_supernet",
    "record_outcome",
    "run_dass",
    "search_lambda",
    "sweep_points",
    "warm_up",
]
