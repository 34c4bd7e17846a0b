"""``python -m sparsearch.export PATH [--bench [--write]]``: an export's per-layer kernel table.

Without ``--bench`` the table is the dispatch recorded in the manifest; with ``--bench``
every kernel is timed again on this machine and the fresh table is printed; ``--write``
also records that dispatch in the manifest (replacing the one for this device), so that
``load`` uses it here: re-tune an export made on a busy machine once the machine is idle.
Bad input (a missing path, a directory that is not an export) prints one line on stderr
and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from sparsearch.export._manifest import MANIFEST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsearch.export",
                                     description="Show the per-layer kernel table of an export.")
    parser.add_argument("path", help="export directory written by sparsearch.export.save")
    parser.add_argument("--bench", action="store_true",
                        help="time every kernel again on this machine")
    parser.add_argument("--device", default="cpu", help="device to time on (with --bench)")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated batch-size classes (with --bench)")
    parser.add_argument("--min-run-time-s", type=float, default=0.1,
                        help="timing budget per kernel and class (with --bench)")
    parser.add_argument("--write", action="store_true",
                        help="record the fresh dispatch in the manifest (with --bench)")
    args = parser.parse_args(argv)
    if args.write and not args.bench:
        print("error: --write records what --bench measures: add --bench", file=sys.stderr)
        return 2

    from sparsearch.export._load import read_plan, rebuilt_model
    from sparsearch.export._manifest import ExportError, read_manifest
    from sparsearch.export._model_check import check_whole_model
    from sparsearch.export._plan import tune_plan
    from sparsearch.export._save import dispatch_record
    from sparsearch.export._table import kernel_table

    try:
        manifest = read_manifest(args.path)
        if not args.bench:
            print(kernel_table(manifest))
            return 0
        sizes = ([int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes
                 else manifest["batch_sizes"])
        if args.write and sorted(sizes) != sorted(manifest["batch_sizes"]):
            raise ExportError(f"not supported: --write with batch sizes {sorted(sizes)} other "
                              f"than the export's {sorted(manifest['batch_sizes'])}")
        plan, _ = read_plan(args.path, manifest)
        device = torch.device(args.device)
        dtype = getattr(torch, manifest.get("dtype", "float32"))
        tune_plan(plan, device=device, dtype=dtype, batch_sizes=sizes,
                  min_run_time_s=args.min_run_time_s, rounds=2, min_speedup=1.1)
        model = rebuilt_model(manifest, plan)
        check = (check_whole_model(model, plan, device=device, dtype=dtype, batch_sizes=sizes,
                                   min_run_time_s=args.min_run_time_s, rounds=2)
                 if model is not None else
                 {"skipped": "a user's own model: pass it to load(model=) to check it whole"})
        record = dispatch_record(plan, device=device, dtype=dtype, batch_sizes=sizes,
                                 model_check=check)
        if args.write:
            write_dispatch(args.path, manifest, device.type, record)
    except (ExportError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(kernel_table(manifest, record))
    if args.write:
        print(f"recorded this {device.type} dispatch in {Path(args.path) / MANIFEST}")
    return 0


def write_dispatch(path: str | Path, manifest: dict, device_type: str, record: dict) -> None:
    """Replaces one device's dispatch in the manifest; the file is swapped in whole."""
    target = Path(path) / MANIFEST
    updated = {**manifest, "dispatch": {**manifest.get("dispatch", {}), device_type: record}}
    staging = target.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
    try:
        staging.write_text(json.dumps(updated, indent=1, sort_keys=True) + "\n")
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.exit(main())
