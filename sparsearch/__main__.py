"""``python -m sparsearch +experiment=NAME``: the Hydra entry point.

Kept light on purpose: ``--help`` must not import torch, mlflow or ray.
"""

from __future__ import annotations

import io
import re
import sys
from importlib import resources

import hydra

from sparsearch.config import register_configs

_CONF_DIR = str(resources.files("sparsearch.conf"))
# Lines of Hydra's composition errors that repeat what the first lines said.
_NOISE = ("HYDRA_FULL_ERROR", "full_key:", "reference_type=", "object_type=")


class _HeldStderr(io.TextIOBase):
    """Holds what is written to stderr until the task starts.

    A config that Hydra rejects (a bad override, an unknown key, a wrong type) then becomes
    one ``error:`` line and exit code 2, like every other bad input, instead of a block.
    """

    def __init__(self, real: io.TextIOBase) -> None:
        self.real = real
        self.held: list[str] = []
        self.passing = False

    def write(self, text: str) -> int:
        if self.passing:
            return self.real.write(text)
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def release(self) -> None:
        self.passing = True
        self.real.write("".join(self.held))
        self.held.clear()

    def one_line(self) -> str:
        text = "".join(self.held).split("Config search path:")[0]
        self.held.clear()
        if "Traceback (most recent call last)" in text:
            return _last_exception(text)
        lines = [ln.strip() for ln in text.splitlines()]
        return " ".join(ln for ln in lines if ln and not any(n in ln for n in _NOISE))


def _last_exception(text: str) -> str:
    """The final exception of a traceback Hydra printed before the task started.

    What fails there is Hydra creating the run dir or writing its files into it (.hydra/,
    the log file), so an OSError names the run dir.
    """
    found = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", text, flags=re.MULTILINE)
    if not found:
        return text.strip().splitlines()[-1]
    name, message = found[-1]
    if name in _OS_ERRORS:
        message = re.sub(r"^\[Errno \d+\] ", "", message)
        return (f"the run dir cannot be created or written ({message}); set hydra.run.dir to "
                f"a writable folder")
    return f"{name}: {message}"


_OS_ERRORS = {"OSError", "FileNotFoundError", "PermissionError", "NotADirectoryError",
              "IsADirectoryError", "FileExistsError"}
_stderr = _HeldStderr(sys.stderr)


@hydra.main(config_path=_CONF_DIR, config_name="config", version_base="1.3")
def _main(cfg) -> None:
    _stderr.release()
    sys.stderr = _stderr.real
    from sparsearch.app import run

    run(cfg)


def entry() -> None:
    """Console entry: Hydra's own config errors exit 2 with one line, as all bad input does."""
    register_configs()
    if "-v" in sys.argv[1:]:
        # -v is hydra.verbose=true: library messages stay on the terminal (sparsearch.terminal).
        sys.argv = [a for a in sys.argv if a != "-v"] + ["hydra.verbose=true"]
    sys.stderr = _stderr
    try:
        _main()
    except SystemExit as exit_:
        if not _stderr.passing:
            sys.stderr = _stderr.real
            if exit_.code == 1:
                print(f"error: {_stderr.one_line()}", file=sys.stderr)
                sys.exit(2)
            _stderr.release()
        raise
    finally:
        if not _stderr.passing:
            sys.stderr = _stderr.real
            _stderr.release()


if __name__ == "__main__":
    entry()
