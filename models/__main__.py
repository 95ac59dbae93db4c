"""``python -m models``: every registered model with its family, parameters, inputs (image size, or a
token workload's vocabulary and sequence length) and loss.

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
        rows.append((name, spec.family, f"{parameter_count(name):,}", spec.inputs.describe(), spec.loss))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print(f"{len(names)} models; also by name: hf:<model_type> (AutoModelForCausalLM) and hf-cls:<model_type> "
          "(AutoModelForSequenceClassification, 2 labels), from Hugging Face transformers' configs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
