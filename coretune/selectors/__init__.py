"""Coreset selectors: one registry; each method a small module citing its paper."""

from coretune.selectors import ccs, difficulty, random_sampling  # noqa: F401  (registers)
from coretune.selectors.base import (
    HIGHER_IS_HARDER,
    MissingArtifactError,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    UnknownSelectorError,
    available_selectors,
    budget_for,
    get_selector,
    register_selector,
    select,
)

__all__ = [
    "HIGHER_IS_HARDER", "MissingArtifactError", "Selection", "SelectionContext",
    "SelectorArgumentError", "UnknownSelectorError", "available_selectors", "budget_for",
    "get_selector", "register_selector", "select",
]
