"""One generic registry for every plugin family (a leaf: imports only :mod:`coretune.errors`).

Selectors, artifact kinds, label sources, datasets, models and encoders each keep one
:class:`Registry`; a family's ``register_*`` decorator builds its entry and calls
:meth:`Registry.add`. Modelled on lm-eval's ``Registry`` and big_vision's
``temporary_ops``: a duplicate name is refused unless replaced explicitly (re-importing
the same module is not a duplicate), an unknown name says what was meant and what
exists, :meth:`Registry.origin` says which module registered a name, and
:meth:`Registry.temporary` lets a test register entries that vanish when it ends.

A family may also resolve names by prefix (``timm/<model>`` for models and encoders):
:meth:`Registry.add_prefix` takes a resolver that returns the entry for such a name or
raises :class:`~coretune.errors.UnknownNameError`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from coretune.errors import CoretuneError, PluginArgumentError, UnknownNameError

T = TypeVar("T")


class DuplicateNameError(CoretuneError, ValueError):
    """A second registration of a name by another module, without ``replace=True``."""


@dataclass(frozen=True)
class _Slot(Generic[T]):
    entry: T
    origin: str  # "module:qualname" of what registered it


class Registry(Generic[T]):
    """Named entries of one plugin family (``family`` names it in messages).

    ``error`` is the :class:`UnknownNameError` subclass raised for unknown names, so a
    family keeps its own exception type.
    """

    def __init__(self, family: str, error: type[UnknownNameError] = UnknownNameError,
                 hint: Callable[[str], str] | None = None):
        self.family = family
        self.error = error
        self.hint = hint  # an extra sentence for an unknown name (e.g. why it is missing)
        self._slots: dict[str, _Slot[T]] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}

    # ------------------------------------------------------------------ registering
    def add(self, name: str, entry: T, *, origin: str, replace: bool = False) -> T:
        """Register ``entry`` as ``name``; ``origin`` is ``module:qualname`` of its code."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.family} names are non-empty strings, got {name!r}")
        if any(name.startswith(p) for p in self._prefixes):
            raise DuplicateNameError(f"{self.family} {name!r}: names starting with "
                                     f"{sorted(self._prefixes)} are resolved by prefix")
        old = self._slots.get(name)
        # the same module registering again is a re-import; code made by a factory
        # (``<locals>`` in its origin) is a re-import only if it is the same entry
        reimport = old is not None and old.origin == origin and (
            "<locals>" not in origin or old.entry == entry)
        if old is not None and not replace and not reimport:
            raise DuplicateNameError(
                f"{self.family} {name!r} is already registered by {old.origin}; "
                f"pass replace=True to replace it from {origin}")
        self._slots[name] = _Slot(entry, origin)
        return entry

    def add_prefix(self, prefix: str, resolve: Callable[[str], T]) -> None:
        """Names starting with ``prefix`` are resolved by ``resolve(name)``."""
        self._prefixes[prefix] = resolve

    def remove(self, name: str) -> None:
        self._slots.pop(name, None)

    # ------------------------------------------------------------------ looking up
    def get(self, name: str) -> T:
        """The entry of ``name``; the family's error, with suggestions, if there is none."""
        slot = self._slots.get(name)
        if slot is not None:
            return slot.entry
        for prefix, resolve in self._prefixes.items():
            if isinstance(name, str) and name.startswith(prefix):
                return resolve(name)
        raise self.error(self.unknown_message(name))

    def unknown_message(self, name: object) -> str:
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
        parts = [f"unknown {self.family} {name!r}"]
        if self.hint is not None and (extra := self.hint(str(name))):
            parts.append(extra)
        if close:
            parts.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
        shown = names + [f"{p}<name>" for p in sorted(self._prefixes)]
        parts.append("available: " + ", ".join(shown))
        return "; ".join(parts)

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def names(self) -> list[str]:
        """Registered names, sorted (prefix-resolved names are not listed)."""
        return sorted(self._slots)

    def entries(self) -> list[T]:
        return [self._slots[n].entry for n in self.names()]

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._slots[n].entry) for n in self.names()]

    def origin(self, name: str) -> str:
        """``module:qualname`` of the code that registered ``name``."""
        if name not in self._slots:
            raise self.error(self.unknown_message(name))
        return self._slots[name].origin

    @contextmanager
    def temporary(self) -> Iterator[Registry[T]]:
        """Entries registered inside the block are gone after it (tests, notebooks)."""
        saved = dict(self._slots)
        try:
            yield self
        finally:
            self._slots.clear()
            self._slots.update(saved)


def origin_of(obj: object) -> str:
    """``module:qualname`` of a function or class, for :meth:`Registry.add`."""
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}:{getattr(obj, '__qualname__', type(obj).__name__)}"


def import_submodules(package: str) -> None:
    """Import every module of ``package``: its plugins register themselves on import, so a
    new one is one file."""
    pkg = importlib.import_module(package)
    for module in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{module.name}")


class TypedArguments:
    """A plugin's arguments as one strict pydantic model made from its signature: each
    keyword parameter after the first ``skip`` is a field with its type hint (``Literal``,
    ``Annotated`` bounds) and its one default. :meth:`validate` refuses unknown names and
    wrong types or values with one line naming the plugin, the argument and the value; it
    never fills defaults into what it is given (keys hash the arguments as written)."""

    def __init__(self, fn: Callable, skip: int, what: str,
                 extra_fields: dict[str, tuple[object, object]] | None = None):
        import inspect
        from typing import Any, get_type_hints

        from pydantic import ConfigDict, create_model

        self.what = what
        bound = set(getattr(fn, "keywords", None) or {})  # a functools.partial's own
        fn = getattr(fn, "func", fn)
        params = [p for p in list(inspect.signature(fn).parameters.values())[skip:]
                  if p.name not in bound]
        self.takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        hints = get_type_hints(fn, include_extras=True)
        self.defaults = {p.name: p.default for p in params if p.kind not in variadic}
        fields = {n: (hints.get(n, Any), d) for n, d in self.defaults.items()}
        fields |= extra_fields or {}
        self.names = sorted(fields)
        self.model = create_model(
            "args_of_" + "".join(c if c.isalnum() else "_" for c in what),
            __config__=ConfigDict(strict=True, allow_inf_nan=False, extra="allow"), **fields)

    def validate(self, args: object,
                 error: type[PluginArgumentError] = PluginArgumentError) -> None:
        """Refuse ``args`` with one line (as the family's ``error``) unless they fit."""
        from pydantic import ValidationError

        if not isinstance(args, dict):
            raise error(f"{self.what}: arguments must be a mapping, got {args!r}")
        unknown = [] if self.takes_any else sorted(set(args) - set(self.names))
        if unknown:
            raise error(f"{self.what} takes no argument(s) {unknown}; it "
                                      f"accepts {self.names or 'none'}")
        try:
            self.model.model_validate({k: v for k, v in args.items() if k in self.names})
        except ValidationError as err:
            first = err.errors()[0]
            # keep the argument and list positions, not pydantic's union-member tags
            loc = first["loc"]
            where = ".".join([str(loc[0]), *(str(p) for p in loc[1:] if isinstance(p, int))])
            msg = first["msg"].replace("Input should", "should")
            raise error(f"{self.what}: argument {where!r} {msg} "
                                      f"(got {first.get('input')!r})") from None
