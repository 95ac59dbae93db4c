"""Command line: ``python -m bench COMMAND``. Measuring a selection is ``pytest bench`` (``nox -s bench``).

- ``tune MODEL [...]``: the fastest configuration of one model's phase (``bench.commands.tune``);
- ``check-accuracy [...]``: the harness's medians against ``torch.utils.benchmark`` in the same
  process (``bench.commands.check_accuracy``);
- ``gpu-check [...]``: the suite's CUDA paths proved on a real GPU, a summary of each check
  (``bench.commands.gpu_check``).
"""

from __future__ import annotations

import sys

SUBCOMMANDS = ("tune", "check-accuracy", "gpu-check")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {given}; valid choices: {', '.join(SUBCOMMANDS)} "
              "(python -m bench tune MODEL; to measure a selection: pytest bench)", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    # Imported on demand: each command imports torch, the refusal above does not.
    if command == "tune":
        from bench.commands.tune import main as tune

        return tune(rest)
    if command == "gpu-check":
        from bench.commands.gpu_check import main as gpu_check

        return gpu_check(rest)
    from bench.commands.check_accuracy import main as check_accuracy

    return check_accuracy(rest)


if __name__ == "__main__":
    sys.exit(main())
