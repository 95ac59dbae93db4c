"""Failures a case can end in, each a status of its own in the results."""

from __future__ import annotations

STATUSES = ("ok", "skipped", "invalid", "oom", "compile_error", "non_finite", "unsupported", "error")


class CaseFailure(RuntimeError):
    status = "error"


class UnsupportedCase(CaseFailure):
    """The case cannot run here by design (an optimizer that does not support the device)."""

    status = "unsupported"


class NonFiniteLoss(CaseFailure):
    """The loss (or the forward output) is NaN or infinite: timing it would be meaningless."""

    status = "non_finite"


def classify(exc: BaseException) -> str:
    """The status for an exception raised while building, warming up or timing a case."""
    if isinstance(exc, CaseFailure):
        return exc.status
    text = str(exc).lower()
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text:
        return "oom"
    if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
        return "compile_error"
    return "error"
