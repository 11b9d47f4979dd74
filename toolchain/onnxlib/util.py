"""Small shared helpers of edgec.onnxlib: quiet library calls, clean messages."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean(text: str) -> str:
    """``text`` without terminal colour codes (torch's exporter colours its messages)."""
    return _ANSI.sub("", text)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what torch's exporters and ORT's tools print, down to the file descriptors: the
    TorchScript exporter dumps the whole Torch IR graph from C++ when it fails, and onnxscript's
    optimizer prints progress lines; neither may reach a user's (possibly --json) stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    root = logging.getLogger()
    level = root.level
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root.setLevel(logging.ERROR)  # ORT's quantizer logs through the root logger
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        root.setLevel(level)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
