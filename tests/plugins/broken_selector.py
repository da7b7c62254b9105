"""A selector with a bug on purpose: numpy raises inside it (a ``ValueError`` subclass).

That is coretune's or a plugin's fault, not the user's input: the CLI must exit 1 naming
the exception and where it was raised, not 2 as if the spec were wrong."""

from __future__ import annotations

import numpy as np

from coretune.selectors import SelectionContext, register_selector


@register_selector("singular", paper="test plugin: inverts a singular matrix")
def singular(ctx: SelectionContext, budget: int) -> np.ndarray:
    """Raises ``numpy.linalg.LinAlgError`` (a ValueError) every time."""
    return np.linalg.inv(np.zeros((2, 2)))[:budget].astype(np.int64)
