"""SL+KD views in a search space: augment.cutmix and random_resized_crop parse, key only when
set, and CutMix is refused where a label mode or a recording run cannot take mixed images."""

from __future__ import annotations

import pytest

from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, load_spec
from coretune.spec import AugmentSpec, CutMixSpec

AT = "budget: {unit"  # the sweep's budget line: what goes before it is top level
SL_KD = ("augment: {pad: 0, flip: true, cutmix: {alpha: 1.0, p: 1.0}, ops: "
         "[{name: random_resized_crop, args: {scale_min: 0.08}}]}\n")
KD_ONLY = {"  - mode: hard\n": "", "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
           "  - {mode: soft, tau: 4.0, lam: 1.0}\n": ""}


def test_cutmix_at_its_default_changes_no_key():
    assert "cutmix" not in AugmentSpec.KEYED_ALWAYS
    assert AugmentSpec(pad=4, flip=True).key_dump() == {"pad": 4, "flip": True,
                                                        "noise_std": 0.0}
    assert AugmentSpec(cutmix=CutMixSpec()).key_dump()["cutmix"] == {"alpha": 1.0, "p": 1.0}


def test_a_kd_space_with_sl_kd_views_expands(write_spec):
    trials = expand(load_spec(write_spec(replace={**KD_ONLY, AT: SL_KD + AT})))
    assert trials and all(t.label_mode == "kd" for t in trials)
    aug = trials[0].augment
    assert aug.cutmix == CutMixSpec() and aug.ops[0].name == "random_resized_crop"
    plain = expand(load_spec(write_spec("plain", replace=KD_ONLY)))
    assert {t.trial_id("fp") for t in trials}.isdisjoint({t.trial_id("fp") for t in plain})


@pytest.mark.parametrize("replace,message", [
    ({AT: SL_KD + AT},
     "label_modes.2: augment.cutmix mixes two images per view, and label mode 'soft' keeps "
     "one fixed teacher label per image"),
    ({"{mode: soft, tau: 4.0, lam: 1.0}":
      "{mode: soft, tau: 4.0, lam: 1.0, augment: {cutmix: {}}}"}, "label_modes.2: "),
    ({"dynamics: {arch: mlp,": "dynamics: {augment: {cutmix: {}}, arch: mlp,"},
     "dynamics.augment.cutmix"),
    ({AT: "augment: {cutmix: {alpha: 0}}\n" + AT}, "alpha"),
    ({AT: "augment: {cutmix: {beta: 1}}\n" + AT}, "beta"),
    ({AT: "augment: {ops: [{name: random_resized_crop, args: {ratio_min: 2.0}}]}\n" + AT},
     "ratio_min 2.0 is above ratio_max"),
])
def test_refused_before_anything_runs(write_spec, replace, message):
    with pytest.raises(SpecError, match="^invalid search space") as err:
        load_spec(write_spec(replace=replace))
    assert message in str(err.value)


def test_hard_and_kd_take_cutmix_per_mode(write_spec):
    spec = load_spec(write_spec(replace={
        "  - mode: hard\n": "  - {mode: hard, augment: {flip: true, cutmix: {p: 0.5}}}\n"}))
    hard = [t for t in expand(spec) if t.label_mode == "hard"]
    assert hard and all(t.augment.cutmix == CutMixSpec(p=0.5) for t in hard)
