"""Plugins: modules a search space names under ``plugins:``, imported in every process.

A plugin module registers new selectors, artifact kinds, label sources, datasets, models,
encoders or augmentations when it is imported. The driver imports them while it validates
the spec; every Ray process that runs coretune code — artifact build tasks, student
trainables, teacher actors (and their restarts) and β-search trials — calls
:func:`import_plugins` with the spec's list before it looks anything up, so a plugin works
wherever a built-in does. Importing twice is free (Python caches modules).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from coretune.errors import SpecError


def import_plugins(modules: Iterable[str] | str | None) -> None:
    """Import plugin modules by name; :class:`SpecError` names one that cannot be."""
    names = [modules] if isinstance(modules, str) else list(modules or [])
    for name in names:
        try:
            importlib.import_module(str(name))
        except ImportError as err:
            raise SpecError(f"field 'plugins': cannot import {name!r} ({err})") from None
