"""Failures a case can end in, each a status of its own in the results."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a case ended. Stored as its value (a plain string) in every results file."""

    OK = "ok"  # measured
    SKIPPED = "skipped"  # cannot run here (no CUDA), by the environment, not the code
    INVALID = "invalid"  # measured, but the figures cannot be trusted (recompiled while timed)
    OOM = "oom"
    COMPILE_ERROR = "compile_error"
    NON_FINITE = "non_finite"
    WRONG_RESULT = "wrong_result"  # measured, but it computes something else than eager
    UNSUPPORTED = "unsupported"  # excluded by design (an optimizer that does not run on the device)
    NO_LOSS = "no_loss"  # the model gives no loss to train on (loss="own", but none in its output)
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    @property
    def measured(self) -> bool:
        return self in (Status.OK, Status.INVALID)

    @property
    def failed(self) -> bool:
        """A failure of the code under test (what a gate must not pass)."""
        return self not in (Status.OK, Status.SKIPPED, Status.UNSUPPORTED)


STATUSES = tuple(s.value for s in Status)
MAX_ERROR_CHARS = 2000


def clip_error(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """An error message short enough for a result row: its start (what went wrong; a worker's
    message comes first) and its end (a traceback's last lines name the exception)."""
    if len(message) <= limit:
        return message
    head = message[: limit // 4]
    tail_chars = limit - len(head) - 40  # room for the marker
    marker = f"\n[… {len(message) - len(head) - tail_chars} characters left out …]\n"
    return head + marker + message[-tail_chars:]


class CaseFailure(RuntimeError):
    status = Status.ERROR


class ReportedFailure(CaseFailure):
    """A failure another process reported with its status: an --isolate child, the valgrind
    worker, a rank."""

    def __init__(self, message: str, status: Status = Status.ERROR) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedCase(CaseFailure):
    """The case cannot run here by design (an optimizer that does not support the device)."""

    status = Status.UNSUPPORTED


class NonFiniteLoss(CaseFailure):
    """The loss (or the forward output) is NaN or infinite: timing it would be meaningless."""

    status = Status.NON_FINITE


class NoLoss(CaseFailure):
    """A model registered with ``loss="own"`` returned no loss (or gave nothing a criterion takes)."""

    status = Status.NO_LOSS


class WrongResult(CaseFailure):
    """The compiled, autocast or channels_last path differs from eager past the tolerance."""

    status = Status.WRONG_RESULT


def classify(exc: BaseException) -> Status:
    """The status for an exception raised while building, warming up or timing a case."""
    if isinstance(exc, CaseFailure):
        return exc.status
    text = str(exc).lower()
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text:
        return Status.OOM
    if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
        return Status.COMPILE_ERROR
    return Status.ERROR
