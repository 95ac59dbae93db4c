"""The benchmarks: one function per phase, parametrized by conftest with the selected cases.

Kept thin on purpose: building and timing a step lives in ``bench.harness``.
"""


def forward(benchmark, case, runner):
    runner.measure(benchmark, case)


def backward(benchmark, case, runner):
    runner.measure(benchmark, case)


def optimizer_step(benchmark, case, runner):
    runner.measure(benchmark, case)


def train_step(benchmark, case, runner):
    runner.measure(benchmark, case)
