"""``python -m reports.tensorboard [FOLDER] [--port N]``: view profiler traces in TensorBoard.

Serves FOLDER (default ``results``) with TensorBoard and the torch-tb-profiler plugin on
127.0.0.1 only, and prints the URL to open. The folder, its traces and the port are
checked first, so a bad one gets a message and exit status 2, never a traceback.
Each ``<run>/traces/<case>`` folder is one TensorBoard run, named by its path below FOLDER.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bench.schema.files import DEFAULT_RESULTS_DIR

from .files import TraceError, check_traces

HOST = "127.0.0.1"  # never all interfaces: the traces are the user's, the server has no auth
DEFAULT_PORT = 6006
PLUGIN_NAME = "pytorch_profiler"
EXIT_BAD_INPUT = 2


class ViewerError(ValueError):
    """Something the user can fix (folder, port, missing package); the message says what."""


def check_port(port: int, host: str = HOST) -> None:
    """Refuse a port outside 0-65535 or one a server already listens on (0: any free port)."""
    if not 0 <= port <= 65535:
        raise ViewerError(f"invalid port {port}; valid ports are 1-65535, or 0 for any free port")
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do: a port left in TIME_WAIT by a stopped server counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else f"not usable ({exc.strerror})"
            raise ViewerError(f"port {port} on {host} is {reason}; choose another with --port "
                              "(--port 0 picks a free one)") from None


def plugins() -> list[Any]:
    """TensorBoard's plugins with torch-tb-profiler among them, or a message how to install it."""
    try:
        from tensorboard import default
        import torch_tb_profiler  # noqa: F401  (registers the 'pytorch_profiler' entry point)
    except ImportError as exc:
        raise ViewerError(f"{exc.name or exc} is not installed: the viewer needs tensorboard and "
                          "torch-tb-profiler (pip install -e '.[profile]', or run `nox -s tensorboard`)"
                          ) from None
    found = default.get_plugins()
    # TensorBoard < 2.11 leaves entry-point plugins out of get_plugins(): add them once.
    extra = [p for p in getattr(default, "get_dynamic_plugins", list)() if p not in found]
    return found + extra


def launch(logdir: Path, port: int) -> str:
    """Start TensorBoard in a background thread of this process; return its URL."""
    from tensorboard import program
    from tensorboard.plugins.base_plugin import FlagsError

    board = program.TensorBoard(plugins=plugins())
    try:
        board.configure(argv=[None, "--logdir", str(logdir), "--host", HOST, "--port", str(port)])
        return board.launch()
    except (FlagsError, program.TensorBoardServerException) as exc:
        raise ViewerError(f"TensorBoard could not start: {getattr(exc, 'msg', exc)}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.tensorboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=Path(DEFAULT_RESULTS_DIR),
                        help=f"results folder, one run, or one trace folder (default: {DEFAULT_RESULTS_DIR})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on {HOST} (default: {DEFAULT_PORT}; 0 picks a free one)")
    args = parser.parse_args(argv)
    try:
        traces = check_traces(args.folder)
        check_port(args.port)
        plugins()  # before TensorBoard's own start-up noise, so the message stands out
        url = launch(args.folder.resolve(), args.port)
    except (TraceError, ViewerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"TensorBoard serves {len(traces)} trace{'s' if len(traces) != 1 else ''} from {args.folder}")
    print(f"open {url}#{PLUGIN_NAME}  (Ctrl-C stops the server)")
    # The plugin's page waits for Google Charts from the internet before it draws anything.
    print("note: the profiler pages load Google Charts from www.gstatic.com and stay empty "
          "without internet access; offline, each run's report.html (Profiles: where a step goes, "
          "a timeline per case) and `nox -s trace-diff -- BASE CURRENT` read the same traces; "
          "the .pt.trace.json.gz files also open in Perfetto (ui.perfetto.dev)", flush=True)
    # Ctrl-C (SIGINT) or a service manager's SIGTERM: stop quietly, with success.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
