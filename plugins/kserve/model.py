"""``BoostModel``: a ``kserve.Model`` that serves a model directory through ``yellowstone.boost``.

It loads what KServe's storage initializer put in ``/mnt/models`` (see :mod:`.layout`), boosts
it (or loads the shipped artifact directory), and answers V1 and V2 requests over REST and gRPC.
It is ready only once it can serve: boosted, or on ``native`` after a logged fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferRequest

from yellowstone.errors import BadRequestError, YellowstoneError
from yellowstone.spec import TensorSpec

from . import codec
from .layout import ModelLayout, artifact_inputs, read_examples, read_options, resolve_layout

logger = logging.getLogger(__name__)

BACKEND_HEADER = "x-yellowstone-backend"


class BoostModel(kserve.Model):
    """Serve one model directory, boosted.

    Args:
        name: the model name in the endpoint paths (``--model_name``).
        model_dir: the directory KServe's storage initializer filled (``--model_dir``).
        options: BoostConfig fields from the command line; they win over ``yellowstone.yaml``,
            which wins over ``YELLOWSTONE_*`` variables.
        inputs: input specs (``--input``); needed for TorchScript models unless
            ``yellowstone.yaml`` or the artifact directory names them.
        model_file: which model in ``model_dir`` when it holds several.
        artifact_dir: a precompiled artifact directory (default: the one found in ``model_dir``).
    """

    def __init__(self, name: str, model_dir: str | Path, *,
                 options: Mapping[str, Any] | None = None, inputs: Sequence[TensorSpec] = (),
                 model_file: str | None = None, artifact_dir: str | Path | None = None):
        super().__init__(name, return_response_headers=True)
        self.model_dir = Path(model_dir)
        self.options = dict(options or {})
        self.inputs = tuple(inputs)
        self.model_file = model_file
        self.artifact_dir = artifact_dir
        self.layout: ModelLayout | None = None
        self.boosted: Any = None
        self._output_meta: list[dict[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------
    def load(self) -> bool:
        """Boost the model; ready once it can serve. Errors propagate (the server must not start)."""
        if self.boosted is not None:
            return bool(getattr(self, "ready", False))
        import yellowstone

        layout = resolve_layout(self.model_dir, model_file=self.model_file,
                                artifact_dir=self.artifact_dir)
        opts = read_options(layout)
        specs = self.inputs or opts.inputs or (
            artifact_inputs(layout.artifact_dir) if layout.form == "torchscript" else ())
        if layout.form == "saved_model":
            _settle_tf_import_order()
        logger.info("%s: boosting %s (%s)%s", self.name, layout.model_path, layout.form,
                    f" with artifacts from {layout.artifact_dir}" if layout.artifact_dir else "")
        model: Any = str(layout.model_path)
        examples = read_examples(opts.examples)
        if layout.form == "saved_model" and opts.signature != "serving_default":
            model = yellowstone.load_model(model, examples, input_specs=specs or None,
                                           signature=opts.signature)
        boosted = yellowstone.boost(model, examples, config=opts.boost, input_specs=specs or None,
                                    sample_inputs=[examples] if examples else (),
                                    artifact_dir=layout.artifact_dir, **self.options)
        self.layout, self.boosted = layout, boosted
        self._output_meta = self._probe_outputs()
        report = boosted.report
        if boosted.backend == "native" and report.fallback_reason:
            logger.warning("%s: serving on native (fallback): %s", self.name, report.fallback_reason)
        logger.info("%s: ready on %s (cache %s, %.2f s)", self.name, boosted.backend,
                    report.cache, report.load_s or 0.0)
        self.ready = True
        return self.ready

    def start(self) -> None:
        """Readiness follows :meth:`load` only (KServe's default would mark any model ready)."""

    def stop(self) -> None:
        self.ready = False

    def _probe_outputs(self) -> list[dict[str, Any]]:
        """Output names, datatypes and shapes, from one run on the handle's random inputs."""
        handle = self.boosted.handle
        outs = self.boosted.run(handle.random_feeds(seed=0))
        meta = []
        for name, out in zip(self.boosted.output_names, outs):
            shape: list[Any] = list(out.shape)
            if handle.batched and shape:
                shape[0] = -1
            meta.append(codec.tensor_metadata(name, shape, out.dtype))
        return meta

    # -- metadata ---------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        if self.boosted is None:
            return []
        return [codec.tensor_metadata(s.name, s.shape, s.dtype) for s in self.boosted.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return list(self._output_meta)

    @property
    def backend(self) -> str | None:
        """The backend serving now, or None before :meth:`load`."""
        return None if self.boosted is None else self.boosted.backend

    # -- inference ---------------------------------------------------------------------------
    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        boosted = self.boosted
        if boosted is None:
            raise kserve.errors.ModelNotReady(self.name)
        specs = boosted.inputs
        if isinstance(payload, InferRequest):
            feeds = codec.decode_v2(payload, specs)
            codec.requested_outputs(payload, boosted.output_names)
        else:
            feeds = codec.decode_v1(payload, specs)
        loop = asyncio.get_running_loop()
        try:  # off the event loop: concurrent requests run side by side in its executor
            outputs = await loop.run_in_executor(None, boosted.run, feeds)
        except BadRequestError as exc:
            raise InvalidInput(str(exc)) from exc
        except YellowstoneError as exc:
            if 400 <= exc.http_status < 500:
                raise InvalidInput(str(exc)) from exc
            raise InferenceError(str(exc), status=str(exc.http_status)) from exc
        backend = boosted.backend
        if response_headers is not None:
            response_headers[BACKEND_HEADER] = backend
        names = boosted.output_names
        if isinstance(payload, InferRequest):
            return codec.encode_v2(payload, self.name, outputs, names,
                                   parameters={"yellowstone_backend": backend})
        return codec.encode_v1(outputs, names, rows=bool(boosted.handle.batched))


def _settle_tf_import_order() -> None:
    """Import torchvision before TensorFlow: the other order segfaults (see FACTS)."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        import sys

        if "tensorflow" not in sys.modules:
            import torchvision  # noqa: F401


__all__ = ["BoostModel", "BACKEND_HEADER"]
