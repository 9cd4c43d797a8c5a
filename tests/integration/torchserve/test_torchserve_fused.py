"""Fused image preprocessing, in the worker's own code path (no server): the boost handler around
TorchServe's ``image_classifier`` against the stock handler, on images PIL writes here.

Stated tolerance: JPEG and PNG files ``decode_image`` takes decode to PIL's pixels exactly; after
the resize (torchvision's uint8 antialiased kernel against PIL's) and the crop, every pixel is
within one level of PIL's and at most 2% of them differ at all. The classifier's top-5 labels are
the stock handler's, probabilities within 1e-4. Images the stock pipeline refuses (grey, alpha,
palette, CMYK: not three 8-bit channels after ToTensor) are refused alike; unrecognised pipelines
and tensor bodies keep the handler's own preprocessing.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from tsutil import ASSETS, assert_same_topk

pytestmark = [pytest.mark.slow]
torch = pytest.importorskip("torch")

SIZES = [(240, 320), (500, 375), (48, 64), (300, 300), (227, 451)]  # (height, width)
MODES = [("RGB", "JPEG", {"quality": 90}), ("RGB", "JPEG", {"quality": 75, "subsampling": 0}),
         ("RGB", "PNG", {}), ("L", "JPEG", {}), ("L", "PNG", {}), ("RGBA", "PNG", {}),
         ("P", "PNG", {}), ("LA", "PNG", {}), ("CMYK", "JPEG", {})]


def make_image(height: int, width: int, mode: str, fmt: str, seed: int = 0, **save) -> bytes:
    """A smooth gradient with noise on top (not one colour), in ``mode``, encoded by PIL."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (height + width)], -1)
    rgb = (smooth * 0.6 + rng.integers(0, 256, (height, width, 3)) * 0.4).astype(np.uint8)
    image = Image.fromarray(rgb)
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
        image = image.convert("RGBA")
        image.putalpha(alpha)
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode != "RGB":
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


class _Metrics:
    def add_time(self, *args, **kwargs):
        pass

    def add_counter(self, *args, **kwargs):
        pass

    def add_metric(self, *args, **kwargs):
        pass


def _context(model_dir, section=None, batch: int = 1):
    import ts
    from ts.context import Context, RequestProcessor

    manifest = {"model": {"modelName": "img", "serializedFile": "tiny_cnn.pth",
                          "modelFile": "tiny_cnn.py", "handler": "boost_handler.py"}}
    yaml_config = {"minWorkers": 1, "batchSize": batch}
    if section is not None:
        yaml_config["yellowstone"] = section
    ctx = Context("img", str(model_dir), manifest, batch, None, ts.__version__, True, _Metrics(),
                  yaml_config)
    ctx.request_ids = {0: "req-0"}
    ctx.request_processor = [RequestProcessor({})]
    return ctx


def _point(ctx, n: int) -> None:
    from ts.context import RequestProcessor

    ctx.request_ids = {i: f"req-{i}" for i in range(n)}
    ctx.request_processor = [RequestProcessor({}) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, models):
    out = tmp_path_factory.mktemp("fused-model")
    shutil.copy(models["cnn_state"], out / "tiny_cnn.pth")
    shutil.copy(ASSETS / "tiny_cnn.py", out / "tiny_cnn.py")
    return out


@pytest.fixture(scope="module")
def stock(model_dir):
    from ts.torch_handler.image_classifier import ImageClassifier

    handler = ImageClassifier()
    handler.test_context = _context(model_dir)
    handler.initialize(handler.test_context)
    return handler


def _boost(model_dir, ys_cache, backend, handler="image_classifier", batch=1, **extra):
    from yellowstone.plugins.torchserve.handler import BoostHandler

    section = {"handler": handler, "backends": backend, "time_budget_s": 0.05,
               "validation_rounds": 1, "cache_dir": str(ys_cache), **extra}
    ctx = _context(model_dir, section, batch)
    boosted = BoostHandler()
    boosted.initialize(ctx)
    return boosted, ctx


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def fused(request, model_dir, ys_cache):
    pytest.importorskip(request.param)
    handler, ctx = _boost(model_dir, ys_cache, request.param, batch=4)
    yield handler, ctx
    handler._bridge.detach()


def _stock_answer(stock, body):
    """The stock handler's answer, or the exception its preprocess raises."""
    try:
        return stock.handle([{"body": body}], stock.test_context)
    except Exception as exc:  # noqa: BLE001 - what the stock handler refuses
        return exc


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("fmt,save", [("JPEG", {"quality": 90}), ("PNG", {})])
def test_fast_decode_and_resize_are_within_one_level_of_pil(stock, height, width, fmt, save):
    from PIL import Image

    from yellowstone.plugins.torchserve.fused import FusedPreprocess, recognise

    pipeline, why = recognise(stock)
    assert pipeline is not None, why
    pre = FusedPreprocess(pipeline, stock.preprocess)
    body = make_image(height, width, "RGB", fmt, seed=height, **save)
    decoded = pre.decode(body)
    assert decoded is not None  # an 8-bit RGB JPEG/PNG takes the fast path
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(),
                                  np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
    fast = pre.resize_crop(decoded).numpy().astype(int)
    pil = pre.pil_pixels(body).numpy().astype(int)
    assert fast.shape == pil.shape == (224, 224, 3)
    diff = np.abs(fast - pil)
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.02, (diff.max(), (diff > 0).mean())


def test_fused_model_matches_stock_on_every_size_and_mode(fused, stock):
    from ts.utils.util import PredictionException

    handler, ctx = fused
    info = handler.describe()["yellowstone"]
    assert info["preprocess"].startswith("fused: Resize([256]) -> CenterCrop([224, 224])"), info
    assert info["backend"] == handler.boost_config.backends[0], info
    assert handler.boosted.inputs[0].dtype == "uint8"
    for seed, (height, width) in enumerate(SIZES):
        for mode, fmt, save in MODES:
            body = make_image(height, width, mode, fmt, seed=seed, **save)
            want = _stock_answer(stock, body)
            _point(ctx, 1)
            if isinstance(want, Exception):  # refused by the stock pipeline: refused alike
                with pytest.raises(PredictionException) as err:
                    handler.handle([{"body": body}], ctx)
                assert err.value.error_code == 400, (mode, fmt)
                assert type(want).__name__ in err.value.message, (mode, fmt, err.value.message)
                continue
            assert mode == "RGB", f"stock accepted {mode}: {want}"
            (got,) = handler.handle([{"body": body}], ctx)
            assert_same_topk(want[0], got)


def test_a_batch_with_a_refused_image_serves_the_others(fused, stock):
    handler, ctx = fused
    bodies = [make_image(240, 320, "RGB", "JPEG", seed=1), make_image(240, 320, "L", "PNG"),
              make_image(333, 250, "RGB", "PNG", seed=2), make_image(100, 90, "RGB", "JPEG")]
    _point(ctx, len(bodies))
    out = handler.handle([{"body": b} for b in bodies], ctx)
    assert ctx.get_response_status(1)[0] == 400
    assert "ImageClassifier.preprocess rejected" in json.loads(out[1])["message"]
    for i in (0, 2, 3):
        assert ctx.get_response_status(i)[0] in (None, 200)
        assert_same_topk(_stock_answer(stock, bodies[i])[0], out[i])


def test_a_tensor_body_takes_the_handlers_own_path(fused, stock):
    handler, ctx = fused
    pixels = torch.rand(3, 224, 224).tolist()
    _point(ctx, 1)
    (got,) = handler.handle([{"body": pixels}], ctx)
    assert_same_topk(stock.handle([{"body": pixels}], stock.test_context)[0], got)


def test_unrecognised_pipelines_keep_the_stock_path(model_dir, ys_cache, stock, monkeypatch):
    from torchvision import transforms
    from ts.torch_handler.image_classifier import ImageClassifier

    from yellowstone.plugins.torchserve import fused as fused_module

    class Nearest(ImageClassifier):
        image_processing = transforms.Compose([
            transforms.Resize(256, interpolation=transforms.InterpolationMode.NEAREST),
            transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    class OwnPreprocess(ImageClassifier):
        def preprocess(self, data):
            return super().preprocess(data)

    body = make_image(240, 320, "RGB", "JPEG", seed=7)
    for cls, why in ((Nearest, "is not bilinear"), (OwnPreprocess, "has its own preprocess")):
        reference, reference_ctx = cls(), _context(model_dir)
        reference.initialize(reference_ctx)
        want = reference.handle([{"body": body}], reference_ctx)
        monkeypatch.setattr("yellowstone.plugins.torchserve.handler.load_handler_class",
                            lambda spec, cls=cls: cls)
        handler, ctx = _boost(model_dir, ys_cache, "onnxruntime",
                              input_shape=[1, 3, 224, 224])
        try:
            note = handler.describe()["yellowstone"]["preprocess"]
            assert note.startswith("not fused") and why in note, note
            assert not isinstance(handler.inner.preprocess, fused_module.FusedPreprocess)
            assert handler.boosted.inputs[0].dtype == "float32"
            (got,) = handler.handle([{"body": body}], ctx)
            assert_same_topk(want[0], got)
        finally:
            handler._bridge.detach()


def test_fusion_can_be_turned_off(model_dir, ys_cache, stock):
    handler, ctx = _boost(model_dir, ys_cache, "onnxruntime", fused_preprocess=False,
                          input_shape=[1, 3, 224, 224])
    try:
        assert handler.describe()["yellowstone"]["preprocess"].startswith("off")
        body = make_image(300, 300, "RGB", "PNG", seed=3)
        (got,) = handler.handle([{"body": body}], ctx)
        assert_same_topk(_stock_answer(stock, body)[0], got)
    finally:
        handler._bridge.detach()
