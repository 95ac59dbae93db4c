"""pytest's entry to the benchmarks: the command line, checked before anything imports torch.

pytest imports this file before it parses the command line, so it imports nothing heavy:
the options (``bench.matrix.options``) and, in ``pytest_configure``, the checks that need
no torch. A bad flag or path is refused there (exit status 2) in about a second. Only then is
the run's plug-in imported (``bench/plugin.py``: models, selection, runners, rows, summary)
and registered with pytest.
"""

from __future__ import annotations

import pytest

from bench.matrix import options


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the run folder and JSON path must exist before pytest-benchmark's own
    # pytest_configure reads --benchmark-json.
    if not hasattr(config.option, "bb_preset"):
        return
    try:
        checked = options.check(config.option)
        if writes_results(config):
            check_paths(config)
    except options.OptionError as exc:
        options.refuse(str(exc))
    from bench import plugin  # torch, the models and the runners: only for a command line that passed

    config.pluginmanager.register(plugin, plugin.PLUGIN_NAME)
    plugin.configure(config, checked)


def writes_results(config: pytest.Config) -> bool:
    """Whether the run writes a run folder: not --collect-only, not a dry run."""
    return not (config.option.collectonly or getattr(config.option, "benchmark_disable", False))


def check_paths(config: pytest.Config) -> None:
    """The folders and the history the run will write, refused (creating nothing) where they cannot be."""
    opt = config.option
    options.check_folder(*options.results_folder(opt))
    if not opt.bb_child:  # the parent of an --isolate run appends for its children
        from reports.history import HistoryError, check  # pandas, not torch

        try:
            check(options.history_db(opt), write=False)
        except HistoryError as exc:
            raise options.OptionError(str(exc)) from None

