"""The fused image model is boosted on pixels from the serving layer's example-input maker."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


class _Crops:
    crop_hw = (224, 200)  # the only part of the ImagePipeline example_input reads


def test_example_input_is_fresh_uint8_over_the_full_pixel_range():
    from yellowstone.plugins.torchserve.fused import example_input

    first, second = example_input(_Crops()), example_input(_Crops())
    assert first.shape == (1, 224, 200, 3) and first.dtype == torch.uint8
    # 134,400 draws from 0..255: both ends appear (a miss has odds below 1e-200).
    assert (int(first.min()), int(first.max())) == (0, 255)
    assert len(torch.unique(first)) == 256
    assert not torch.equal(first, second)
