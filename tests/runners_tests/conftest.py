"""Shared parts of the Ray runner tests: the real command, a real two-node Ray cluster on
loopback, the processes a test starts (and stops), and what a search left behind.

Every Ray process a test starts is found by walking the process tree of what it launched
(``/proc``), and stopped by pid: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import mlflow_uri

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_CHDIR_TO_TRIAL_DIR": "0", "HF_HUB_OFFLINE": "1"}
for _name, _value in RAY_ENV.items():
    os.environ.setdefault(_name, _value)


def search_args(tmp: Path, *, run: str = "run", n_trials: int = 4, epochs: int = 2,
                hidden: str = "[32,32]") -> list[str]:
    """Overrides of a real, small search in ``tmp/run`` with its MLflow db in ``tmp``.

    Exports are off: they happen after the runner, the same for every runner.
    """
    return [f"hydra.run.dir={tmp / run}", f"tracking.uri={mlflow_uri(tmp / 'mlflow.db')}",
            f"model.hidden={hidden}", f"train.epochs={epochs}", f"search.n_trials={n_trials}",
            "search.strategy=random", "name=tiny", "export.enabled=false"]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: split after the last ')'.
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_processes(pids: list[int], *, grace_s: float = 2.0) -> None:
    """SIGTERM each pid, wait up to ``grace_s``, then SIGKILL the ones still alive."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)


@dataclass
class Command:
    """The real command (``python -m sparsearch ARGS``) running in the background.

    The pids of everything it starts are collected while it runs, so that what it leaves
    behind (a killed driver's Ray processes) can be stopped afterwards.
    """

    proc: subprocess.Popen
    log: Path
    seen: set[int] = field(default_factory=set)

    def watch(self) -> None:
        self.seen.update(descendants(self.proc.pid))

    def wait(self, timeout: float = 600) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"the command ran over {timeout} s; log:\n{self.output()}")
            self.watch()
            time.sleep(0.5)
        self.cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would; then stops what it left running."""
        self.watch()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.cleanup()

    def cleanup(self) -> None:
        stop_processes(sorted(self.seen))

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_cli(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
              log_name: str = "cli.log") -> Command:
    log = cwd / log_name
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sparsearch", *args], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **RAY_ENV, **(env or {})})
    return Command(proc=proc, log=log)


def run_cli_watched(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                    log_name: str = "cli.log") -> tuple[int, str]:
    """Runs the command to its end; returns (exit code, output)."""
    command = start_cli(args, cwd=cwd, env=env, log_name=log_name)
    code = command.wait()
    return code, command.output()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayCluster:
    """A head and a second node on loopback, one CPU each, started with ``ray start``."""

    address: str
    nodes: list[subprocess.Popen]

    def stop(self) -> None:
        pids = [p for node in self.nodes for p in descendants(node.pid)]
        stop_processes(pids + [node.pid for node in self.nodes])
        for node in self.nodes:
            node.wait(timeout=30)


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", *args,
                                 "--block"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **RAY_ENV})
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)
    return proc


@pytest.fixture(scope="session")
def ray_cluster():
    """Two Ray nodes on this machine, each with its own temp dir and agent ports.

    Own temp dirs keep the cluster out of /tmp/ray, where a plain ``ray.init()`` elsewhere on
    this machine would find and join it; short paths keep Ray's sockets under the limit.
    """
    port = free_port()
    nodes: list[subprocess.Popen] = []
    cluster = RayCluster(address=f"127.0.0.1:{port}", nodes=nodes)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    head_tmp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    node_tmp = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    try:
        nodes.append(_start_node(
            ["--head", f"--port={port}", "--include-dashboard=false",
             f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={head_tmp}",
             *common], Path(head_tmp) / "start.log"))
        nodes.append(_start_node(
            [f"--address={cluster.address}", f"--dashboard-agent-listen-port={free_port()}",
             f"--temp-dir={node_tmp}", *common], Path(node_tmp) / "start.log"))
        yield cluster
    finally:
        cluster.stop()
        for folder in (head_tmp, node_tmp):
            shutil.rmtree(folder, ignore_errors=True)


def study_trials(run_dir: Path, name: str = "tiny") -> list:
    """The Optuna trials of a search's study (in its run dir)."""
    from sparsearch.search.study import load_run_study

    return load_run_study(run_dir, name).get_trials(deepcopy=False)


def count_complete(run_dir: Path, name: str = "tiny") -> int:
    """COMPLETE trials in a running search's study (its journal is read, never written)."""
    from optuna.trial import TrialState

    from sparsearch.search.study import load_run_study

    try:
        study = load_run_study(run_dir, name)
    except (FileNotFoundError, KeyError):  # the search has not created its study yet
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def mlflow_trial_run_exists(tmp: Path, key: int) -> bool:
    """Whether the child run of trial ``key`` exists yet, read without MLflow."""
    try:
        with sqlite3.connect(f"file:{tmp / 'mlflow.db'}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT COUNT(*) FROM tags WHERE key = 'sparsearch.trial_key' "
                               "AND value = ?", (str(key),)).fetchone()
    except sqlite3.OperationalError:
        return False
    return bool(row[0])


def search_runs(uri: str, experiment: str = "tiny") -> tuple[list, list]:
    """(parent runs, child runs) of an MLflow experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sparsearch.role") == "search"]
    children = [r for r in runs if r.data.tags.get("sparsearch.role") == "trial"]
    return parents, children
