"""``reports.render.write_report``: kept at this path for callers of the old layout (the bench
plug-in's end of session); the run report lives in reports/run/."""

from .run.write import write_report

__all__ = ["write_report"]
