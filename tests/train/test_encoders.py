"""Encoders: the packaged ImageNet EfficientNet-Lite0, timm models from local weights,
pixels/PCA and a SimCLR encoder trained on the unlabelled images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from coretune.train.data import load_dataset
from coretune.train.encoders import (
    UnknownEncoderError,
    encode,
    get_encoder,
    imagenet_input,
    load_lite0,
    nt_xent,
)


@pytest.fixture(scope="module")
def small():
    ds = load_dataset("digits")
    return replace(ds, train_x=ds.train_x[:24], train_y=ds.train_y[:24])


def test_lite0_predicts_imagenet_classes_of_sklearns_sample_images():
    from sklearn.datasets import load_sample_image

    model = load_lite0()
    prepare = imagenet_input(224)
    predictions = []
    for name in ("china.jpg", "flower.jpg"):
        image = torch.as_tensor(np.array(load_sample_image(name))).permute(2, 0, 1)[None]
        with torch.no_grad():
            predictions.append(int(model(prepare(image)).argmax()))
    assert predictions == [442, 985]


def test_lite0_encoder_gives_pooled_features(small):
    emb = encode("efficientnet_lite0", small, {"size": 96})
    assert emb.shape == (24, 1280) and np.isfinite(emb).all() and emb.std() > 0


def test_timm_encoder_loads_local_weights_and_refuses_missing_ones(small, tmp_path):
    import timm

    model = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    emb = encode("timm/resnet10t", small, {"size": 32}, tmp_path / "w.pth")
    model.eval()
    with torch.no_grad():
        prepare = imagenet_input(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        ref = model(prepare(torch.as_tensor(small.train_x)))
    assert np.allclose(emb, ref.numpy(), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        encode("timm/resnet10t", small, {}, tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="needs encoder_weights"):
        encode("timm/resnet10t", small)
    with pytest.raises(UnknownEncoderError, match="no_such_net"):
        get_encoder("timm/no_such_net")
    with pytest.raises(UnknownEncoderError, match="available"):
        get_encoder("bogus")


def test_pixels_and_pca(small):
    px = encode("pixels", small)
    assert px.shape == (24, 64) and abs(float(px.mean())) < 1e-5
    pca = encode("pca", small, {"dim": 5})
    assert pca.shape == (24, 5)
    assert np.allclose(np.cov(pca.T), np.diag(np.diag(np.cov(pca.T))), atol=1e-3)


def test_nt_xent_prefers_matching_views():
    z = torch.randn(16, 8)
    assert nt_xent(z, z + 0.01 * torch.randn(16, 8), 0.5) < nt_xent(z, torch.randn(16, 8), 0.5)


def test_simclr_trains_on_unlabelled_images(small):
    a = encode("simclr", small, {"epochs": 2, "batch_size": 12, "arch": "small_cnn",
                                 "seed": 1})
    b = encode("simclr", small, {"epochs": 2, "batch_size": 12, "arch": "small_cnn",
                                 "seed": 1})
    assert a.shape == (24, 128) and np.array_equal(a, b)  # seeded
    assert not np.array_equal(a, encode("simclr", small, {"epochs": 2, "batch_size": 12,
                                                          "seed": 2}))
