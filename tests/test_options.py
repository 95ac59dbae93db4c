"""The command line, checked before anything imports torch (``bench.matrix.options``).

In-process and torch-free: each command line is parsed as pytest would (our options and
pytest-benchmark's, with their own parsers), then checked. The real command is run, for a
few of them, in tests/test_bench_run.py.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark import plugin as benchmark_plugin

from bench.matrix import options
from reports.history import HistoryError, check as check_history
from tests.helpers import NO_TORCH, ROOT


class CommandLine:
    """argparse behind the two calls a ``pytest_addoption`` makes (``getgroup``, ``addoption``)."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(exit_on_error=False)

    def getgroup(self, name: str, description: str = "") -> CommandLine:
        return self

    def addoption(self, *flags: str, **settings: object) -> None:
        self.parser.add_argument(*flags, **settings)


def parse(*args: str) -> argparse.Namespace:
    cli = CommandLine()
    options.add_options(cli)
    benchmark_plugin.pytest_addoption(cli)
    return cli.parser.parse_args(list(args))


@pytest.mark.parametrize(("args", "message"), [
    # the selection's axes and preset
    (["--devices", "tpu"], "unknown value 'tpu' for --devices; valid choices: cpu, cuda"),
    (["--preset", "huge"], "unknown preset 'huge'; valid choices: smoke, default, full"),
    (["--batch-sizes", "64,-1"], "invalid value '-1' for --batch-sizes"),
    (["--amp", "float8"], "unknown value 'float8' for --amp; valid choices: off, bfloat16, float16"),
    (["--shard", "3/2"], "invalid --shard value '3/2': shard 3 of 2 does not exist"),
    # the passes' options
    (["--profile", "--profile-schedule", "1,2"], "invalid --profile-schedule '1,2'"),
    (["--max-batch", "--max-batch-memory", "lots"], "invalid memory size 'lots'"),
    (["--max-batch-memory", "1GB"], "--max-batch-memory is given without --max-batch"),
    (["--max-batch", "--max-batch-limit", "0"], "invalid value '0' for --max-batch-limit"),
    (["--metric", "cycles"], "unknown value 'cycles' for --metric; valid choices: time, instructions"),
    (["--metric", "instructions", "--isolate"], "does not combine with --isolate or --profile"),
    (["--metric", "instructions", "--distributed", "ddp"], "--distributed times steps; it does not combine"),
    (["--count-repeats", "0"], "invalid value '0' for --count-repeats"),
    (["--count-timeout", "-5"], "invalid value '-5' for --count-timeout; expected seconds > 0"),
    (["--nproc", "2"], "--nproc applies to distributed cases; add --distributed ddp"),
    (["--distributed", "ddp", "--nproc", "0"], "invalid value '0' for --nproc"),
    # the data phases
    (["--data-size", "0"], "invalid value '0' for --data-size; expected an integer of at least 1"),
    (["--epochs", "x"], "invalid value 'x' for --epochs"),
    (["--dataset", "CIFAR10"], "unknown value 'CIFAR10' for --dataset; valid choices: FashionMNIST, MNIST"),
    # pytest-benchmark's own, where its parser lets nonsense through
    (["--benchmark-max-time", "-1"], "invalid value -1 for --benchmark-max-time; expected seconds >= 0"),
    (["--benchmark-max-time", "nan"], "invalid value NaN for --benchmark-max-time"),
    (["--benchmark-min-time", "-0.001"], "invalid value -0.001 for --benchmark-min-time; expected seconds >= 0"),
    (["--benchmark-warmup-iterations", "-3"], "invalid value -3 for --benchmark-warmup-iterations"),
    (["--benchmark-calibration-precision", "0"], "invalid value 0 for --benchmark-calibration-precision"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_a_bad_value_is_refused_naming_it(args, message):
    with pytest.raises(options.OptionError) as refused:
        options.check(parse(*args))
    assert message in str(refused.value)


@pytest.mark.parametrize("workers", [2, "auto"])
def test_parallel_workers_are_refused_naming_the_value_and_the_shard_option(workers):
    """pytest-xdist's -n (where it is installed): the workers would time side by side and
    pytest-benchmark turns itself off under xdist; -n 0 is a plain run."""
    option = parse()
    option.numprocesses = workers
    with pytest.raises(options.OptionError) as refused:
        options.check(option)
    assert f"invalid value {workers} for -n (pytest-xdist)" in str(refused.value)
    assert "valid: -n 0 or no -n" in str(refused.value) and "--shard i/N" in str(refused.value)
    option.numprocesses = 0
    options.check(option)


def test_the_checks_run_without_torch():
    """The same checks the command runs, in a Python where importing torch fails."""
    code = NO_TORCH + (
        "from tests.test_options import parse\nfrom bench.matrix import options\n"
        "for args in (['--devices', 'tpu'], ['--benchmark-max-time', '-1'], ['--data-size', '0']):\n"
        "    try:\n        options.check(parse(*args))\n    except options.OptionError as exc:\n"
        "        print(exc)\n"
        "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 3


def test_values_are_parsed_once_for_the_run():
    checked = options.check(parse("--devices", "cpu,cuda", "--batch-sizes", "32,32,64", "--shard", "2/3",
                                  "--profile", "--profile-schedule", "0,1,2", "--max-batch",
                                  "--max-batch-memory", "2GiB", "--distributed", "ddp", "--nproc", "2",
                                  "--data-size", "640", "--epochs", "2"))
    assert checked.axes["devices"] == ("cpu", "cuda") and checked.axes["batch_sizes"] == (32, 64)
    assert "models" not in checked.axes  # a registry axis: parsed once the models are imported
    assert checked.shard == (2, 3) and checked.profile_schedule == (0, 1, 2)
    assert checked.max_batch == (2 * 2**30, None)  # None: the pass's own default limit
    assert (checked.distribution.nproc, checked.distribution.world) == (2, 2)
    assert (checked.data_size, checked.epochs, checked.count_repeats) == (640, 2, None)
    plain = options.check(parse())
    assert plain.profile_schedule is None and plain.max_batch is None and plain.shard is None


def test_a_model_module_that_is_missing_or_does_not_parse_is_named_without_running_it(tmp_path, monkeypatch):
    (tmp_path / "broken_models.py").write_text("import torch\n\ndef net(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(options.OptionError) as refused:
        options.check(parse("--model-module", "broken_models"))
    assert str(refused.value).startswith(
        f"--model-module broken_models: cannot import it: {tmp_path / 'broken_models.py'}, line 3: SyntaxError:")
    with pytest.raises(options.OptionError, match="--model-module no_such_models_pkg: cannot import it "
                                                  r"\(ModuleNotFoundError"):
        options.check(parse("--model-module", "no_such_models_pkg"))


def test_a_folder_that_cannot_be_one_is_refused_creating_nothing(tmp_path):
    (tmp_path / "afile").touch()
    with pytest.raises(options.OptionError, match=f"--results-dir {tmp_path}/afile: is a file, not a folder"):
        options.check_folder(tmp_path / "afile", "--results-dir")
    with pytest.raises(options.OptionError, match=f"--run-dir {tmp_path}/afile/run: cannot create this folder"):
        options.check_folder(tmp_path / "afile" / "run", "--run-dir")
    options.check_folder(tmp_path / "new" / "results", "--results-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    # What only creating shows (a pseudo file system), when the run creates its folder.
    with pytest.raises(options.OptionError, match="--results-dir /proc/nope: cannot create this folder"):
        options.make_folder(Path("/proc/nope"), "--results-dir")


@pytest.mark.parametrize(("where", "message"), [
    ("folder", "{tmp}/folder.sqlite: is a folder"),
    ("garbage", "{tmp}/garbage.sqlite: not an SQLite database"),
    ("url", "unsupported history location 'mysql://h/db'"),
])
def test_a_history_that_cannot_be_one_is_refused_before_torch_writing_nothing(tmp_path, where, message):
    (tmp_path / "folder.sqlite").mkdir()
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database")
    db = {"folder": tmp_path / "folder.sqlite", "garbage": tmp_path / "garbage.sqlite", "url": "mysql://h/db"}[where]
    with pytest.raises(HistoryError, match=message.format(tmp=tmp_path)):
        check_history(db, write=False)
    assert (tmp_path / "garbage.sqlite").read_bytes() == b"not a database"
    check_history(tmp_path / "new.sqlite", write=False)
    assert not (tmp_path / "new.sqlite").exists()  # the read-only check creates nothing


@pytest.mark.parametrize("db", ["/proc/nope/h.sqlite", "/sys/h.sqlite"])
def test_a_history_that_only_creating_shows_unusable_is_refused(db):
    with pytest.raises(HistoryError, match=db):
        check_history(db)


def module_imports(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports when it is imported (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


def source(module: str) -> Path | None:
    """The file of one of our modules (a package's __init__.py); None for a name in a module."""
    base = ROOT / module.replace(".", "/")
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def test_pytest_reaches_the_checks_through_modules_that_import_no_torch():
    """bench/conftest.py and what it imports at module level, down the tree: no torch, no
    torchvision, no models (which imports both); the run's plug-in is imported inside a function."""
    seen: set[str] = set()
    todo = ["bench.conftest"]
    while todo:
        module = todo.pop()
        path = source(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        imports = module_imports(path)
        heavy = {m for m in imports if m.split(".")[0] in ("torch", "torchvision", "models")}
        assert not heavy, f"{module} imports {sorted(heavy)} when it is imported"
        todo += [m for m in imports if m.split(".")[0] == "bench"]
    assert "bench.matrix.options" in seen and "bench.plugin" not in seen
