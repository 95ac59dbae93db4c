"""A plug-in that adds one figure with one declaration and the pass that produces it
(``-p tests.toy_figure_plugin``; ``TOY_WIDGETS`` sets its value). Nothing else is edited."""

from __future__ import annotations

import os

from bench.schema.figures import Figure, Kind, View
from bench.passes.base import FunctionPass
from bench.passes import register_pass

register_pass(
    FunctionPass("toy", lambda step, timing: {"toy_widgets": float(os.environ.get("TOY_WIDGETS", "7"))}),
    Figure("toy_widgets", Kind.COUNT, "toy widgets", "toy", "a plug-in's figure", deterministic=True,
           views=frozenset({View.TABLE, View.HISTORY})),
)
