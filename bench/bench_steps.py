"""The benchmarks: one function per phase, parametrized by bench/plugin.py with the selected cases.

Kept thin on purpose: the ``runner`` fixture (``bench.runners``, picked by bench/plugin.py) measures
the case; building the step is ``bench.workloads.build``, timing it and its passes ``bench.runners.inprocess``.
"""


def forward(benchmark, case, runner):
    runner.measure(benchmark, case)


def backward(benchmark, case, runner):
    runner.measure(benchmark, case)


def optimizer_step(benchmark, case, runner):
    runner.measure(benchmark, case)


def train_step(benchmark, case, runner):
    runner.measure(benchmark, case)


def data(benchmark, case, runner):
    runner.measure(benchmark, case)


def epoch(benchmark, case, runner):
    runner.measure(benchmark, case)
