"""TensorFlow's start-up lines kept out of the terminal (shown with ``cifarkit --debug``).

TensorFlow's C++ layer writes, on a machine without a GPU, "Could not find cuda drivers on
your machine", "failed call to cuInit: ... (303)", oneDNN and CPU-feature notices, each
behind "WARNING: All log messages before absl::InitializeLog() is called are written to
STDERR". ``TF_CPP_MIN_LOG_LEVEL`` filters only what is logged after TensorFlow's logging is set
up: the lines written while its shared libraries load go through absl's pre-initialisation
path, which ignores every threshold (abseil-cpp PRs #1718/#1957, unmerged). So the CLI imports
TensorFlow itself, and runs its device discovery (where cuInit fails), with file descriptor 2
redirected to a temporary file, then writes back every captured line that is not one of the
known start-up notices: a real error or warning still reaches the user. The library never
does this (it does not configure logging); commands that use TensorFlow call
:func:`quiet_tensorflow` before the library imports it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

from cifarkit.cli._common import state

#: The start-up notices TensorFlow prints on every CPU-only start (nothing a user can act on).
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|cuda_platform\.cc.*failed call to cuInit"
    r"|cuda_executor\.cc.*(?:could not find|no NUMA node)"
    r"|port\.cc.*oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc.*This TensorFlow binary is optimized"
    r"|^To enable the following instructions:.*rebuild TensorFlow with the appropriate"
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
)


def setup_environment() -> None:
    """Environment defaults for TensorFlow's C++ logging, set before anything imports it.

    Level 2 hides INFO and WARNING lines logged once TensorFlow is up and keeps its errors;
    a value the user set is kept; ``--debug`` sets nothing.
    """
    if not state.debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def filter_noise(text: str) -> str:
    """``text`` without the lines :data:`NOISE` matches."""
    kept = [line for line in text.splitlines(keepends=True) if not NOISE.search(line)]
    return "".join(kept)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_noise(tmp.read().decode("utf-8", errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def quiet_tensorflow() -> None:
    """Import TensorFlow and discover its devices with the start-up notices filtered out.

    A no-op with ``--debug`` (everything is shown), when TensorFlow is already imported, or
    when it is not installed (the library then raises its own error where it needs it).
    """
    if state.debug or "tensorflow" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    with _captured_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit attempt happens here, once
