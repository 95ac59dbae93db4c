"""``python -m models``: every registered model with its family, parameters, input size and loss.

Parameter counts come from a build whose parameters live on the meta device (nothing is
allocated or initialised): the whole list, torchvision's 80 architectures included, takes
seconds. ``python -m models 'resnet*'`` lists the names matching a glob.
"""

from __future__ import annotations

import sys
import warnings

from . import get_spec, list_models, parameter_count


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")  # torchvision's notes about builders' defaults
    names = list_models(argv[0] if argv else None)
    rows = [("model", "family", "parameters", "input", "loss")]
    for name in names:
        spec = get_spec(name)
        size = "x".join(str(d) for d in spec.input_shape)
        rows.append((name, spec.family, f"{parameter_count(name):,}", size, spec.loss))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print(f"{len(names)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
