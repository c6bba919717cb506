"""Benchmarks: every shape of plantwatch measured in one run (``plantwatch bench``).

See ``docs/performance.md`` for what each figure means and a full run on the reference machine.
"""

from plantwatch.bench.report import render
from plantwatch.bench.runner import BenchError, Plan, Report, run_bench

__all__ = ["BenchError", "Plan", "Report", "render", "run_bench"]
