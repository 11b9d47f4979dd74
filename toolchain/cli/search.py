"""``edgec search``: the accuracy x energy Pareto front over compression recipes and targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgec.cli.shell import (
    ConfigOpt,
    JsonOpt,
    app,
    emit_json,
    err,
    handle_errors,
    json_stdout,
    out,
    with_options,
)
from edgec.config import SearchOptions


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.2%}"


def _uj(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


#: rows of the live table (the latest; the count of all is in its caption)
LIVE_ROWS = 30


def _trials_table(trials: list[Any], targets: list[str]) -> Table:
    """The live table of finished trials (a terminal only): the latest :data:`LIVE_ROWS`."""
    table = Table(
        title="edgec search: finished trials",
        caption=f"{len(trials)} finished"
        + (f", latest {LIVE_ROWS} shown" if len(trials) > LIVE_ROWS else ""),
    )
    for col in ("trial", "recipes", "T", "state"):
        table.add_column(col, justify="left" if col in ("recipes", "state") else "right")
    for name in targets:
        table.add_column(f"{name} accuracy", justify="right")
        table.add_column(f"{name} µJ", justify="right")
    for t in trials[-LIVE_ROWS:]:
        cells = []
        for name in targets:
            row = t.targets.get(name) or {}
            if t.state == "complete" and not row.get("feasible"):
                cells += ["infeasible", "-"]
            else:
                cells += [_pct(row.get("accuracy")), _uj(row.get("energy_uj"))]
        state = t.state + (f" ({t.reason})" if t.reason else "")
        if t.reused_from is not None:
            state += f" (= trial {t.reused_from})"
        table.add_row(str(t.number), " + ".join(t.recipes), str(t.timesteps or "-"), state, *cells)
    return table


@app.command("search")
@handle_errors
@with_options(SearchOptions)
def search_cmd(
    model: Annotated[str, typer.Argument(help="model file, zoo:NAME, or a compressed program directory")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="search directory (the same one resumes a search)")
    ] = Path("edgec-out/search"),
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    options: dict[str, Any] | None = None,
) -> None:
    """Search compression recipes (x time steps) for the accuracy x energy Pareto front on each target.

    Each trial compresses MODEL with the shared fine-tuning loop, compiles it for every --target and
    measures the deployed artifact (accuracy on held-out data, energy per inference, bytes). Writes
    OUT/search.json, report.md, report.html and the front's artifacts (OUT/trials/trial-N/TARGET).
    """
    from edgec.options import build
    from edgec.search.runner import search

    cfg = build(SearchOptions, options or {}, config=config, style="cli")
    targets = [t.strip() for t in (cfg.target or "").split(",") if t.strip()]

    def live(t: Any) -> None:  # one line per finished trial, on stderr (stdout stays for the result)
        cells = []
        for name in targets:
            row = t.targets.get(name) or {}
            if t.state != "complete":
                cells.append(f"{name}: -")
            elif not row.get("feasible"):
                cells.append(f"{name}: infeasible")
            else:
                cells.append(f"{name}: {_pct(row.get('accuracy'))}, {_uj(row.get('energy_uj'))} µJ")
        why = f" ({t.reason})" if t.reason else ""
        err.print(
            f"trial {t.number:>3} {' + '.join(t.recipes)} T={t.timesteps or '-'}: {t.state}{why}; "
            + "; ".join(cells),
            highlight=False,
            markup=False,
        )

    with json_stdout(as_json):
        if not as_json and err.is_terminal:  # a live table of the finished trials, redrawn in place
            from rich.live import Live

            finished: list[Any] = []
            with Live(_trials_table(finished, targets), console=err, refresh_per_second=4) as board:

                def redraw(t: Any) -> None:
                    finished.append(t)
                    board.update(_trials_table(finished, targets))

                result = search(model, out=output, config=cfg, on_trial=redraw)
        else:  # a pipe, a log file, --json: one plain line per finished trial (or nothing)
            result = search(model, out=output, config=cfg, on_trial=None if as_json else live)
    if as_json:
        emit_json(result.document)
        return
    for name in result.targets:
        table = Table(title=f"Pareto front on {name} ({', '.join(result.objectives)})")
        for col in ("trial", "recipes", "T", "accuracy", "µJ / inference", "bytes"):
            table.add_column(col, justify="left" if col == "recipes" else "right")
        rows = result.front_trials(name)
        for t in sorted(rows, key=lambda t: t.targets[name].get("energy_uj") or 0.0):
            r = t.targets[name]
            table.add_row(
                str(t.number),
                " + ".join(t.recipes),
                str(t.timesteps or "-"),
                _pct(r.get("accuracy")),
                _uj(r.get("energy_uj")),
                "-" if r.get("bytes") is None else f"{r['bytes']:,}",
            )
        if rows:
            out.print(table)
        else:
            out.print(f"no feasible trial on {name} (reasons in {result.path}/report.md)", highlight=False)
    for ref in result.document.get("references") or []:
        cells = []
        for name in result.targets:
            r = ref["targets"].get(name) or {}
            if ref["state"] != "complete" or not r.get("feasible"):
                cells.append(f"{name}: {r.get('reason') or ref.get('reason') or 'infeasible'}")
                continue
            better = ", ".join(map(str, ref["matched_by"].get(name, []))) or "none"
            cells.append(
                f"{name}: {_pct(r.get('accuracy'))}, {_uj(r.get('energy_uj'))} µJ "
                f"(front trials at least as good: {better})"
            )
        out.print(f"reference {ref['label']}: " + "; ".join(cells), highlight=False, markup=False)
    timing = result.timing
    out.print(
        f"{len(result.trials)} trials -> {result.path}/search.json, report.md, report.html "
        f"(search overhead {100 * (timing.get('overhead_share') or 0):.2f} % of {timing.get('wall_s')} s)",
        highlight=False,
    )
