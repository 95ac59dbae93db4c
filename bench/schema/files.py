"""Every file and folder name of a run's results, in one place: what ``bench`` writes and
``reports`` reads. Nothing else spells these names."""

from __future__ import annotations

DEFAULT_RESULTS_DIR = "results"

# Inside a run folder, results/<UTC timestamp>/:
CASES_FILE = "cases.jsonl"  # one line per finished case, fsynced as it is written
BENCHMARK_JSON = "benchmark.json"  # pytest-benchmark's JSON, written at the end of the session
RUN_FILES = (CASES_FILE, BENCHMARK_JSON)  # either makes a folder a run folder
ENVIRONMENT_FILE = "environment.json"
FIGURES_FILE = "figures.json"  # the declarations of the run's figures: results describe themselves
ISOLATED_DIR = "isolated"  # --isolate: each child's pytest-benchmark JSON
TRACES_DIR = "traces"  # --profile: traces/<case folder>/<host>_<pid>.<n>.pt.trace.json.gz
TRACE_SUFFIXES = (".pt.trace.json", ".pt.trace.json.gz")  # what torch.profiler's trace handler writes
PROFILE_FILE = "profile.jsonl"  # --profile: the operator rows of each profiled case
PROFILE_CSV = "profile.csv"
REPORT_MD = "report.md"
REPORT_CSV = "report.csv"
REPORT_HTML = "report.html"

# Beside the run folders, in the results folder:
HISTORY_DB = "history.sqlite"
HISTORY_HTML = "history.html"
HISTORY_MD = "history.md"
NOISE_FLOOR_FILE = "noise_floor.json"

# Written by the gate into the current run's folder (or --output):
GATE_MD = "gate.md"
GATE_JSON = "gate.json"
