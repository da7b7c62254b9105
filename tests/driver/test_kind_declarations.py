"""Kinds declare what the generic layers need (recipes read, executor, result table), and
the planner's recipe filter, the builder and the driver name no kind."""

from __future__ import annotations

import inspect
import re

import pytest

from coretune.artifacts.graph import KINDS, get_kind, register_artifact, tune_executor_of
from coretune.driver import build, run
from coretune.search_spaces import schema


def test_the_built_in_kinds_declare_what_they_read_and_how_they_are_built():
    assert get_kind("teacher").recipes == ("teacher",)
    assert get_kind("dynamics").recipes == get_kind("pseudo_dynamics").recipes == ("dynamics",)
    search = get_kind("beta_search")
    assert search.executor == "tune" and search.results_table == "beta_search"
    assert tune_executor_of(search).__name__ == "search_on_tune"
    searches = ("beta_search", "offset_search")  # ELFS's β and EL2N-Best's offset
    assert get_kind("selection").executor == "batch"  # coresets: many, most of them cheap
    assert all(k.executor == "task" for k in KINDS.entries()  # plugins' may differ
               if k.name not in (*searches, "selection") and k.module.startswith("coretune."))
    assert get_kind("offset_search").executor == "tune"


def test_generic_code_names_no_kind():
    sources = {"driver/build.py": inspect.getsource(build),
               "driver/run.py": inspect.getsource(run),
               "schema._with_recipes": inspect.getsource(schema._with_recipes)}
    for where, text in sources.items():
        code = re.sub(r'""".*?"""|#[^\n]*', "", text, flags=re.S)  # docstrings, comments
        named = [k for k in KINDS.names() if re.search(rf"[\"']{k}[\"']", code)]
        assert not named, f"{where} names kinds {named}"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"recipes": ("teachers",)}, "not TrialSpec fields"),
    ({"executor": "thread"}, "executor must be one of"),
    ({"executor": "tune"}, "tune_executor"),
    ({"tune_executor": "m:f"}, "tune_executor"),
    ({"results_table": "beta_search"}, "go together"),
])
def test_bad_declarations_are_refused(kwargs, match):
    with KINDS.temporary(), pytest.raises(ValueError, match=match):
        register_artifact("_bad_kind", 1, params=lambda t: None, **kwargs)(lambda ctx: None)
