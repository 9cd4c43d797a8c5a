"""One loaded model version as TF Serving runs it: a TensorFlow session, the shim under chosen signatures."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yellowstone import metrics
from yellowstone.breaker import DeadlineRunner
from yellowstone.errors import YellowstoneError

from . import artifacts, codec
from .errors import ServingError
from .fence import Fallback, ShimFence
from .inference import DEFAULT_SIGNATURE, ExampleApis, invalid, shape_text
from .session import TensorFlowSession, default_session_config

if TYPE_CHECKING:
    from yellowstone import BoostConfig

logger = logging.getLogger(__name__)

PREDICT, CLASSIFY, REGRESS = artifacts.PREDICT_METHOD, artifacts.CLASSIFY_METHOD, artifacts.REGRESS_METHOD


def _fits(shape: Sequence[int], declared: Sequence[int] | None) -> bool:
    if declared is None:
        return True
    return len(shape) == len(declared) and all(d < 0 or d == s for s, d in zip(shape, declared))


class Servable(ExampleApis):
    """A SavedModel version as TF Serving serves it, with the shim under the signatures it wins.

    Predict follows predict_util.cc (its checks, in its order, with its error texts); Classify,
    Regress and MultiInference come from :class:`.inference.ExampleApis`. A request to a
    signature the shim serves runs on the shim when it fits the shim's artifact, else on
    TensorFlow (a fallback, counted with reason ``shape``). Each shim runs behind a
    :class:`.fence.ShimFence`: the core's per-call deadline (``call_timeout_s``) and circuit
    breaker (``max_runtime_failures``, ``breaker_backoff_s``), whose fallbacks are counted with
    the core's reasons (``runtime``, ``deadline``, ``breaker-open``). A fallback is counted once
    TensorFlow has answered the request: one TensorFlow refuses too is the client's error.

    Args:
        path: the version directory (holds ``saved_model.pb``).
        shim_policy: ``auto`` / ``always`` / ``off`` (see :func:`.artifacts.select_shim`).
        boost: signature keys to boost (``("all",)`` for every boostable predict signature).
        artifact_root: where shim directories built at load time go; by default they are
            entries of the core's cache. A shipped ``<version>/yellowstone/<key>/`` built here
            for this model is served as it is.
        config: the boost options (``yellowstone.serving.boost_config``); None reads
            ``YELLOWSTONE_*`` over the defaults. Its ``threads`` (when set) also sizes the
            session's intra-op pool.
        tags: the MetaGraphDef to load (``--saved_model_tags``).
        session_config: a ``tf.compat.v1.ConfigProto`` for the session, instead of the default.
        method_name_check: ``--enable_signature_method_name_check`` (TF Serving's default: off,
            so Classify and Regress take any signature whose inputs and outputs fit).
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | os.PathLike[str],
        *,
        shim_policy: str = artifacts.DEFAULT_POLICY,
        boost: Sequence[str] = ("serving_default",),
        artifact_root: str | os.PathLike[str] | None = None,
        config: BoostConfig | None = None,
        tags: Sequence[str] = ("serve",),
        session_config: Any = None,
        method_name_check: bool = False,
    ):
        self.name, self.version, self.path = name, int(version), Path(path)
        self.method_name_check = method_name_check
        threads = config.threads if config is not None else 0
        self.session = TensorFlowSession(self.path, tags, session_config or default_session_config(threads))
        self.meta_graph = self.session.meta_graph
        self.signature_defs = self.meta_graph.signature_def
        self.shims: dict[str, Any] = {}
        self.fences: dict[str, ShimFence] = {}
        self._deadline: DeadlineRunner | None = None
        self.choices: dict[str, artifacts.ShimChoice] = {}
        self.shim_errors: dict[str, str] = {}
        self._fallbacks_logged: set[str] = set()  # signatures whose misfit was logged
        if shim_policy != "off":
            cfg = artifacts.resolve_config(config)
            if cfg.call_timeout_s > 0:
                self._deadline = DeadlineRunner(f"{name}-v{self.version}-shim", cfg.call_timeout_s)
            keys = (
                [k for k, s in self.signature_defs.items() if artifacts.boostable(s)]
                if tuple(boost) == ("all",)
                else [k for k in boost if k in self.signature_defs]
            )
            for key in keys:
                self._choose(key, shim_policy, artifact_root, cfg)

    # -- loading ---------------------------------------------------------------------------
    def _choose(self, key: str, policy: str, root: str | os.PathLike[str] | None, cfg: BoostConfig) -> None:
        """Let :func:`.artifacts.select_shim` choose what serves signature ``key``; keep its shim."""
        where = f"{self.name} v{self.version} [{key}]"
        sig = self.signature_defs[key]
        if not artifacts.boostable(sig):
            return
        out_dir = Path(root) / self.name / str(self.version) / key if root else None
        try:
            choice = artifacts.select_shim(self.path, key, sig, policy=policy, config=cfg, out_dir=out_dir,
                                           shipped=self.path / artifacts.SHIPPED_DIR / key)
        except (YellowstoneError, OSError, RuntimeError, ValueError) as exc:
            self.shim_errors[key] = str(exc)
            logger.warning("%s: the shim cannot serve this signature (%s); TensorFlow serves it", where, exc)
            self._gauge_tensorflow(key, 1)
            return
        self.choices[key] = choice
        if choice.shim is None:
            logger.info("%s: TensorFlow serves this signature: %s", where, choice.reason)
            self._gauge_tensorflow(key, 1)
            return
        self.shims[key] = choice.shim
        self.fences[key] = ShimFence(where, self._labels(key), choice.shim.backend, cfg, self._deadline)
        logger.info("%s: served by the shim (%s, C) from %s: %s", where, choice.backend, choice.path,
                    choice.reason)

    def _labels(self, key: str) -> dict[str, str]:
        return {"model": self.name, "version": str(self.version), "signature": key}

    def _gauge_tensorflow(self, key: str, value: int) -> None:
        """``yellowstone_backend_in_use`` for a signature TensorFlow serves from the start."""
        labels = self._labels(key)
        metrics.emit(metrics.BACKEND_IN_USE, value, "gauge", **labels, backend=artifacts.TENSORFLOW)

    def close(self) -> None:
        """Free the shim models (one still running a slow call: once it returns) and the session."""
        for key, shim in self.shims.items():
            fence = self.fences.get(key)
            if fence is None:
                shim.close()
            else:
                fence.close(shim.close)
        self.shims.clear()
        self.fences.clear()
        for key in (*self.shim_errors, *(k for k, c in self.choices.items() if c.shim is None)):
            self._gauge_tensorflow(key, 0)
        self.session.close()

    @functools.cached_property
    def _loaded(self) -> Any:
        """TF2's view (``tf.saved_model.load``), loaded on first use; serving never uses it."""
        import tensorflow as tf

        return tf.saved_model.load(str(self.path))

    # -- TensorFlow ------------------------------------------------------------------------
    def run_session(
        self, feeds: Sequence[tuple[str, np.ndarray]], fetches: Sequence[str]
    ) -> list[np.ndarray]:
        """Session::Run by tensor names."""
        return self.session.run(feeds, fetches)

    def run_tensorflow(self, key: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run signature ``key`` in TensorFlow: its inputs fed by alias, every output fetched."""
        sig = self.signature_defs[key]
        aliases = sorted(sig.outputs)
        values = self.run_session(
            [(sig.inputs[a].name, np.asarray(feeds[a])) for a in sorted(feeds)],
            [sig.outputs[a].name for a in aliases],
        )
        return dict(zip(aliases, values))

    # -- Predict ---------------------------------------------------------------------------
    def signature(self, key: str) -> Any:
        """The SignatureDef ``key`` for Predict; FAILED_PRECONDITION when absent, as TF Serving answers."""
        key = key or DEFAULT_SIGNATURE
        sig = self.signature_defs.get(key)
        if sig is None or key.startswith("__"):  # __saved_model_init_op is not a serving signature
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return sig

    def input_values(self, sig: Any, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """VerifyRequestInputsSize + GetInputValues: the signature's inputs, defaults filled in.

        ``request`` values are arrays or TensorProtos (decoded here, as TF Serving does).
        """
        got, want, defaults = set(request), set(sig.inputs), sig.defaults
        if len(got) > len(want) or (len(got) < len(want) and not defaults):
            raise invalid(
                f"input size does not match signature: {len(got)}!={len(want)} "
                f"len({{{','.join(sorted(got))}}}) != len({{{','.join(sorted(want))}}}). "
                f"Sent extra: {{{','.join(sorted(got - want))}}}. "
                f"Missing but required: {{{','.join(sorted(want - got))}}}."
            )
        out: dict[str, np.ndarray] = {}
        for alias in sorted(want):
            if alias in request:
                value = request[alias]
            elif alias in defaults:
                value = defaults[alias]
            else:
                raise invalid(
                    f"Signature input alias: {alias}(feed name: {sig.inputs[alias].name}) not found in "
                    f"request and no default value provided. Inputs expected to be in the request "
                    f"{{{','.join(sorted(got))}}}, or default input alias set: {','.join(sorted(defaults))}"
                )
            out[alias] = value if isinstance(value, np.ndarray) else self._decode(alias, value)
        used = got & want
        if got and len(used) != len(got):
            raise invalid(
                f"Inputs contains invalid name. Used request inputs: {','.join(sorted(used))}, "
                f"request input: {','.join(sorted(got))}"
            )
        return out

    @staticmethod
    def _decode(alias: str, proto: Any) -> np.ndarray:
        try:
            return codec.to_ndarray(proto)
        except ServingError as exc:
            raise invalid(f"tensor parsing error: {alias}") from exc

    @staticmethod
    def output_aliases(sig: Any, output_filter: Sequence[str]) -> list[str]:
        """The outputs to answer: the filter (checked) or every output."""
        seen: list[str] = []
        for alias in output_filter:
            if alias not in sig.outputs:
                raise invalid(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(sig.outputs))}}}."
                )
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen or sorted(sig.outputs)

    @staticmethod
    def check_dtypes(sig: Any, feeds: Mapping[str, np.ndarray]) -> None:
        """The session's feed type check, worded as Session::Run words it."""
        for i, alias in enumerate(sorted(feeds)):
            want, arr = sig.inputs[alias].dtype, feeds[alias]
            if want in (0, codec.DT_STRING) and arr.dtype.kind in "OSU":
                continue
            try:
                ok = want != 0 and codec.np_dtype(want) == arr.dtype
            except ServingError:
                ok = False
            if not ok:
                raise invalid(
                    f"Expects arg[{i}] to be {codec.DT_NAMES.get(want, want)} but "
                    f"{codec.dtype_name(arr.dtype)} is provided"
                )

    def predict(
        self, key: str, inputs: Mapping[str, Any], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """TF Serving's Predict: named inputs in, the signature's (filtered) outputs out."""
        key = key or DEFAULT_SIGNATURE
        sig = self.signature(key)
        if self.method_name_check and sig.method_name not in (PREDICT, CLASSIFY, REGRESS):
            raise ServingError(
                "INTERNAL",
                f"Expected prediction signature method_name to be one of "
                f"{{{PREDICT}, {CLASSIFY}, {REGRESS}}}. Was: {sig.method_name}",
            )
        feeds = self.input_values(sig, inputs)
        aliases = self.output_aliases(sig, list(output_filter))
        self.check_dtypes(sig, feeds)
        out = self._run_shim(key, feeds)
        if isinstance(out, Fallback):
            why, out = out, self.run_tensorflow(key, feeds)
            self._fallback(key, why)  # counted only now: TensorFlow answered it
        elif out is None:
            out = self.run_tensorflow(key, feeds)
        return {a: out[a] for a in aliases}

    # -- the shim ----------------------------------------------------------------------------
    def shim_misfit(self, key: str, feeds: Mapping[str, np.ndarray]) -> str | None:
        """Why ``feeds`` do not fit the artifact serving ``key`` (dtype, rank, dims, ranges); None: fit."""
        shim = self.shims[key]
        for name, _tensor, dtype, shape in shim.inputs:
            arr = feeds.get(name)
            if arr is None or arr.dtype != np.dtype(dtype) or not _fits(arr.shape, list(shape)):
                got = "missing" if arr is None else f"{arr.dtype}{shape_text(arr.shape)}"
                return f"input '{name}' is {got}, the artifact takes {dtype}{shape_text(shape)}"
        choice = self.choices.get(key)
        for spec in choice.input_specs if choice is not None else ():
            arr = feeds.get(spec.name)
            for i, dim in enumerate(spec.shape if arr is not None else ()):
                bounds = spec.range_of(dim) if isinstance(dim, str) else None
                if bounds is not None and i < arr.ndim and not bounds[0] <= arr.shape[i] <= bounds[1]:
                    return (f"input '{spec.name}' has {dim}={arr.shape[i]}, the artifact was validated "
                            f"for {bounds[0]}..{bounds[1]}")
        return None

    def _run_shim(self, key: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | Fallback | None:
        """The shim's answer; why TensorFlow must serve this request instead; None: no shim here."""
        shim, fence = self.shims.get(key), self.fences.get(key)
        if shim is None or fence is None:
            return None
        misfit = self.shim_misfit(key, feeds)
        if misfit is not None:
            return Fallback("shape", misfit)
        return fence.run(functools.partial(shim.run, feeds))

    def _fallback(self, key: str, why: Fallback) -> None:
        """Count a request the shim handed to TensorFlow and TensorFlow answered.

        A misfit is logged (WARNING the first time per signature); the fence logs its own
        episodes (failures, deadline, breaker) once each, so those requests log at DEBUG.
        """
        backend = self.fences[key].backend if key in self.fences else "shim"
        metrics.emit(metrics.FALLBACKS, 1, model=self.name, backend=backend, reason=why.reason)
        first = why.reason == "shape" and key not in self._fallbacks_logged
        if first:
            self._fallbacks_logged.add(key)
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "%s v%d [%s]: the shim (%s) cannot run this request (%s); TensorFlow serves it",
            self.name, self.version, key, backend, why.detail,
        )
