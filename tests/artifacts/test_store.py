import numpy as np
import pytest

from coretune.harness.artifacts import ArtifactStore, CorruptArtifactError, content_key


def test_content_key_is_order_insensitive_and_spec_sensitive():
    assert content_key("t", {"a": 1, "b": [1, 2]}) == content_key("t", {"b": [1, 2], "a": 1})
    assert content_key("t", {"a": 1}) != content_key("t", {"a": 2})
    assert content_key("t", {"a": 1}) != content_key("u", {"a": 1})


def test_get_or_compute_runs_once_and_round_trips(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5)}, {"acc": 0.5}, {"blob": b"abc"}

    key = content_key("scores", {"d": "digits"})
    art, computed = store.get_or_compute(key, compute)
    again, computed_again = store.get_or_compute(key, compute)
    assert computed and not computed_again and len(calls) == 1
    assert np.array_equal(again.array("x"), np.arange(5)) and again.blob("blob") == b"abc"
    assert again.meta["acc"] == 0.5
    assert not [p for p in (tmp_path / "scores").iterdir() if p.name.startswith(".")]


def test_corrupt_artifact_raises_naming_the_file(tmp_path):
    store = ArtifactStore(tmp_path)
    key = content_key("scores", {"d": 1})
    art = store.save(key, {"x": np.arange(100)}, {})
    (art.path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError, match="x.npy"):
        store.load(key)
    (art.path / "meta.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="meta.json"):
        store.load(key)
    assert (art.path / "x.npy").exists()  # nothing is deleted behind the user's back
