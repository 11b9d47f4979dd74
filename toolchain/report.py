"""Render an artifact's report.json as Markdown (for CI comments and humans)."""

from __future__ import annotations

from typing import Any


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    prog = report["program"]
    src = prog["source"]
    where = src.get("path") or (f"zoo:{src['arch']}" if src["format"] == "zoo" else src["format"])
    digest = f", sha256 {src['sha256'][:12]}" if src.get("sha256") else ""
    out = [
        f"# edgec report: {prog['name']} -> {report['target']}",
        "",
        f"- source: `{where}` ({src['format']}{digest})",
        f"- kind: {prog['kind']}, input shape {prog['input_shape']}"
        + (f", {prog['timesteps']} timesteps" if prog["kind"] == "snn" else ""),
        f"- edgec {report['edgec_version']}, schema_version {report['schema_version']}, "
        f"created {report['created']}",
        "",
        "## Files",
        "",
        *_table(
            ["role", "file", "size", "sha256"],
            [[r, f["path"], _fmt_bytes(f["bytes"]), f["sha256"][:12]] for r, f in report["files"].items()],
        ),
    ]
    if report.get("passes"):
        out += ["", "## Passes", ""]
        out += _table(
            ["pass", "modified", "duration (s)", "stats"],
            [[p["name"], p["modified"], p["duration_s"], p["stats"]] for p in report["passes"]],
        )
    tr = report.get("target_report") or {}
    if tr:
        out += ["", "## Target", ""]
        out += _table(
            ["key", "value"], [[k, _short(v)] for k, v in tr.items() if not isinstance(v, (dict, list))]
        )
        for key, value in tr.items():
            if (
                isinstance(value, dict)
                and value
                and all(not isinstance(v, (dict, list)) for v in value.values())
            ):
                out += ["", f"### {key}", ""]
                out += _table(["key", "value"], [[k, _short(v)] for k, v in value.items()])
    if report.get("verify"):
        v = report["verify"]
        out += ["", "## Verification", "", f"{'PASSED' if v['passed'] else 'FAILED'}: {v['summary']}"]
    out.append("")
    return "\n".join(out)


def _short(v: Any) -> str:
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return s if len(s) < 120 else s[:117] + "..."
