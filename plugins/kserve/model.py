"""``BoostModel``: a ``kserve.Model`` that serves a model directory through ``yellowstone.boost``.

It loads what KServe's storage initializer put in ``/mnt/models`` (see :mod:`.layout`), boosts
it (or loads the shipped artifact directory), and answers V1 and V2 requests over REST and gRPC;
its own route decodes V2 REST bodies with NumPy (:mod:`.routes`). It is ready only once it can
serve: boosted, or on ``native`` after a logged fallback. Every error is answered with
``yellowstone.serving.status_of``'s status (:mod:`.errors`), and the ``yellowstone_*`` metrics
show on KServe's ``/metrics`` (:mod:`.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kserve
from kserve.protocol.infer_type import InferRequest

from yellowstone.config import BoostConfig
from yellowstone.serving import boost_config, read_examples, settle_heap
from yellowstone.spec import TensorSpec

from . import codec, errors, metrics, routes
from .layout import ModelLayout, ModelOptions, artifact_inputs, read_options, resolve_layout

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
        _install()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A REST worker process (``--workers`` > 1) unpickles the model: install there too."""
        self.__dict__.update(state)
        _install()

    # -- lifecycle ------------------------------------------------------------------------
    def resolve(self) -> tuple[ModelLayout, ModelOptions, BoostConfig]:
        """The model directory's layout, its ``yellowstone.yaml`` and the ``BoostConfig``.

        Flags (``options``) > ``yellowstone.yaml`` > ``YELLOWSTONE_*`` > defaults; the kill
        switch ``YELLOWSTONE_BACKEND=native`` wins over all (``yellowstone.serving``).
        """
        layout = resolve_layout(self.model_dir, model_file=self.model_file,
                                artifact_dir=self.artifact_dir)
        opts = read_options(layout)
        return layout, opts, boost_config(flags=self.options, section=opts.boost)

    def load(self) -> bool:
        """Boost the model; ready once it can serve. Errors propagate (the server must not start)."""
        if self.boosted is not None:
            return bool(getattr(self, "ready", False))
        import yellowstone

        layout, opts, config = self.resolve()
        specs = self.inputs or opts.inputs or (
            artifact_inputs(layout.artifact_dir) if layout.form == "torchscript" else ())
        if layout.form == "saved_model":
            _settle_tf_import_order()
        logger.info("%s: boosting %s (%s)%s", self.name, layout.model_path, layout.form,
                    f" with artifacts from {layout.artifact_dir}" if layout.artifact_dir else "")
        examples = read_examples(opts.examples)
        model = yellowstone.load_model(str(layout.model_path), examples, input_specs=specs or None,
                                       signature=opts.signature)
        model.name = self.name  # logs and the yellowstone_* series' model label: KServe's name
        boosted = yellowstone.boost(model, config=config,
                                    sample_inputs=[examples] if examples else (),
                                    artifact_dir=layout.artifact_dir)
        self.layout, self.boosted = layout, boosted
        self._output_meta = self._probe_outputs()
        report = boosted.report
        if boosted.backend == "native" and report.fallback_reason:
            logger.warning("%s: serving on native (fallback): %s", self.name, report.fallback_reason)
        logger.info("%s: ready on %s (cache %s, %.2f s)", self.name, boosted.backend,
                    report.cache, report.load_s or 0.0)
        settle_heap()  # the loaded model's objects out of the collector's full passes
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
        try:
            return await self._predict(boosted, payload, response_headers)
        except Exception as exc:  # noqa: BLE001 - every error is answered with its status
            error = errors.to_kserve(exc)
            errors.log_error(self.name, error)
            raise error from exc

    async def _predict(self, boosted: Any, payload: Any,
                       response_headers: dict[str, str] | None) -> Any:
        v2 = isinstance(payload, InferRequest)
        if v2:
            feeds = codec.decode_v2(payload, boosted.inputs)
            codec.requested_outputs(payload, boosted.output_names)
        else:
            payload = codec.v1_body(payload)  # parsed once, here
            groups = codec.v1_shape_groups(payload) if boosted.handle.batched else None
            if groups is not None:
                return await self._predict_v1_groups(boosted, payload, groups, response_headers)
            feeds = codec.decode_v1(payload, boosted.inputs)
        loop = asyncio.get_running_loop()
        # Off the event loop: concurrent requests run side by side in its executor.
        outputs, backend = await loop.run_in_executor(None, boosted.run_answered, feeds)
        if response_headers is not None:
            response_headers[BACKEND_HEADER] = backend
        names = boosted.output_names
        if v2:
            return codec.encode_v2(payload, self.name, outputs, names,
                                   parameters={"yellowstone_backend": backend})
        return codec.encode_v1(outputs, names, rows=bool(boosted.handle.batched))

    async def _predict_v1_groups(self, boosted: Any, body: Mapping[str, Any],
                                 groups: list[list[int]],
                                 response_headers: dict[str, str] | None) -> Any:
        """V1 instances of several shapes (sentences of several lengths), group by group.

        Each group of equal shapes runs as one batch; the predictions come back in the
        instances' order.
        """
        rows = body["instances"]
        answers: list[Any] = [None] * len(rows)
        for group in groups:
            part = await self._predict(boosted, {"instances": [rows[i] for i in group]},
                                       response_headers)
            for i, answer in zip(group, part["predictions"], strict=True):
                answers[i] = answer
        return {"predictions": answers}


def _install() -> None:
    """Install the REST error answers, the predictor's REST routes and the metrics.

    :func:`errors.install` (:class:`errors.StatusError` on KServe's app), :func:`routes.install`
    and :func:`metrics.register` (``/metrics``).
    """
    errors.install()
    routes.install()
    metrics.register()


def _settle_tf_import_order() -> None:
    """Import torchvision before TensorFlow: the other order segfaults (see FACTS)."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        import sys

        if "tensorflow" not in sys.modules:
            import torchvision  # noqa: F401


__all__ = ["BoostModel", "BACKEND_HEADER"]
