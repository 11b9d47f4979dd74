"""The report as rich tables in the terminal: totals, targets compared, the costliest layers, the gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.report import rows as R

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from edgec.energy.gate import GateResult
    from edgec.report.document import Report


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    return table


def render_terminal(
    report: Report, console: Console, *, gate: GateResult | None = None, top: int = 25
) -> None:
    from rich.markup import escape
    from rich.table import Table

    prog = report.program
    console.print(
        f"[bold]{escape(prog['name'])}[/] ({prog['kind']}, input {prog['input_shape']}) -> target "
        f"[bold]{escape(report.target)}[/]",
        highlight=False,
    )
    energy = report.energy
    if not energy:
        console.print("no energy section in this report (the target declares no cost table)")
    else:
        console.print(_table("per inference", R.SUMMARY_HEADERS, R.summary_rows(energy)))
        comparison = R.comparison_rows(energy)
        if comparison:
            rows = [[("* " if cur else "") + c[0], *c[1:]] for cur, c in comparison]
            console.print(
                _table("comparison across targets (same counts; * this report)", R.COMPARISON_HEADERS, rows)
            )
        layers = R.layer_rows(energy)
        lt = Table(
            title=f"top {min(top, len(layers))} of {len(layers)} layers by energy", title_justify="left"
        )
        for h in R.layer_headers(report.spiking):
            if h == "layer":
                lt.add_column(h, overflow="fold", ratio=3, min_width=20)
            elif h == "type":
                lt.add_column(h, overflow="ellipsis", no_wrap=True, ratio=1, max_width=12)
            else:
                lt.add_column(h, justify="right", no_wrap=True)
        for r in sorted(layers, key=lambda r: -r.energy_pj)[:top]:
            lt.add_row(*R.layer_cells(r, spiking=report.spiking))
        console.print(lt)
        console.print(
            f"table {energy['table']['ref']}: {energy['table']['title']}. Estimates are counts x cited "
            "prices; `--format md|html|json` for sources, caveats and every layer.",
            highlight=False,
        )
        for n in energy.get("notes", []):
            console.print(f"note: {n}", highlight=False, markup=False)
    if gate is not None:
        gt = Table(
            title=f"regression gate vs {gate.baseline} (max +{gate.max_increase:.1%})", title_justify="left"
        )
        for h in R.GATE_HEADERS:
            gt.add_column(h)
        for failed, cells in R.gate_rows(gate, units=False):
            gt.add_row(*cells[:-1], f"[red]{cells[-1]}[/]" if failed else cells[-1])
        console.print(gt)
        for n in gate.notes:
            console.print(f"note: {n}", highlight=False, markup=False)
