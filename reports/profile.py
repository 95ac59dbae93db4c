"""``reports.profile``: the profile summaries, kept at this path for ``load_profile(run)`` (README)
and the bench plug-in; they live in reports/traces/profile.py."""

from .traces.profile import (PROFILE_CSV, PROFILE_FILE, aggregate, cases, load_profile, record, step_counts,
                             top_ops)

__all__ = ["PROFILE_CSV", "PROFILE_FILE", "aggregate", "cases", "load_profile", "record", "step_counts", "top_ops"]
