"""One loaded model version: its SignatureDefs, boosted signatures on the shim, TensorFlow for the rest."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yellowstone.errors import YellowstoneError

from . import artifacts
from .codec import DT_NAMES, np_dtype
from .errors import ServingError

logger = logging.getLogger(__name__)


class Servable:
    """A SavedModel version as TF Serving serves it, with the shim under boosted signatures.

    Args:
        path: the version directory (holds ``saved_model.pb``).
        shim_policy: ``always`` / ``auto`` (see :func:`artifacts.prepare_signature`) or ``off``.
        boost: signature keys to boost (``("all",)`` for every boostable predict signature).
        artifact_root: where artifacts compiled at load time go (shipped ones are used in place).
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | os.PathLike[str],
        *,
        shim_policy: str = "always",
        boost: Sequence[str] = ("serving_default",),
        artifact_root: str | os.PathLike[str] | None = None,
        threads: int = 0,
        boost_options: Mapping[str, Any] | None = None,
    ):
        import tensorflow as tf

        self.name, self.version, self.path = name, int(version), Path(path)
        self.meta_graph = artifacts.read_meta_graph(self.path)
        self.signature_defs = self.meta_graph.signature_def
        self._loaded = tf.saved_model.load(str(self.path))
        self.shims: dict[str, Any] = {}
        self.shim_errors: dict[str, str] = {}
        if shim_policy != "off":
            keys = (
                [k for k, s in self.signature_defs.items() if artifacts.boostable(s)]
                if tuple(boost) == ("all",)
                else [k for k in boost if k in self.signature_defs]
            )
            for key in keys:
                self._boost(key, shim_policy, artifact_root, threads, boost_options)

    # -- loading ---------------------------------------------------------------------------
    def _boost(
        self,
        key: str,
        policy: str,
        root: str | os.PathLike[str] | None,
        threads: int,
        options: Mapping[str, Any] | None,
    ) -> None:
        from .native import ShimModel

        shipped = self.path / artifacts.SHIPPED_DIR / key
        try:
            if (shipped / artifacts.MANIFEST).exists():
                where: Path | None = shipped
                logger.info(
                    "%s v%d [%s]: using the shipped artifact %s", self.name, self.version, key, shipped
                )
            else:
                base = (
                    Path(root) if root else Path(os.environ.get("TMPDIR", "/tmp")) / "yellowstone-tfserving"
                )
                where = artifacts.prepare_signature(
                    self.path,
                    key,
                    base / self.name / str(self.version) / key,
                    policy=policy,
                    boost_options=options,
                )
            if where is None:
                return
            shim = ShimModel(where, threads=threads)
            artifacts.check_against(shim, lambda feeds, key=key: self.run_tensorflow(key, feeds))
        except (YellowstoneError, OSError, RuntimeError, ValueError) as exc:
            self.shim_errors[key] = str(exc)
            logger.warning(
                "%s v%d [%s]: the shim cannot serve this signature (%s); TensorFlow serves it",
                self.name,
                self.version,
                key,
                exc,
            )
            return
        self.shims[key] = shim
        logger.info("%s v%d [%s]: served by the shim (OpenVINO, C)", self.name, self.version, key)

    def close(self) -> None:
        """Free the shim models (TensorFlow's objects go with the garbage collector)."""
        for shim in self.shims.values():
            shim.close()
        self.shims.clear()

    # -- serving ---------------------------------------------------------------------------
    def signature(self, key: str) -> Any:
        """The SignatureDef ``key``; FAILED_PRECONDITION when absent, as TF Serving answers."""
        key = key or "serving_default"
        sig = self.signature_defs.get(key)
        if sig is None or key.startswith("__"):
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        return sig

    def check_feeds(self, sig: Any, feeds: Mapping[str, np.ndarray]) -> None:
        """INVALID_ARGUMENT unless ``feeds`` are exactly the signature's inputs, typed and shaped."""
        names = sorted(sig.inputs)
        if sorted(feeds) != names:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: "
                f"{len(feeds)}!={len(names)} len({{{', '.join(sorted(feeds))}}}) != "
                f"len({{{', '.join(names)}}})",
            )
        for i, key in enumerate(names):
            info, arr = sig.inputs[key], feeds[key]
            want = np_dtype(info.dtype)
            got = arr.dtype
            if want != got:
                got_name = next(
                    (
                        n
                        for d, n in DT_NAMES.items()
                        if d in (1, 2, 3, 4, 5, 6, 9, 10, 17, 19, 22, 23) and np_dtype(d) == got
                    ),
                    "string" if got.kind == "O" else str(got),
                )
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{i}] to be {DT_NAMES[info.dtype]} but {got_name} is provided",
                )
            if not info.tensor_shape.unknown_rank:
                dims = [d.size for d in info.tensor_shape.dim]
                if len(dims) != arr.ndim or any(d >= 0 and d != a for d, a in zip(dims, arr.shape)):
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"input '{key}': expects shape "
                        f"{[d if d >= 0 else -1 for d in dims]}, got {list(arr.shape)}",
                    )

    def run_tensorflow(self, key: str, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run signature ``key`` in TensorFlow (tf.saved_model.load + signature call)."""
        import tensorflow as tf

        fn = self._loaded.signatures[key]
        try:
            out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as exc:
            msg = getattr(exc, "message", None) or str(exc)
            raise ServingError("INVALID_ARGUMENT", msg.strip().splitlines()[0]) from exc
        return {k: v.numpy() for k, v in out.items()}

    def predict(
        self, key: str, feeds: Mapping[str, np.ndarray], output_filter: Iterable[str] = ()
    ) -> dict[str, np.ndarray]:
        """TF Serving's Predict: named inputs in, the signature's (filtered) outputs out."""
        key = key or "serving_default"
        sig = self.signature(key)
        wanted = list(output_filter)
        unknown = [k for k in wanted if k not in sig.outputs]
        if unknown:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature: "
                f"{unknown[0]} Outputs expected to be in the set {{{','.join(sorted(sig.outputs))}}}.",
            )
        self.check_feeds(sig, feeds)
        shim = self.shims.get(key)
        if shim is not None:
            try:
                out = shim.run(feeds)
            except YellowstoneError as exc:
                raise ServingError(
                    "INVALID_ARGUMENT" if exc.http_status == 400 else "INTERNAL", str(exc)
                ) from exc
        else:
            out = self.run_tensorflow(key, feeds)
        return {k: out[k] for k in (wanted or sorted(out))}

    def _examples_signature(self, key: str, method: str) -> Any:
        sig = self.signature(key)
        if sig.method_name != method:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected {method.rsplit('/', 1)[-1]} signature "
                f"method_name to be {method}. Was: {sig.method_name}",
            )
        if len(sig.inputs) != 1:
            raise ServingError("INVALID_ARGUMENT", f"Expected one input Tensor, got {len(sig.inputs)}")
        return sig

    def classify(self, key: str, serialized: Sequence[bytes]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Classify serialized tf.Examples; return (classes [n, k] or None, scores [n, k] or None)."""
        sig = self._examples_signature(key or "serving_default", artifacts.CLASSIFY_METHOD)
        (name,) = sig.inputs
        out = self.run_tensorflow(key or "serving_default", {name: np.array(list(serialized), dtype=object)})
        return out.get("classes"), out.get("scores")

    def regress(self, key: str, serialized: Sequence[bytes]) -> np.ndarray:
        """Regress serialized tf.Examples; return one value per example."""
        sig = self._examples_signature(key or "serving_default", artifacts.REGRESS_METHOD)
        (name,) = sig.inputs
        out = self.run_tensorflow(key or "serving_default", {name: np.array(list(serialized), dtype=object)})
        if "outputs" not in out:
            raise ServingError(
                "INVALID_ARGUMENT", "No output Tensor named 'outputs' in the regress signature"
            )
        return np.asarray(out["outputs"]).reshape(len(serialized), -1)[:, 0]
