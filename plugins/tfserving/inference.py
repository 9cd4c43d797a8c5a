"""Classify, Regress and MultiInference over tf.Example inputs (classifier.cc, regressor.cc, ...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import codec
from .artifacts import CLASSIFY_METHOD as CLASSIFY
from .artifacts import REGRESS_METHOD as REGRESS
from .errors import ServingError

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_INPUTS, CLASSES, SCORES = "inputs", "classes", "scores"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"


def invalid(msg: str) -> ServingError:
    """INVALID_ARGUMENT with ``msg``."""
    return ServingError("INVALID_ARGUMENT", msg)


def shape_text(shape: Sequence[int]) -> str:
    """A shape as TensorShape::DebugString prints it: ``[2,3]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_examples_signature(sig: Any, method: str, method_name_check: bool) -> Any:
    """The structure TF Serving requires of a classify or regress signature."""
    kind = "classification" if method == CLASSIFY else "regression"
    if method_name_check and sig.method_name != method:
        raise invalid(f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}")
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if method == CLASSIFY:
        if len(sig.outputs) not in (1, 2):
            raise invalid(f"Expected one or two output Tensors, found {len(sig.outputs)}")
        if CLASSIFY_INPUTS not in sig.inputs:
            raise invalid(f"No classification inputs found in SignatureDef: {sig}")
        if CLASSES not in sig.outputs and SCORES not in sig.outputs:
            raise invalid(
                "Expected classification signature outputs to contain at least one of "
                f'"{CLASSES}" or "{SCORES}". Signature was: {sig}'
            )
        return sig
    if len(sig.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if REGRESS_INPUTS not in sig.inputs:
        raise invalid(f"No regression inputs found in SignatureDef: {sig}")
    if REGRESS_OUTPUTS not in sig.outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {sig}")
    return sig


class ExampleApis:
    """Classify, Regress and MultiInference for a servable.

    The servable provides ``signature_defs``, ``method_name_check``, ``run_tensorflow(key, feeds)``
    and ``run_session(feeds, fetches)``; TensorFlow always serves these (string inputs).
    """

    signature_defs: Mapping[str, Any]
    method_name_check: bool

    def run_tensorflow(self, key: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_session(
        self, feeds: Sequence[tuple[str, np.ndarray]], fetches: Sequence[str]
    ) -> list[np.ndarray]:
        raise NotImplementedError

    def check_examples_signature(self, sig: Any, method: str) -> Any:
        """The structure TF Serving requires of a classify or regress signature."""
        return check_examples_signature(sig, method, self.method_name_check)

    def _examples_signature(self, key: str, method: str) -> Any:
        """Get{Classification,Regression}SignatureDef + PreProcess{Classification,Regression}."""
        sig = self.signature_defs.get(key)
        if sig is None:
            raise invalid(f"No signature was found with the name: {key}")
        return self.check_examples_signature(sig, method)

    def classify(self, key: str, input_proto: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """TF Serving's Classify on an Input proto: (classes [n, k] or None, scores [n, k] or None)."""
        key = key or DEFAULT_SIGNATURE
        sig = self._examples_signature(key, CLASSIFY)
        examples = codec.serialized_examples(input_proto)
        out = self.run_tensorflow(key, {CLASSIFY_INPUTS: codec.string_tensor(examples)})
        return classification_outputs(
            len(examples),
            out.get(CLASSES) if CLASSES in sig.outputs else None,
            out.get(SCORES) if SCORES in sig.outputs else None,
        )

    def regress(self, key: str, input_proto: Any) -> np.ndarray:
        """TF Serving's Regress on an Input proto: one float per example."""
        key = key or DEFAULT_SIGNATURE
        self._examples_signature(key, REGRESS)
        examples = codec.serialized_examples(input_proto)
        out = self.run_tensorflow(key, {REGRESS_INPUTS: codec.string_tensor(examples)})
        return regression_outputs(len(examples), out[REGRESS_OUTPUTS])

    def multi_inference(
        self, tasks: Sequence[tuple[str, str, str]], input_proto: Any
    ) -> list[tuple[str, str, Any]]:
        """TF Serving's MultiInference: one Session::Run for every task's outputs.

        Args:
            tasks: ``(model name, signature name, method name)`` per InferenceTask.
            input_proto: the shared Input.

        Returns:
            ``(method, signature name, result)`` per task: ``(classes, scores)`` for classify,
            the values for regress.
        """
        keys, input_name, fetches = self._plan_tasks(tasks)
        examples = codec.serialized_examples(input_proto)
        names = sorted(fetches)
        values = dict(zip(names, self.run_session([(input_name, codec.string_tensor(examples))], names)))
        results = []
        for (_, _, method), key in zip(tasks, keys):
            sig = self.signature_defs[key]

            def fetched(alias: str, sig: Any = sig) -> np.ndarray | None:
                return values[sig.outputs[alias].name] if alias in sig.outputs else None

            if method == CLASSIFY:
                result: Any = classification_outputs(len(examples), fetched(CLASSES), fetched(SCORES))
            else:
                result = regression_outputs(len(examples), fetched(REGRESS_OUTPUTS))
            results.append((method, key, result))
        return results

    def _plan_tasks(self, tasks: Sequence[tuple[str, str, str]]) -> tuple[list[str], str, set[str]]:
        """MultiInference's checks, in its order: (signature keys, the input tensor, fetches)."""
        model, input_name = "", ""
        keys: list[str] = []
        fetches: set[str] = set()
        for task_model, sig_name, method in tasks:
            if not task_model:
                raise invalid("Found ModelSpec with an empty model name.")
            if model and task_model != model:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            model = task_model
            key = sig_name or DEFAULT_SIGNATURE
            if key in keys:
                raise invalid(f"Duplicate evaluation of signature: {key}")
            keys.append(key)
            sig = self.signature_defs.get(key)
            if sig is None:
                raise invalid(f"Requested signature not found in model graph: {key}")
            if method not in (CLASSIFY, REGRESS):
                raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {method}")
            self.check_examples_signature(sig, method)
            name = sig.inputs[CLASSIFY_INPUTS].name
            if input_name and name != input_name:
                raise invalid("Input tensor must be the same for all Signatures.")
            input_name = name
            wanted = (CLASSES, SCORES) if method == CLASSIFY else (REGRESS_OUTPUTS,)
            fetches.update(sig.outputs[a].name for a in wanted if a in sig.outputs)
        if not tasks:
            raise invalid("MultiInferenceRequest has no tasks.")
        return keys, input_name, fetches


def classification_outputs(
    n: int, classes: np.ndarray | None, scores: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """PostProcessClassificationResult's checks on the fetched classes and scores."""
    for name, arr, want, dt in (("classes", classes, "DT_STRING", "OSU"), ("scores", scores, "DT_FLOAT", "")):
        if arr is None:
            continue
        if arr.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got {shape_text(arr.shape)}")
        ok = arr.dtype.kind in dt if dt else arr.dtype == np.float32
        if not ok:
            raise invalid(f"Expected {name} Tensor of {want}. Got: DT_{codec.dtype_name(arr.dtype).upper()}")
        if arr.shape[0] != n:
            raise invalid(f"Expected {name} output batch size of {n}. Got: {arr.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} "
            f"vs. {scores.shape[1]}"
        )
    return classes, scores


def regression_outputs(n: int, values: np.ndarray | None) -> np.ndarray:
    """PostProcessRegressionResult's checks: [n] or [n, 1] floats."""
    if values is None:
        raise invalid("Could not find output tensor 'outputs'")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{shape_text(values.shape)}"
        )
    if values.shape[0] != n:
        raise invalid(f"Input batch size did not match output batch size: {n} vs. {values.shape[0]}")
    if values.dtype != np.float32:
        got = codec.dtype_name(values.dtype).upper()
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: DT_{got}")
    return values.reshape(-1)
