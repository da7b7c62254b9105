"""Coreset selectors: one registry; each method a small module citing its paper.

Every module of the package is imported here, so a new selector is one file with one
``@register_selector``.
"""

from coretune.registry import import_submodules
from coretune.selectors.base import (
    HIGHER_IS_HARDER,
    SELECTORS,
    MissingArtifactError,
    Selection,
    SelectionContext,
    SelectorArgumentError,
    UnknownSelectorError,
    available_selectors,
    get_selector,
    register_selector,
)
from coretune.selectors.contract import budget_for, select

__all__ = [
    "HIGHER_IS_HARDER", "SELECTORS", "MissingArtifactError", "Selection", "SelectionContext",
    "SelectorArgumentError", "UnknownSelectorError", "available_selectors", "budget_for",
    "get_selector", "register_selector", "select",
]

import_submodules(__name__)  # registers the selectors
