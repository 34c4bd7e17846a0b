"""The per-layer kernel table: layer, shape, format, density, kernel and speedup per batch class."""

from __future__ import annotations

from typing import Any

__all__ = ["format_label", "kernel_table"]


def format_label(info: dict[str, Any]) -> str:
    """``bsr32x32``, ``nm1:8``, ``semi24``, ``csr``, ``dense``."""
    fmt, params = info["format"], info.get("params", {})
    if fmt == "bsr":
        return f"bsr{params['block'][0]}x{params['block'][1]}"
    if fmt == "nm":
        return f"nm{params['n']}:{params['m']}"
    return fmt


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _check_cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    if "dense_ms" not in entry:
        return "dense"
    return f"{entry['kept']} {entry['speedup']:.2f}x"


def kernel_table(manifest: dict[str, Any], record: dict[str, Any] | None = None) -> str:
    """Renders the dispatch of an export as a text table.

    Args:
        manifest: the export's manifest.
        record: a dispatch record (default: the manifest's first recorded device).

    Returns:
        One line per layer; a cell reads ``kernel speedup x`` (speedup vs dense, same run).
    """
    if record is None:
        records = manifest.get("dispatch", {})
        record = next(iter(records.values()), None)
    sizes = record["batch_sizes"] if record else manifest.get("batch_sizes", [])
    rows = [["layer", "shape", "format", "density", *[f"batch {b}" for b in sizes]]]
    for name, info in manifest["layers"].items():
        cells = []
        per_class = record["layers"].get(name, {}) if record else {}
        for b in sizes:
            entry = per_class.get(str(b))
            cells.append(f"{entry['kernel']} {entry['speedup']:.2f}x" if entry else "-")
        rows.append([name, "x".join(str(d) for d in info["shape"]), format_label(info),
                     f"{info['density']:.3f}", *cells])
    check = record.get("model_check", {}) if record else {}
    if check and "skipped" not in check:
        # The whole model against dense, after dispatch: what a caller actually gets.
        rows.append(["(whole model)", "", "", "",
                     *[_check_cell(check.get(str(b))) for b in sizes]])
    title = ""
    if record:
        machine = record["machine"]
        title = (f"kernels measured on {machine['device']} ({machine['name']}, "
                 f"{machine['threads']} threads), {record['dtype']}, {record['measured']}\n")
    return title + _render(rows)
