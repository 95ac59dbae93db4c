"""Test-only: a disk that is full, loaded into a benchmark run with ``-p tests.disk_plugin``.

``BLITZBENCH_DISK`` says how:

- ``free:BYTES``: ``shutil.disk_usage`` reports that many bytes free (the run's check before it starts);
- ``row:N``: the N-th result row reaches ``cases.jsonl`` but cannot be made durable (ENOSPC);
- ``json``: pytest-benchmark's ``benchmark.json`` is cut off halfway (ENOSPC).

No disk is filled: the error is raised where writing it would fail.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple

from pytest_benchmark.session import BenchmarkSession

from bench.schema.results import RunWriter

Usage = namedtuple("Usage", "total used free")


def no_space(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def report_free(free: int) -> None:
    real = shutil.disk_usage

    def disk_usage(path):
        total = real(path).total
        return Usage(total, total - free, free)

    shutil.disk_usage = disk_usage


def fail_row(number: int) -> None:
    original, calls = RunWriter.write, [0]

    def write(self: RunWriter, row: dict) -> None:
        calls[0] += 1
        if calls[0] != number:
            return original(self, row)
        real, os.fsync = os.fsync, no_space  # the line is in the file; making it durable fails
        try:
            return original(self, row)
        finally:
            os.fsync = real

    RunWriter.write = write


def cut_benchmark_json() -> None:
    def save_json(self: BenchmarkSession, output_json: dict) -> None:
        with open(self.json, "wb") as fh:
            fh.write(b'{"machine_info": {"node": ')  # what a write cut short leaves
        no_space()

    BenchmarkSession.save_json = save_json


_KIND, _, _VALUE = os.environ.get("BLITZBENCH_DISK", "").partition(":")
if _KIND == "free":
    report_free(int(_VALUE))
elif _KIND == "row":
    fail_row(int(_VALUE))
elif _KIND == "json":
    cut_benchmark_json()
