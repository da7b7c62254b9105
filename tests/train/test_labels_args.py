"""Label sources' ``args``: one strict typed model each, checked before Ray starts."""

from __future__ import annotations

import pytest
from pydantic import Field

from coretune.errors import PluginArgumentError
from coretune.spec import ClusteringSpec, EncoderSpec, Frozen, KnnSpec
from coretune.train.labels import (
    LABEL_SOURCES,
    HardLabels,
    NoArguments,
    get_label_source,
    register_label_source,
)


def test_pseudo_declares_the_encoder_knn_and_clustering_sub_specs():
    pseudo = get_label_source("pseudo")
    for model in (EncoderSpec, KnnSpec, ClusteringSpec):
        assert issubclass(pseudo.args, model) and set(model.model_fields) <= set(
            pseudo.args.model_fields)
    assert pseudo.sub_spec("clustering", {"clusters": 3, "knn_k": 9}).clusters == 3
    assert pseudo.sub_spec("beta_search", {}) is None  # not declared
    assert get_label_source("hard").args is NoArguments


@pytest.mark.parametrize("mode,args,needle", [
    ("pseudo", {"knn_kk": 3}, "label mode 'pseudo' takes no argument(s) ['knn_kk']"),
    ("pseudo", {"knn_k": "3"}, "argument 'knn_k' should be a valid integer (got '3')"),
    ("pseudo", {"clusters": 1}, "argument 'clusters' should be greater than or equal to 2"),
    ("pseudo", {"beta_grid": [0.1]}, "['beta_grid']"),  # the β search is elfs's, not pseudo's
    ("hard", {"tau": 3.0}, "label mode 'hard' takes no argument(s) ['tau']; it accepts none"),
])
def test_unknown_or_mistyped_label_arguments_are_refused(mode, args, needle):
    with pytest.raises(PluginArgumentError) as err:
        get_label_source(mode).validate_args(args)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_plugin_source_declares_its_arguments_model():
    class Noisy(Frozen):
        rate: float = Field(0.2, gt=0, lt=1)

    with LABEL_SOURCES.temporary():
        register_label_source("_noisy", args=Noisy)(lambda cfg, inputs: HardLabels(
            inputs.targets))
        info = get_label_source("_noisy")
        info.validate_args({"rate": 0.5})
        with pytest.raises(PluginArgumentError, match="'rate' should be less than 1"):
            info.validate_args({"rate": 1.5})
