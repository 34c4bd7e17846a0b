"""A trial's Optuna bookkeeping on the study's two storages: SQLite (``optuna.db``, before)
against Optuna's journal file (``optuna.journal``, now).

What a search pays per trial inside its wall-clock budget, as ``SamplerStrategy`` and the
scheduler hook do it: ``study.ask``, one suggest per space dimension, the trial's metrics as
a user attribute, a rung record written through the storage after looking the running
trial up, and ``study.tell``. Each repeat times ``--trials`` trials on a fresh study of each
storage, the two storages interleaved so both see the same machine load; the table gives
min/median/max milliseconds per trial over the repeats and the median ratio, with the
1-minute load average at the start and the end.

    python benchmarks/study_storage.py [--trials 300] [--repeats 5] [--params 6]
        [--out outputs/bench/study_storage.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _storage(kind: str, folder: Path) -> Any:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'optuna.db'}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))


def time_trials(kind: str, *, trials: int, params: int) -> float:
    """Seconds per trial of ask, suggests, attribute, rung write and tell on a new study."""
    import optuna
    from optuna.trial import TrialState

    from sparsearch.schedulers import save_rung
    from sparsearch.schedulers._rule import RungRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(study_name="bench", storage=_storage(kind, Path(tmp)),
                                    sampler=optuna.samplers.RandomSampler(seed=0),
                                    directions=["maximize", "minimize"])
        started = time.perf_counter()
        for _ in range(trials):
            trial = study.ask()
            values = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(params)]
            save_rung(study, trial.number, RungRecord(key=trial.number, epoch=3,
                                                      values=(values[0], 0.5), survived=False))
            trial.set_user_attr("sparsearch.metrics", {"accuracy": values[0], "density": 0.5})
            study.tell(trial, state=TrialState.PRUNED)
        return (time.perf_counter() - started) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", type=int, default=6,
                        help="suggests per trial (the MNIST-1D space asks 5-7)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/study_storage.json"))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    times: dict[str, list[float]] = {"sqlite": [], "journal": []}
    for _ in range(args.repeats):
        for kind in times:
            times[kind].append(time_trials(kind, trials=args.trials, params=args.params))
    load_end = os.getloadavg()[0]
    ratio = statistics.median(times["sqlite"]) / statistics.median(times["journal"])
    print(f"{args.trials} trials x {args.repeats} repeats, {args.params} suggests each; "
          f"1-min load {load_start:.2f} -> {load_end:.2f}")
    print(f"{'storage':<10}{'min ms':>10}{'median ms':>12}{'max ms':>10}")
    for kind, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"{kind:<10}{min(ms):>10.2f}{statistics.median(ms):>12.2f}{max(ms):>10.2f}")
    print(f"journal is {ratio:.1f}x faster per trial (median)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": args.trials, "repeats": args.repeats,
                                    "params": args.params, "seconds_per_trial": times,
                                    "median_ratio": ratio,
                                    "load": [load_start, load_end]}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
