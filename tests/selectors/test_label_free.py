"""Label-free selectors' algorithms: ZCore against the published per-draw loop,
prototypicality and label-free D² on hand-worked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.selectors import SelectionContext, select
from coretune.selectors.prototypicality import prototype_distances
from coretune.selectors.zcore import zcore_draws, zcore_raw_scores, zcore_scores


def published_zcore(x: np.ndarray, draws, redund_nn: int, redund_exp: float,
                    normalise: bool = True) -> np.ndarray:
    """voxel51/zcore's ``sample_score``, one draw at a time over all N embeddings, then its
    min–max normalisation (written from the published loop, not from our module)."""
    scores = np.zeros(len(x))
    for dims, points in draws:
        for sample in points:
            embed_dist = np.abs(x[:, dims] - sample).sum(axis=1)
            idx = int(np.argmin(embed_dist))
            scores[idx] += 1
            nn_dist = np.abs(x[:, dims] - x[idx, dims]).sum(axis=1)
            nn = np.argsort(nn_dist, kind="stable")
            nn = nn[nn != idx]  # the covered sample itself
            if nn_dist[nn[0]] == 0:
                scores[nn[0]] -= 1
            else:
                nn = nn[:redund_nn]
                penalty = 1 / nn_dist[nn] ** redund_exp
                scores[nn] -= penalty / penalty.sum()
    if not normalise:
        return scores
    return (scores - scores.min()) / (scores.max() - scores.min())


@pytest.mark.parametrize("redund_nn,redund_exp,batch", [(20, 4.0, 7), (5, 1.0, 100),
                                                        (60, 2.0, 1)])
def test_zcore_equals_the_published_per_draw_loop(redund_nn, redund_exp, batch):
    x = np.random.default_rng(0).normal(size=(80, 6))
    ours = zcore_scores(x, np.random.default_rng(3), 150, 2, redund_nn, redund_exp, batch)
    draws = list(zcore_draws(x, np.random.default_rng(3), 150, 2, batch))
    assert ours == pytest.approx(published_zcore(x, draws, redund_nn, redund_exp), abs=1e-9)


def test_zcore_exact_duplicates_take_the_whole_penalty():
    base = np.random.default_rng(1).normal(size=(30, 3))
    x = np.vstack([base, base[:5]])  # samples 30..34 duplicate 0..4
    ours = zcore_raw_scores(x, np.random.default_rng(5), 200, 3, 10, 4.0, 50)
    draws = list(zcore_draws(x, np.random.default_rng(5), 200, 3, 50))
    ref = published_zcore(x, draws, 10, 4.0, normalise=False)
    # which of two copies is "covered" and which "redundant" is a tie: compare pair sums
    assert ours[5:30] == pytest.approx(ref[5:30], abs=1e-9)
    assert ours[:5] + ours[30:] == pytest.approx(ref[:5] + ref[30:], abs=1e-9)
    assert (ref[:5] + ref[30:] != 0).any()  # duplicates were covered, so this is a test


def test_prototypicality_distances_and_orientation():
    # two tight clusters on the unit circle and one sample between them
    x = np.array([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01],
                  [0.0, 1.0], [0.01, 1.0], [-0.01, 1.0], [1.0, 1.0]])
    d = prototype_distances(x, 2, 0)
    assert np.argmax(d) == 6 and d[:6].max() < 0.05 < d[6]
    ctx = SelectionContext.from_needs(7, 2, 0, {"embeddings": x})
    assert select("prototypicality", ctx, 1).indices.tolist() == [6]
    assert 6 not in select("prototypicality", ctx, 4, keep="easiest").indices


def test_label_free_d2_spreads_picks_over_the_graph():
    # two disconnected triangles of equal density, and one isolated pair
    nbr = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4], [7, -1], [6, -1]])
    dist = np.where(nbr >= 0, 0.5, np.inf)
    ctx = SelectionContext.from_needs(8, 1, 0, {"knn": (nbr, dist)})
    picked = select("d2_label_free", ctx, 2).indices
    # the densest nodes are the triangles'; the reverse pass lowers the first pick's
    # neighbours, so the second pick comes from the other triangle
    assert sorted(picked // 3) == [0, 1]


# ------------------------------------------------------------- arguments, typed once
def _body(fn) -> str:
    """The source of ``fn``'s body (its signature and docstring left out)."""
    import ast
    import inspect
    import textwrap

    node = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    body = node.body[1:] if isinstance(getattr(node.body[0], "value", None),
                                       ast.Constant) else node.body
    return "\n".join(ast.unparse(stmt) for stmt in body)


def test_no_selector_carries_a_parameter_its_function_does_not_read():
    import re

    from coretune.selectors import SELECTORS

    unread = {}
    for name, info in SELECTORS.items():
        if info.fn.__name__ == "<lambda>":  # a test's throwaway (no parameters)
            continue
        body = _body(info.fn)
        missing = [p for p in info.parameters() if not re.search(rf"\b{p}\b", body)]
        if missing:
            unread[name] = missing
    assert not unread, f"parameters no function body reads: {unread}"


def test_pipeline_settings_are_sub_specs_not_parameters():
    from coretune.selectors import get_selector
    from coretune.spec import PIPELINE_SPECS

    expected = {"elfs": ("encoder", "knn", "clustering", "beta_search"),
                "d2_label_free": ("encoder", "knn"), "prototypicality": ("encoder",),
                "zcore": ("encoder",)}
    for name, uses in expected.items():
        info = get_selector(name)
        assert info.uses == uses
        fields = set().union(*(PIPELINE_SPECS[u].model_fields for u in uses))
        # read by the function itself: elfs ranks by the same score its β search uses
        assert set(info.parameters()) & fields <= {"score"}, name
        assert fields <= set(info.accepted()), name


@pytest.mark.parametrize("selector,args,needle", [
    ("elfs", {"knn_k": "50"}, "argument 'knn_k' should be a valid integer"),
    ("elfs", {"knn_k": 0}, "'knn_k' should be greater than or equal to 1"),
    ("elfs", {"clustering": "dbscan"}, "'clustering' should be 'temi', 'scan' or 'kmeans'"),
    ("elfs", {"beta_grid": [0.1, 1.2]}, "'beta_grid.1' should be less than 1"),
    ("elfs", {"encoder_args": None}, "'encoder_args' should be a valid dictionary"),
    ("elfs", {"knn_kk": 5}, "selector 'elfs' takes no argument(s) ['knn_kk']; it accepts"),
    # settings of sub-specs a selector does not use are no longer its arguments
    ("prototypicality", {"knn_k": 5}, "'prototypicality' takes no argument(s) ['knn_k']"),
    ("zcore", {"clustering": "kmeans"}, "'zcore' takes no argument(s) ['clustering']"),
    ("d2_label_free", {"clusters": 3}, "'d2_label_free' takes no argument(s) ['clusters']"),
])
def test_bad_pipeline_arguments_are_refused_naming_the_argument(selector, args, needle):
    from coretune.selectors import SelectorArgumentError, get_selector

    with pytest.raises(SelectorArgumentError) as err:
        get_selector(selector).validate_args(args)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_selectors_run_with_their_pipeline_settings_in_args():
    """The settings a selector reads through artifacts never reach its function."""
    x = np.random.default_rng(0).normal(size=(20, 3))
    ctx = SelectionContext.from_needs(20, 2, 0, {"embeddings": x})
    plain = select("prototypicality", ctx, 5).indices
    with_encoder = select("prototypicality", ctx, 5, encoder="pca", encoder_args={"dim": 2})
    assert np.array_equal(plain, with_encoder.indices)


def test_a_parameter_shared_with_a_sub_spec_has_its_one_default():
    from coretune.selectors import register_selector
    from coretune.selectors.base import SELECTORS

    with SELECTORS.temporary(), pytest.raises(ValueError, match="'knn_k' defaults to 10"):
        register_selector("_two_defaults", uses=("knn",))(
            lambda ctx, budget, knn_k=10: np.arange(budget + 0 * knn_k))
    with SELECTORS.temporary(), pytest.raises(ValueError, match="unknown sub-specs"):
        register_selector("_typo", uses=("encoders",))(lambda ctx, budget: np.arange(budget))
