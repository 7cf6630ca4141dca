"""How many examples property tests run: the CI size, scaled up by ``make test-deep``.

``make test`` runs every property test with Hypothesis's ``ci`` profile (fixed seeds, no
example database: the same examples every run, so a failure is a bug, not a draw);
``make test-deep`` sets ``HYPOTHESIS_PROFILE=deep`` (fresh random examples) and
``EFT_EXAMPLES_SCALE=10``.
"""

from __future__ import annotations

import os

SCALE = int(os.environ.get("EFT_EXAMPLES_SCALE", "1"))


def examples(count: int) -> int:
    return count * SCALE
