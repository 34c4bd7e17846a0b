"""``python -m sparsearch +experiment=NAME``: the Hydra entry point.

Kept light on purpose: ``--help`` must not import torch, mlflow or ray.
"""

from __future__ import annotations

import sys
from importlib import resources

import hydra

from sparsearch.config import register_configs

_CONF_DIR = str(resources.files("sparsearch.conf"))
_state = {"task_started": False}


@hydra.main(config_path=_CONF_DIR, config_name="config", version_base="1.3")
def _main(cfg) -> None:
    _state["task_started"] = True
    from sparsearch.app import run

    run(cfg)


def entry() -> None:
    """Console entry: Hydra's own config errors (bad override, unknown key) exit 2 too."""
    register_configs()
    try:
        _main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _state["task_started"]:
            sys.exit(2)
        raise


if __name__ == "__main__":
    entry()
