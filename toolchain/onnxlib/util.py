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
def quiet(*, fds: bool = True) -> Iterator[None]:
    """Silence what torch's exporters and ORT's tools print: Python warnings, logging below ERROR
    (ORT's quantizer logs through the root logger), ORT's C++ log below ERROR, and with ``fds``
    the file descriptors 1 and 2 too: the TorchScript exporter dumps the whole Torch IR graph from
    C++ when it fails. Not ``fds`` around long steps that a progress bar on stderr reports."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    root = logging.getLogger()
    level = root.level
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)] if fds else []
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root.setLevel(logging.ERROR)
            if fds:
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        root.setLevel(level)
        for fd, saved_fd in zip((1, 2), saved, strict=False):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
