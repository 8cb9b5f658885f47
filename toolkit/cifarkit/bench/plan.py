"""What a bench run runs on: ``--backend`` (alias ``--runtime``) and ``--provider`` turned
into the sweep's ``Backend`` columns, each checked before any work is done.

A backend asked for by name (``openvino``, ``onnxruntime:cuda``, ``--provider cuda``) is
really used or the run fails naming it: a runtime that is not installed raises
``RuntimeUnavailableError``, a provider that does not become active ``ProviderError``. The
default sweep (``cpu`` + ``cuda`` (+ ``openvino`` in onnxruntime builds that have it)) and
``all`` record what cannot run here, with the reason, instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cifarkit.backends import REFERENCE
from cifarkit.bench.config import Backend
from cifarkit.errors import ProviderError, UsageError


def split_backends(
    backends: Sequence[str] | None, providers: Sequence[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """(runtimes, onnxruntime providers) of ``--backend`` and ``--provider``:
    ``["onnxruntime:cuda", "openvino"]`` → ``(["onnxruntime", "openvino"], ["cuda"])``, the
    providers of ``--provider`` first. Unknown names raise ``UsageError`` with the choices."""
    from cifarkit.backends import parse_backend

    if backends is None:
        return None, None if providers is None else list(providers)
    if not list(backends):
        raise UsageError("--backend: empty list")
    runtimes: list[str] = []
    asked = list(providers or ())
    for text in backends:
        if text == "all":
            runtimes.append(text)
            continue
        name, provider = parse_backend(text)
        runtimes.append(name)
        if provider is not None:
            asked.append(provider)
    explicit = providers is not None or bool(asked)
    return list(dict.fromkeys(runtimes)), list(dict.fromkeys(asked)) if explicit else None


def default_providers() -> list[str]:
    """``cpu`` and ``cuda`` always (cuda is then reported as unavailable where it can't run),
    plus ``openvino`` when this onnxruntime build contains it."""
    from cifarkit.backends import available_providers

    out = ["cpu", "cuda"]
    if "openvino" in available_providers():
        out.append("openvino")
    return out


def _unavailable_reason(provider: str, exc: Exception) -> str:
    from cifarkit.backends import provider_problem

    try:
        why = provider_problem(provider) if provider != "auto" else None
    except Exception:
        why = None
    return why or str(exc)


def check_providers(
    first_model: Path, providers: Sequence[str] | None, threads: int | None
) -> tuple[list[str], dict[str, str]]:
    """(active providers, {unavailable provider: reason}), each tried on ``first_model``.
    Explicit providers that are not active raise ``ProviderError``; the default sweep
    records them instead."""
    from cifarkit.backends import PROVIDERS, open_backend

    explicit = providers is not None
    wanted = list(dict.fromkeys(providers)) if providers is not None else default_providers()
    if explicit and not wanted:
        raise UsageError("--provider: empty list")
    for provider in wanted:
        if provider not in PROVIDERS:
            raise UsageError(f"unknown provider {provider!r}; choose one of: "
                             f"{', '.join(PROVIDERS)}")
    active: list[str] = []
    unavailable: dict[str, str] = {}
    for provider in wanted:
        try:
            model = open_backend(f"{REFERENCE}:{provider}", first_model, threads=threads)
        except ProviderError as exc:
            if explicit:
                raise
            unavailable[provider] = _unavailable_reason(provider, exc)
            continue
        name = model.provider  # "auto" resolves to the provider that became active
        model.close()
        if name not in active:
            active.append(name)
    if not active:  # pragma: no cover - the CPU provider is in every onnxruntime build
        raise ProviderError("no execution provider became active: " + "; ".join(
            f"{p}: {r}" for p, r in unavailable.items()))
    return active, unavailable


def check_runtimes(runtimes: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(runtimes to benchmark, {unavailable runtime: reason}). An explicitly named runtime
    that is not installed raises ``RuntimeUnavailableError``; ``all`` records it."""
    from cifarkit.backends import get_runtime, resolve_runtimes

    if runtimes is not None and not list(runtimes):
        raise UsageError("--backend: empty list")
    names = resolve_runtimes(list(runtimes) if runtimes else None)
    every = bool(runtimes) and "all" in runtimes
    active: list[str] = []
    unavailable: dict[str, str] = {}
    for name in names:
        rt = get_runtime(name)
        why = rt.problem()
        if why is None:
            active.append(name)
        elif every:
            unavailable[name] = why
        else:
            rt.require()  # raises, with the pip command
    return active, unavailable


def plan_backends(
    first_model: Path, runtimes: Sequence[str] | None, providers: Sequence[str] | None,
    threads: int | None,
) -> list[Backend]:
    """The sweep's columns, in report order (``BenchResult.backends``), after the checks
    above (``split_backends`` first turns ``onnxruntime:PROVIDER`` into ``providers``)."""
    active, missing = check_runtimes(runtimes)
    out: list[Backend] = []
    if REFERENCE in active:
        ok, unavailable = check_providers(first_model, providers, threads)
        out += [Backend(REFERENCE, p) for p in ok]
        out += [Backend(REFERENCE, p, why) for p, why in unavailable.items()]
    elif providers is not None:
        raise UsageError("--provider chooses onnxruntime's execution providers; add "
                         "onnxruntime to --backend to use it (or name onnxruntime:PROVIDER)")
    out += [Backend(name) for name in active if name != REFERENCE]
    out += [Backend(name, reason=why) for name, why in missing.items()]
    return out
