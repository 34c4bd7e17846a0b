"""The keys sparsearch writes into MLflow runs and Optuna trials, written once.

Users filter runs by these (``mlflow ui``, ``search_runs(filter_string=...)``) and a
resumed search finds its runs again by them, so a key is a public name: change one only
with a migration. Optuna user attributes use the same names where they hold the same
thing (a trial's metrics, its failure reason, the node it ran on).
"""

from __future__ import annotations

__all__ = [
    "DASS_LAMBDA",
    "DASS_POINT",
    "DASS_SWEEP",
    "DASS_TRAINING",
    "DASS_TPE_SEARCHED",
    "DASS_TPE_SOURCE",
    "EXPERIMENT_KIND",
    "FAIL_REASON",
    "METRICS",
    "NOTE",
    "NODE_ID",
    "OPTUNA_NUMBER",
    "PARENT_RUN",
    "PARETO",
    "PARETO_RANK",
    "RETRY_OF",
    "ROLE",
    "RUNGS",
    "RUN_DIR",
    "SEARCH_KEY",
    "SPEC",
    "STALE",
    "STATUS",
    "STOPPED_AT_EPOCH",
    "TRAIN_NODE_ID",
    "TRIAL_KEY",
]

# Run tags.
SEARCH_KEY = "sparsearch.search_key"  # parent and children: the search's identity
TRIAL_KEY = "sparsearch.trial_key"  # child: the trial's stable key across retries
ROLE = "sparsearch.role"  # "search" | "trial"
RUN_DIR = "sparsearch.run_dir"  # parent: the run dir on the driver
SPEC = "sparsearch.spec"  # child: the SubnetSpec as JSON
STATUS = "sparsearch.status"  # child: complete | pruned | failed
FAIL_REASON = "sparsearch.fail_reason"  # child tag and Optuna attribute: why it failed
STOPPED_AT_EPOCH = "sparsearch.stopped_at_epoch"  # child: the rung a scheduler stopped it at
OPTUNA_NUMBER = "sparsearch.optuna_number"  # child: the Optuna trial number of this attempt
NODE_ID = "sparsearch.node_id"  # child tag / trial attribute: the Ray node it ran (or searched) on
TRAIN_NODE_ID = "sparsearch.train_node_id"  # DASS child: the Ray node that trained the subnet
PARETO = "pareto"  # child: "true" | "false"
PARETO_RANK = "pareto_rank"  # child on the front: its rank
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI reads it)
NOTE = "mlflow.note.content"  # MLflow's run description (markdown): parent and Pareto children

# Experiment tags.
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's: which layout the UI opens the experiment in

# Optuna trial and study attributes.
METRICS = "sparsearch.metrics"  # trial: the TrialResult's metrics
STALE = "sparsearch.stale"  # trial: a killed attempt, not counted against the budget
RETRY_OF = "sparsearch.retry_of"  # trial: the key of the first attempt it repeats
RUNGS = "sparsearch.rungs"  # trial: its scheduler rung decisions, epoch -> values, survived
DASS_LAMBDA = "sparsearch.dass.lambda"  # trial: the lambda a DASS subnet was derived at
DASS_POINT = "sparsearch.dass.point"  # trial: its DASS sweep point
DASS_SWEEP = "sparsearch.dass.sweep"  # study: every DASS sweep point, duplicates included
DASS_TRAINING = "sparsearch.dass.training"  # study, parent run: the probe's training values
DASS_TPE_SEARCHED = "sparsearch.dass_tpe.searched"  # study: dass_tpe's [lambda, cost] pairs
DASS_TPE_SOURCE = "sparsearch.dass_tpe.source"  # trial: [lambda, search key] of its subnet
