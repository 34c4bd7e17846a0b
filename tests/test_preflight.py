"""Paths and services that cannot be used fail in seconds with one line, before any work."""

from __future__ import annotations

import socket
import time

import pytest

from sparsearch.preflight import (
    PreflightError,
    check_mlflow_server,
    check_ray_address,
    check_writable_dir,
)
from tests.conftest import run_cli, tiny_search_args


def closed_port() -> int:
    """A local port with nothing listening on it (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_run_dir_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PreflightError) as err:
        check_writable_dir(blocker / "run", what="run dir", hint="set hydra.run.dir")
    assert f"run dir {blocker / 'run'} cannot be written (Not a directory)" in one_line(err)


def test_mlflow_server_with_nobody_behind_the_port_fails_at_once():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(PreflightError) as err:
        check_mlflow_server(f"http://127.0.0.1:{port}", timeout_s=10)
    assert time.monotonic() - started < 3
    assert "no MLflow server answers (Connection refused)" in one_line(err)


def test_mlflow_server_that_never_answers_fails_after_the_timeout():
    # A socket that accepts connections (the kernel's backlog does) but never replies: a
    # hung server or a black-holing proxy.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        started = time.monotonic()
        with pytest.raises(PreflightError) as err:
            check_mlflow_server(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout_s=1.0)
        waited = time.monotonic() - started
    assert 0.9 <= waited < 4
    assert "no answer within tracking.timeout_s=1 s" in one_line(err)


@pytest.mark.parametrize(("status", "refused"), [(503, True), (502, True), (404, False),
                                                 (401, False)])
def test_gateway_without_its_server_is_refused_other_answers_pass(status, refused):
    # A reverse proxy in front of the tracking server: a 5xx means no server behind it (and
    # MLflow would retry it for minutes); a 4xx comes from something that is there.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_error(status)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if refused:
            with pytest.raises(PreflightError) as err:
                check_mlflow_server(uri, timeout_s=5)
            assert f"answered /health with HTTP {status}" in one_line(err)
        else:
            check_mlflow_server(uri, timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()


def test_ray_address_with_no_cluster_fails_at_once():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(PreflightError) as err:
        check_ray_address(f"127.0.0.1:{port}", timeout_s=15)
    assert time.monotonic() - started < 3
    assert f"runner.address 127.0.0.1:{port}: no Ray cluster answers" in one_line(err)
    with pytest.raises(PreflightError):
        check_ray_address(f"ray://127.0.0.1:{port}", timeout_s=15)


def test_malformed_ray_address_names_the_forms():
    with pytest.raises(PreflightError, match="runner.address must be auto, HOST:PORT"):
        check_ray_address("no-port-here", timeout_s=1)


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "message"), [
    (["tracking.uri=sqlite:////proc/nope/mlflow.db"],
     "error: tracking.uri: the folder of MLflow database /proc/nope cannot be written"),
    (["tracking.uri=http://127.0.0.1:{port}"],
     "error: tracking.uri http://127.0.0.1:{port}: no MLflow server answers"),
    (["runner=ray", "runner.address=127.0.0.1:{port}"],
     "error: runner.address 127.0.0.1:{port}: no Ray cluster answers"),
], ids=["unwritable sqlite", "no mlflow server", "no ray cluster"])
def test_unusable_services_through_the_command(tmp_path, overrides, message):
    port = closed_port()
    started = time.monotonic()
    result = run_cli([*tiny_search_args(tmp_path), *[o.format(port=port) for o in overrides]],
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith(message.format(port=port)), lines
    assert time.monotonic() - started < 60  # seconds of imports on a busy machine, no retries
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_dir_that_hydra_cannot_create_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli([*tiny_search_args(tmp_path), f"hydra.run.dir={blocker}/run"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: the run dir cannot be created or written (Not a directory: '{blocker}/run'); "
        f"set hydra.run.dir to a writable folder"), result.stderr
