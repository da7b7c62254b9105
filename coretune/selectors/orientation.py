"""Difficulty scores of training dynamics and their one orientation (higher = harder).

Every selector and artifact that ranks by a score goes through :func:`oriented_difficulty`,
so a score's direction is written down once, in :data:`HIGHER_IS_HARDER`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from coretune.errors import PluginArgumentError


class SelectorArgumentError(PluginArgumentError):
    """Raised for selector arguments the selector does not accept or cannot use."""


#: The per-sample difficulty scores a training-dynamics (proxy-run) artifact holds.
DynamicsScore = Literal["aum", "forgetting", "el2n", "grand", "entropy", "margin",
                        "least_confidence"]

#: Orientation of each score: True if a higher raw value means a harder sample.
#: AUM (Pleiss et al. 2020) is low for hard/mislabelled samples; forgetting counts
#: (Toneva et al. 2019), EL2N and GraNd (Paul et al. 2021) are high for hard samples;
#: of the uncertainty scores (Coleman et al. 2020), entropy and least confidence
#: (1 − max p) are high and the margin (p₁ − p₂) is low for uncertain ones.
HIGHER_IS_HARDER: dict[str, bool] = {
    "aum": False,
    "forgetting": True,
    "el2n": True,
    "grand": True,
    "entropy": True,
    "least_confidence": True,
    "margin": False,
}


def check_score_name(name: str) -> None:
    """:class:`SelectorArgumentError` unless ``name`` is a known difficulty score."""
    if name not in HIGHER_IS_HARDER:
        raise SelectorArgumentError(
            f"unknown difficulty score {name!r}; known: {sorted(HIGHER_IS_HARDER)}")


def oriented_difficulty(name: str, raw: np.ndarray) -> np.ndarray:
    """Score ``name`` as float64 difficulty, higher = harder (:data:`HIGHER_IS_HARDER`): the
    one place a raw score is oriented."""
    check_score_name(name)
    raw = np.asarray(raw, dtype=np.float64)
    return raw if HIGHER_IS_HARDER[name] else -raw
