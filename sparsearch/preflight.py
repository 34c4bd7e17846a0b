"""Checks of the paths and services a search needs, before any run is opened or trained.

Each fault is a ``PreflightError``: one line naming the path or service and the cause, which
the app prints as ``error: ...`` with exit code 2, like bad input. Without these checks a
run dir that cannot be written fails after the dense baseline has trained, a sqlite URI in
a read-only place fails in MLflow's migrations with a long traceback, and an MLflow server
or Ray address with nobody behind it retries silently for minutes.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from sparsearch.config import ConfigError, SparsearchConfig

__all__ = ["PreflightError", "check_environment", "check_mlflow_server", "check_ray_address",
           "check_writable_dir"]


class PreflightError(ConfigError):
    """A path or service the search needs is not usable (exit code 2, one line)."""


def _cause(err: OSError) -> str:
    return err.strerror or type(err).__name__


def check_writable_dir(path: Path, *, what: str, hint: str) -> None:
    """Creates ``path`` if needed and writes, syncs and removes a probe file in it.

    The probe goes through the same calls a trial's files do, so a read-only mount, a
    missing permission or a full disk are all found here.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".sparsearch-probe-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"probe")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        raise PreflightError(f"{what} {path} cannot be written ({_cause(err)}); {hint}") from None


def _check_sqlite(uri: str) -> None:
    db = Path(uri[len("sqlite:///"):]).expanduser()
    hint = "set tracking.uri=sqlite:///A/WRITABLE/PATH.db"
    if db.is_dir():
        raise PreflightError(f"tracking.uri: {db} is a folder, not a database file; {hint}")
    # sqlite writes a journal beside the database and MLflow its artifacts there too.
    check_writable_dir(db.parent, what="tracking.uri: the folder of MLflow database", hint=hint)
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise PreflightError(f"tracking.uri: MLflow database {db} cannot be written "
                             f"(Permission denied); {hint}")


def check_mlflow_server(uri: str, *, timeout_s: float) -> None:
    """Asks an MLflow server's ``/health`` and waits at most ``timeout_s`` for the answer."""
    url = uri.rstrip("/") + "/health"
    hint = "start it (mlflow server) or set tracking.uri to another server or a sqlite:/// path"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http(s) only)
            response.read(64)
    except urllib.error.HTTPError as err:
        # Something answers: an auth refusal or a proxy's 404 for /health reads clearer from
        # MLflow's own requests. A 5xx is a gateway without its server, which MLflow would
        # retry for minutes.
        if err.code < 500:
            return
        raise PreflightError(f"tracking.uri {uri}: the server answered /health with "
                             f"HTTP {err.code} ({err.reason}); {hint}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, (TimeoutError, socket.timeout)) \
                or time.monotonic() - started >= timeout_s:
            cause = f"no answer within tracking.timeout_s={timeout_s:g} s"
        elif isinstance(reason, OSError):
            cause = _cause(reason)
        else:
            cause = str(reason)
        raise PreflightError(f"tracking.uri {uri}: no MLflow server answers ({cause}); "
                             f"{hint}") from None


def _ray_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``ray://HOST[:PORT]`` or ``auto`` -> where to knock."""
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].partition(":")
        return host, int(port or 10001)  # the Ray client server's default port
    if address == "auto" or not address:
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address(address)
        except ConnectionError:
            resolved = None
        if resolved is None:
            raise PreflightError("runner.address=auto: no running Ray cluster found on this "
                                 "machine; start one (ray start --head) or set "
                                 "runner.address=HOST:PORT")
        address = resolved
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PreflightError(f"runner.address must be auto, HOST:PORT or ray://HOST:PORT, "
                             f"got {address!r}")
    return host.strip("[]"), int(port)


def check_ray_address(address: str, *, timeout_s: float) -> None:
    """Opens a TCP connection to the cluster's GCS (or client server) within ``timeout_s``.

    ``ray.init`` itself retries an address with nobody behind it for minutes, silently.
    """
    host, port = _ray_host_port(address)
    hint = "start the cluster (ray start --head) or fix runner.address"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except TimeoutError:
        raise PreflightError(f"runner.address {address}: no Ray cluster answers within "
                             f"runner.connect_timeout_s={timeout_s:g} s; {hint}") from None
    except OSError as err:
        raise PreflightError(f"runner.address {address}: no Ray cluster answers "
                             f"({_cause(err)}); {hint}") from None


def check_environment(cfg: SparsearchConfig, run_dir: Path) -> None:
    """Every check a search needs, cheapest first.

    Raises:
        PreflightError: the first fault, in one line.
    """
    check_writable_dir(run_dir, what="run dir",
                       hint="set hydra.run.dir to a writable folder")
    uri = cfg.tracking.uri
    if uri.startswith("sqlite:///"):
        _check_sqlite(uri)
    elif uri.startswith(("http://", "https://")):
        # MLflow's client reads its per-request timeout from here; a user's setting wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(cfg.tracking.timeout_s))))
        check_mlflow_server(uri, timeout_s=cfg.tracking.timeout_s)
    if cfg.runner.kind == "ray" and cfg.runner.address is not None:
        check_ray_address(cfg.runner.address, timeout_s=cfg.runner.connect_timeout_s)
