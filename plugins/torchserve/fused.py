"""Fused image preprocessing: TorchServe's stock vision pipeline, its tensor work compiled in.

TorchServe's ``image_classifier`` (any ``VisionHandler`` that keeps the stock ``preprocess`` and
``inference``) turns each image into floats on the host: PIL decode, ``Resize``, ``CenterCrop``,
``ToTensor``, ``Normalize``, ``torch.stack``. When its ``image_processing`` is exactly those four
torchvision transforms (bilinear, antialiased), the boost handler serves instead:

- on the host, uint8 pixels only: JPEG and PNG decoded by ``torchvision.io.decode_image``
  (libjpeg-turbo, libpng: PIL's pixels exactly) and resized and cropped by torchvision's uint8
  antialiased kernel (within one level of PIL's resize, on under 2% of the pixels); any other
  image PIL opens goes through the handler's own ``Resize`` and ``CenterCrop`` (PIL's pixels);
- in the compiled model (:class:`FusedImageModel`, boosted in place of the user's model): NHWC
  uint8 -> NCHW float, ``/255``, ``Normalize``, then the user's model, so every backend compiles
  the conversion and fuses it with the first layer.

Resizing stays on the host: a compiled graph takes fixed shapes and request images come in every
size. A batch with anything else (a tensor body, an image the stock pipeline turns into other than
three 8-bit channels) takes the handler's own path: its ``preprocess`` (which refuses what it
always refused) and the original model in torch.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from yellowstone import serving
from yellowstone.spec import TensorSpec

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImagePipeline:
    """A recognised ``Resize -> CenterCrop -> ToTensor -> Normalize`` pipeline.

    Attributes:
        resize: the handler's ``Resize`` (the PIL path runs it as is).
        crop: the handler's ``CenterCrop``.
        size: ``Resize``'s size (one int: the shorter side).
        crop_hw: ``CenterCrop``'s (height, width): the fused model's input is ``N x H x W x 3``.
        mean: ``Normalize``'s mean, per channel (or one for all).
        std: ``Normalize``'s std.
    """

    resize: Any
    crop: Any
    size: tuple[int, ...]
    crop_hw: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> str:
        """The pipeline, as a log line shows it."""
        return (f"Resize({list(self.size)}) -> CenterCrop({list(self.crop_hw)}) -> ToTensor -> "
                f"Normalize(mean={list(self.mean)}, std={list(self.std)})")


def recognise(handler: Any) -> tuple[ImagePipeline | None, str]:
    """The handler's pipeline when it is the stock one fused preprocessing reproduces, else why not."""
    try:
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode
        from ts.torch_handler.base_handler import BaseHandler
        from ts.torch_handler.vision_handler import VisionHandler
    except ImportError as exc:
        return None, f"torchvision or TorchServe's vision handler is not importable ({exc})"
    cls = type(handler)
    if not isinstance(handler, VisionHandler):
        return None, f"{cls.__name__} is not a TorchServe VisionHandler"
    if cls.preprocess is not VisionHandler.preprocess or "preprocess" in vars(handler):
        return None, f"{cls.__name__} has its own preprocess"
    if cls.inference is not BaseHandler.inference or "inference" in vars(handler):
        return None, f"{cls.__name__} has its own inference"
    if str(getattr(handler, "device", "cpu")) != "cpu":
        return None, f"the handler runs on {handler.device}"
    pipe = getattr(handler, "image_processing", None)
    steps = list(getattr(pipe, "transforms", None) or [])
    kinds = [transforms.Resize, transforms.CenterCrop, transforms.ToTensor, transforms.Normalize]
    if type(pipe) is not transforms.Compose or [type(s) for s in steps] != kinds:
        return None, ("image_processing is not exactly Resize -> CenterCrop -> ToTensor -> "
                      f"Normalize: {pipe!r}")
    resize, crop, _, norm = steps
    if (resize.interpolation != InterpolationMode.BILINEAR or resize.max_size is not None
            or resize.antialias is False):
        return None, f"{resize!r} is not bilinear and antialiased without max_size"
    size = (resize.size,) if isinstance(resize.size, int) else tuple(int(s) for s in resize.size)
    crop_hw = tuple(int(s) for s in crop.size)
    mean, std = tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std)
    if len(size) not in (1, 2) or len(crop_hw) != 2 or {len(mean), len(std)} - {1, 3}:
        return None, f"unexpected transform parameters: {pipe!r}"
    return ImagePipeline(resize=resize, crop=crop, size=size, crop_hw=(crop_hw[0], crop_hw[1]),
                         mean=mean, std=std), "recognised"


class FusedImageModel(torch.nn.Module):
    """The handler's ``ToTensor`` and ``Normalize`` on uint8 NHWC pixels, then the user's model.

    Boosted in the user's model's place, so every backend compiles the conversion too.
    """

    def __init__(self, model: Any, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> Any:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div(255.0)
        return self.model((x - self.mean) / self.std)


def image_size(body: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` of an 8-bit RGB PNG or an 8-bit 3-component JPEG, else None.

    These are the files ``decode_image`` turns into exactly what PIL opens as mode ``RGB``;
    palette, grey, alpha, 16-bit and CMYK images are left to PIL.
    """
    if body[:8] == PNG_MAGIC:
        if len(body) < 26 or body[12:16] != b"IHDR" or body[24] != 8 or body[25] != 2:
            return None
        return "png", int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    if body[:3] != b"\xff\xd8\xff":
        return None
    i, n = 2, len(body)
    while i + 4 <= n:
        if body[i] != 0xFF:
            return None
        marker = body[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            if i + 10 > n or body[i + 4] != 8 or body[i + 9] != 3:
                return None
            return ("jpeg", int.from_bytes(body[i + 7:i + 9], "big"),
                    int.from_bytes(body[i + 5:i + 7], "big"))
        if marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + int.from_bytes(body[i + 2:i + 4], "big")
    return None


class FusedPreprocess:
    """The handler's ``preprocess`` for the fused model: a uint8 NHWC batch, else its own result.

    Stages (each a method, so a profiler can time them): :meth:`decode` (bytes -> CHW uint8),
    :meth:`resize_crop` (-> HWC uint8 of the crop size), :meth:`to_batch` (stack).
    """

    def __init__(self, pipeline: ImagePipeline, original: Callable[..., Any]):
        self.pipeline = pipeline
        self.original = original

    def __call__(self, data: list, *args: Any, **kwargs: Any) -> Any:
        rows = []
        for row in data:
            pixels = self.pixels(row)
            if pixels is None:
                return self.original(data, *args, **kwargs)
            rows.append(pixels)
        return self.to_batch(rows)

    def pixels(self, row: Any) -> torch.Tensor | None:
        """One request's HWC uint8 crop, or None when only the handler's own path takes it."""
        if not isinstance(row, Mapping):
            return None
        body = row.get("data") or row.get("body")
        if isinstance(body, str):
            body = base64.b64decode(body)  # as the stock preprocess does (and fails alike)
        if not isinstance(body, (bytes, bytearray)):
            return None
        image = self.decode(bytes(body))
        if image is not None:
            pixels = self.resize_crop(image)
            if pixels is not None:
                return pixels
        return self.pil_pixels(bytes(body))

    def decode(self, body: bytes) -> torch.Tensor | None:
        """``decode_image``'s CHW uint8 RGB for 8-bit RGB PNGs and JPEGs PIL would open alike."""
        from PIL import Image
        from torchvision.io import ImageReadMode, decode_image

        found = image_size(body)
        if found is None:
            return None
        _, width, height = found
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:
            return None  # PIL's own decompression-bomb check decides
        try:
            image = decode_image(torch.frombuffer(bytearray(body), dtype=torch.uint8),
                                 mode=ImageReadMode.UNCHANGED)
        except RuntimeError:
            return None  # a damaged file: PIL says what the stock handler says
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            return None
        return image

    def resize_crop(self, image: torch.Tensor) -> torch.Tensor | None:
        """Resize and center-crop a CHW uint8 image on the host; HWC uint8 out (a view)."""
        import torchvision.transforms.v2.functional as F

        resized = F.resize(image, list(self.pipeline.size), antialias=True)
        height, width = self.pipeline.crop_hw
        if resized.shape[1] < height or resized.shape[2] < width:
            return None  # CenterCrop would pad: PIL's path does that exactly
        return F.center_crop(resized, [height, width]).permute(1, 2, 0)

    def pil_pixels(self, body: bytes) -> torch.Tensor | None:
        """Any image PIL opens, through the handler's own Resize and CenterCrop (PIL's pixels)."""
        import numpy as np
        from PIL import Image

        image = self.pipeline.crop(self.pipeline.resize(Image.open(io.BytesIO(body))))
        array = np.array(image)
        if array.dtype != np.uint8 or array.shape != (*self.pipeline.crop_hw, 3):
            return None  # ToTensor would not give 3 x 8-bit channels: the handler's own path
        return torch.from_numpy(array)

    def to_batch(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """Stack HWC crops into the fused model's NHWC uint8 input."""
        return torch.stack(rows)


def example_input(pipeline: ImagePipeline) -> torch.Tensor:
    """A fresh random uint8 batch of one, over the full 0..255 range, shaped like the crops.

    Drawn by the serving layer's example-input maker, which takes an integer input's range
    from the example values it is given: here, the two ends of the pixel range.
    """
    import numpy as np

    height, width = pipeline.crop_hw
    spec = TensorSpec(name="pixels", shape=(1, height, width, 3), dtype="uint8")
    pixel_range = np.array([[0, 255]], dtype=np.uint8)
    feeds = serving.example_feeds([spec], like={spec.name: pixel_range})
    return torch.from_numpy(feeds[spec.name])
