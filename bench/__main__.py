"""Command line: ``python -m bench tune MODEL [...]`` finds the fastest configuration of one
model's phase (``bench.tune``). Measuring a selection is ``pytest bench`` (``nox -s bench``)."""

from __future__ import annotations

import sys

SUBCOMMANDS = ("tune",)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {given}; valid choices: {', '.join(SUBCOMMANDS)} "
              "(python -m bench tune MODEL; to measure a selection: pytest bench)", file=sys.stderr)
        return 2
    from .tune import main as tune

    return tune(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
