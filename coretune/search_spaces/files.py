"""Reading search-space files: strict YAML, ``include:`` inheritance and ``--set`` overrides.

- ``include: base.yaml`` (or a list) merges the named files first — a path relative to the
  including file, or the name of a packaged space — and the including file's keys win;
  mappings merge key by key, lists and scalars are replaced.
- ``--set key.path=value`` overrides one value after the includes; the value is parsed
  as YAML (``--set seeds=[0,1]``). ``dataset=NAME`` swaps the dataset of every entry of
  ``datasets`` and keeps their split options; ``arch=NAME`` and ``seed=N`` set ``archs``
  and ``seeds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from coretune.errors import SpecError

PACKAGED = Path(__file__).parent


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (YAML says keys are unique;
    PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):

        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SpecError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def resolve_spec_path(spec: str | Path) -> Path:
    """A file path, or the name of a packaged space (``demo``, ``soft_label_table1``, …)."""
    path = Path(spec)
    if path.exists() or path.suffix:
        return path
    packaged = PACKAGED / f"{spec}.yaml"
    return packaged if packaged.exists() else path


def packaged_spaces() -> list[Path]:
    return sorted(PACKAGED.glob("*.yaml"))


def read_yaml(path: Path) -> Any:

    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except FileNotFoundError:
        raise SpecError(f"search space file not found: {path}") from None
    except IsADirectoryError:
        raise SpecError(f"search space {path} is a directory, not a YAML file") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise SpecError(f"search space {path} is not valid YAML: "
                        f"{' '.join(str(err).split())}") from None
    except SpecError as err:
        raise SpecError(f"search space {path}: {err}") from None


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def read_with_includes(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """The file's mapping with its ``include:`` files merged underneath, recursively."""

    here = path.resolve()
    if here in chain:
        names = " -> ".join(p.name for p in (*chain, here))
        raise SpecError(f"search space {path}: include cycle {names}")
    data = read_yaml(path)
    if not isinstance(data, dict) or "include" not in data:
        return data
    includes = data.pop("include")
    merged: dict = {}
    for name in includes if isinstance(includes, list) else [includes]:
        if not isinstance(name, str):
            raise SpecError(f"search space {path}: field 'include' must name files, got "
                            f"{name!r}")
        target = path.parent / name
        if not target.exists():
            target = resolve_spec_path(Path(name).stem if Path(name).suffix else name)
        if not target.exists():
            raise SpecError(f"search space {path}: field 'include': {name!r} not found next "
                            f"to it or among the packaged spaces")
        merged = merge(merged, read_with_includes(target, (*chain, here)))
    return merge(merged, data)


_ALIASES = {"arch": "archs", "seed": "seeds"}


def apply_overrides(data: Any, overrides: Sequence[str]) -> Any:
    """Apply ``key.path=value`` overrides (values parsed as YAML)."""

    if not overrides:
        return data
    if not isinstance(data, dict):
        raise SpecError("--set needs a search space that is a mapping")
    data = merge({}, data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SpecError(f"--set {item!r}: the value is not valid YAML") from None
        if key == "dataset":
            entries = data.get("datasets", [])
            entries = entries if isinstance(entries, list) else [entries]
            data["datasets"] = [merge(e, {"name": value}) if isinstance(e, dict) else value
                                for e in entries] or [value]
            continue
        parts = _ALIASES.get(key, key).split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"--set {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return data
