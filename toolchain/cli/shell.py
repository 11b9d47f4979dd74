"""What every command shares: the app, the two consoles, error handling, --json plumbing, the
declared options as typer parameters, and the why-not table."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgec.errors import EXIT_CODES, ConstraintViolation, EdgecError

if TYPE_CHECKING:
    from edgec.target import Violation

app = typer.Typer(
    name="edgec",
    help="Compile trained PyTorch ANNs and SNNs for edge hardware, with an energy report per target.\n\n"
    "Exit codes: " + ", ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)  # results
err = Console(stderr=True, soft_wrap=True)  # progress, warnings, errors (one line each)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="edgec.toml to read (default: ./edgec.toml if present)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]


def handle_errors(fn: F) -> F:
    """Turn EdgecErrors into one-line messages with their exit codes; keep tracebacks for bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConstraintViolation as exc:
            print_violations(exc.violations, console=err)
            fail(exc)
        except EdgecError as exc:
            fail(exc)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except typer.Exit:  # a command's own exit code (e.g. `check`: 4), not a bug
            raise
        except Exception as exc:
            if os.environ.get("EDGEC_DEBUG"):
                raise
            from edgec.errors import first_line

            err.print(
                f"[red]error:[/] internal error ({type(exc).__name__}: {escape(first_line(exc))}); "
                "rerun with EDGEC_DEBUG=1 for the traceback and report it",
                markup=True,
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def fail(exc: EdgecError) -> None:
    # one line: what is wrong, then what to do about it
    hint = f"; {exc.hint}" if exc.hint else ""
    err.print(f"[red]error:[/] {escape(exc.message)}{escape(hint)}", markup=True, highlight=False)
    raise typer.Exit(exc.exit_code)


class RichProgress:
    """edgec.progress.Progress on a rich progress bar (stderr)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            tid = bar.add_task(description, total=total)

            class _Task:
                def advance(self, n: int = 1) -> None:
                    bar.advance(tid, n)

            yield _Task()


# ---- --json: stdout holds only the JSON document ------------------------------------------------
@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[None]:
    """While a --json command works, everything written to stdout goes to stderr: Python prints
    and, where stdout is a real file, file descriptor 1 too (torch's C++ code and other native
    libraries print there, past ``sys.stdout``). :func:`emit_json` writes after it ends."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        real_fd: int | None = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        real_fd = None  # a test runner's captured stdout: Python-level only
    saved = os.dup(1) if real_fd == 1 else None
    try:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def write_atomic(path: Path, text: str) -> None:
    """Write a file the user named through a temporary sibling (never half-written)."""
    from edgec.errors import UsageError

    if not path.parent.is_dir():
        raise UsageError(f"cannot write '{path}': '{path.parent}' is not a directory")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# ---- declared options as typer parameters ---------------------------------------------------------
def _cli_type(opt: Any) -> Any:
    """The typer type of a declared option (parsing beyond typer's is the declaration's job)."""
    import typing

    base = opt.base
    if opt.info.kind in ("shape", "percent"):
        return str | None
    if opt.info.kind == "passes" or typing.get_origin(base) is list:
        return list[str] | None
    if base in (int, float, bool, str):
        return base | None
    return str | None


def with_options(*groups: type, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add the declared options of ``groups`` (edgec.config) to a command as flags, with their help
    and defaults; the command receives the ones given as a dict ``options`` (None: not given, so
    edgec.toml and the declared default apply)."""
    from edgec.options import declared

    decls = [o for cls in groups for o in declared(cls) if o.info.cli and o.key not in skip]
    seen: dict[str, Any] = {}
    for o in decls:
        seen.setdefault(o.key, o)
    decls = list(seen.values())

    def decorate(fn: F) -> F:
        import typing

        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # the command module's names resolved
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in sig.parameters.values()
            if p.name != "options"
        ]
        extra = []
        for o in decls:
            names = [o.flag, *o.info.aliases] + ([o.info.short] if o.info.short else [])
            default = "" if o.default in (None, [], {}) else f" (default: {_show(o.default, o.info.kind)})"
            extra.append(
                inspect.Parameter(
                    o.key,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[_cli_type(o), typer.Option(*names, help=o.info.help + default)],
                )
            )
        keys = [o.key for o in decls]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in keys if k in kwargs}
            given = {k: v for k, v in given.items() if v is not None and v != []}
            return fn(*args, options=given, **kwargs)

        new = sig.replace(parameters=[*params, *extra])
        wrapper.__signature__ = new  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in new.parameters.values()}
        del wrapper.__wrapped__  # typer reads the signature above, not the function's own
        return wrapper  # type: ignore[return-value]

    return decorate


def _show(value: Any, kind: str) -> str:
    if kind == "percent":
        return f"{value:.0%}"
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- why not: what a target cannot take ----------------------------------------------------------
def print_violations(violations: list[Violation], *, console: Console) -> None:
    """The why-not table, one row per rule and layer kind (with a count). Rule names are never
    broken; details and hints wrap. Piped to a file or a CI log it is plain lines."""
    from edgec.target import group_violations

    groups = group_violations(violations)
    title = f"why not: what the target cannot take ({len(violations)} finding(s)"
    title += f" in {len(groups)} group(s))" if len(groups) != len(violations) else ")"
    if not console.is_terminal:
        plain = {"highlight": False, "markup": False, "soft_wrap": True}  # whole lines: logs wrap them
        console.print(title, **plain)  # type: ignore[arg-type]
        for g in groups:
            console.print(f"- {g.layers}: {g.rule}{g.suffix}: {g.detail}", **plain)  # type: ignore[arg-type]
            console.print(f"  what to do: {g.hint}", **plain)  # type: ignore[arg-type]
        return
    table = Table(title=title, show_lines=True)
    table.add_column("layer", overflow="fold", ratio=2)
    table.add_column("rule", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    table.add_column("what to do", overflow="fold", ratio=3)
    for g in groups:
        table.add_row(escape(g.layers), escape(g.rule + g.suffix), escape(g.detail), escape(g.hint))
    console.print(table)
