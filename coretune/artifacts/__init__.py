"""The artifact graph: a content-addressed store and one module per artifact kind.

Importing the package registers the built-in kinds (teacher, dynamics, selection).
"""

from coretune.artifacts import dynamics, selection, teacher  # noqa: F401  (registers)
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
