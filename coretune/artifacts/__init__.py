"""The artifact graph: a content-addressed store and one module per artifact kind.

Importing the package imports every module in it, so a new built-in kind is one file with
one ``@register_artifact``; kinds outside the package come in through a spec's ``plugins``.
"""

import importlib
import pkgutil

from coretune.artifacts.graph import (
    ArtifactKind,
    BuildContext,
    Built,
    Node,
    available_kinds,
    get_kind,
    provider_of,
    register_artifact,
)
from coretune.artifacts.store import Artifact, ArtifactStore, CorruptArtifactError

__all__ = ["Artifact", "ArtifactKind", "ArtifactStore", "BuildContext", "Built",
           "CorruptArtifactError", "Node", "available_kinds", "get_kind", "provider_of",
           "register_artifact"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers the built-in kinds
