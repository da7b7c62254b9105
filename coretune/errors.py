"""The errors a user can cause, in one hierarchy (a leaf: imports nothing of coretune).

Everything the user controls — the search space, CLI arguments, paths, data and cache
files, the cluster address — is refused with a :class:`CoretuneError`: the CLI prints its
message as one line and exits 2, before Ray starts where it can. Any other exception is a
bug in coretune or in a plugin: the CLI exits 1 naming the exception's type and where it
was raised (``--debug`` prints the traceback). Each subclass also derives from the
built-in type callers caught before this hierarchy existed (``ValueError``,
``FileNotFoundError``, ``RuntimeError``, ``ConnectionError``), so ``except ValueError``
still works.
"""

from __future__ import annotations


class CoretuneError(Exception):
    """Input the user controls is wrong: one line naming the field and value, exit 2."""


class SpecError(CoretuneError, ValueError):
    """An invalid search space; the message names the field and the value."""


class UnknownNameError(CoretuneError, KeyError, ValueError):
    """A name that no plugin registry holds (selector, dataset, arch, kind, …)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginArgumentError(CoretuneError, ValueError):
    """Arguments a plugin (selector, model, encoder, label source…) does not accept."""


class DataError(CoretuneError, ValueError):
    """A dataset, score file or weights file whose content cannot be used."""


class DataMissingError(CoretuneError, FileNotFoundError):
    """A file the sweep needs is not where it was looked for."""


class CacheError(CoretuneError, RuntimeError):
    """A corrupt artifact store or results directory, or one held by another driver."""


class ClusterError(CoretuneError, ConnectionError):
    """The Ray cluster at ``--address`` cannot be joined, or lacks the resources asked."""


class PathError(CoretuneError, OSError):
    """An output, cache or data path that cannot be used (under a file, node-local on a
    cluster, holds no results, or a URI no filesystem opens)."""


class UsageError(CoretuneError, ValueError):
    """Command-line arguments that do not fit together."""
