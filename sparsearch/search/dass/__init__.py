"""DASS: differentiable, sparsity-aware architecture search as a sparsearch strategy.

Mousavi et al., "DASS: Differentiable Architecture Search for Sparse Neural Networks"
(arXiv 2207.06968), on DARTS (Liu et al., arXiv 1806.09055), with DARTS-PT's
perturbation-based derivation (Wang et al., arXiv 2108.04392). ``DassStrategy`` is the
strategy (``search.strategy=dass``), run by any runner; ``search_lambda`` is the pure
per-lambda work its units execute.
"""

from sparsearch.search.dass.job import LambdaJob, LambdaOutcome, search_lambda
from sparsearch.search.dass.run import DassStrategy, sweep_points
from sparsearch.search.dass.sweep import SweepPoint

__all__ = ["DassStrategy", "LambdaJob", "LambdaOutcome", "SweepPoint", "search_lambda",
           "sweep_points"]
