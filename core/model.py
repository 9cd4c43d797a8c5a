"""Model adapters: take a model as the user has it and give the core one uniform handle.

A :class:`ModelHandle` knows the model's named inputs and outputs, runs it in its own framework
on numpy feeds (the ``native`` reference), maps a framework-style call to named feeds and back,
fingerprints the model's content for the cache, and produces the forms backends import
(an ONNX file, a ``torch.export`` program, a SavedModel directory) once per handle.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRequestError, ConfigError, ConversionError, ModelLoadError, YellowstoneError
from .spec import BATCH, DEFAULT_RANGE, Range, TensorSpec, canonical_dtype, random_inputs

logger = logging.getLogger(__name__)


# What a SavedModel is made of; anything else in its directory (a shipped ``yellowstone/``
# artifact directory, TF Serving's ``assets.extra/`` warm-up requests) is not the model.
SAVED_MODEL_PARTS = ("saved_model.pb", "saved_model.pbtxt", "variables", "assets", "fingerprint.pb")


def _hash_files(root: Path, parts: tuple[str, ...] | None = None) -> str:
    """sha256 over a file, or a directory's files (only the top-level ``parts`` when given)."""
    h = hashlib.sha256()
    if root.is_file():
        files = [root]
    else:
        tops = [root / p for p in parts] if parts else [root]
        files = sorted(f for t in tops if t.exists()
                       for f in ([t] if t.is_file() else t.rglob("*")) if f.is_file())
    for path in files:
        h.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class ModelHandle:
    """Framework-neutral view of one model. Subclasses exist per framework.

    Attributes:
        framework: ``torch``, ``tensorflow`` or ``onnx``.
        kind: finer form, e.g. ``nn.Module``, ``torchscript``, ``exported_program``,
            ``saved_model``, ``keras``, ``onnx``.
        inputs: named input specs, in call order; dim 0 is dynamic (``batch``) when
            ``batched``; other dims are dynamic where the user's input specs say so (see
            :meth:`apply_specs`), each named and with a range.
        output_names: flattened output names, in output order.
        batched: dim 0 of every input and output is a batch dimension.
    """

    framework: str = ""
    kind: str = ""

    def __init__(self) -> None:
        self.inputs: tuple[TensorSpec, ...] = ()
        self.output_names: tuple[str, ...] = ()
        self.batched: bool = False
        self.example_feeds: dict[str, np.ndarray] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="yellowstone-model-"))
        weakref.finalize(self, shutil.rmtree, str(self.workdir), ignore_errors=True)
        self._lock = threading.RLock()  # onnx_path -> exported_program nests
        self._onnx: dict[bool, Path] = {}

    # -- identity -------------------------------------------------------------------------
    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the model's content (weights and program), never of its path."""
        return self._fingerprint()

    def _fingerprint(self) -> str:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """A human-readable name for reports, logs and the metrics' ``model`` label."""
        return getattr(self, "_name", self.kind)

    @name.setter
    def name(self, value: str) -> None:
        """A server names the model as its clients know it (KServe's model name)."""
        self._name = value

    # -- running --------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model in its own framework on named numpy feeds; return flat outputs."""
        raise NotImplementedError

    def feeds_from_call(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Map a call as the user makes it (positional/keyword, framework tensors) to feeds."""
        names = [s.name for s in self.inputs]
        if len(args) == 1 and not kwargs and isinstance(args[0], Mapping):
            kwargs, args = args[0], ()
        if len(args) > len(names):
            raise BadRequestError(f"model takes {len(names)} inputs, got {len(args)}")
        feeds: dict[str, np.ndarray] = {}
        for name, value in zip(names, args):
            feeds[name] = to_numpy(value)
        for key, value in kwargs.items():
            if key not in names:
                raise BadRequestError(f"unknown input {key!r}; inputs are {', '.join(names)}")
            feeds[key] = to_numpy(value)
        missing = [n for n in names if n not in feeds]
        if missing:
            raise BadRequestError(f"missing input(s): {', '.join(missing)}")
        return feeds

    def call_native(self, *args: Any, **kwargs: Any) -> Any:
        """Call the original object exactly as the user would."""
        raise NotImplementedError

    def wrap_outputs(self, outputs: list[np.ndarray], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Turn flat numpy outputs into what the original call returns (types and structure)."""
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    _accepted: tuple[tuple[TensorSpec, ...], set[tuple]] | None = None  # see check_feeds

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise BadRequestError when feeds do not match the inputs by name, dtype and rank.

        Only the feeds' names, dtypes and shapes decide, so a signature once accepted is
        remembered for the current input specs and skips the checks next time: right after a
        model run the caches are cold and the checks cost about 0.1 ms per call, as much as a
        small model's whole overhead budget. A new ``inputs`` tuple starts a new memo.
        """
        try:
            sig = (self.batched, tuple((k, v.dtype.str, v.shape) for k, v in feeds.items()))
        except AttributeError:  # not arrays: the checks below say what is wrong
            sig = None
        memo = self._accepted
        if sig is not None and memo is not None and memo[0] is self.inputs and sig in memo[1]:
            return
        self._check_feeds(feeds)
        if sig is not None:
            if memo is None or memo[0] is not self.inputs:
                memo = self._accepted = (self.inputs, set())
            if len(memo[1]) < 1024:  # a client sweeping shapes cannot grow it without bound
                memo[1].add(sig)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        unknown = sorted(set(feeds) - {s.name for s in self.inputs})
        if unknown:
            raise BadRequestError(f"unknown input(s) {', '.join(unknown)}; inputs are "
                                  f"{', '.join(s.name for s in self.inputs)}")
        for spec in self.inputs:
            if spec.name not in feeds:
                raise BadRequestError(f"missing input {spec.name!r}")
            spec.check(feeds[spec.name])
        if self.batched and len({int(feeds[s.name].shape[0]) for s in self.inputs}) > 1:
            raise BadRequestError("all inputs must have the same batch size (dimension 0)")
        seen: dict[str, tuple[str, int]] = {}
        for spec, i, dim in self._named_dims():
            size = int(feeds[spec.name].shape[i])
            first = seen.setdefault(dim, (spec.name, size))
            if first[1] != size:
                raise BadRequestError(f"input {spec.name!r}: dimension {i} ({dim}) is {size}, "
                                      f"but input {first[0]!r} has {dim}={first[1]}")

    # -- dynamic dimensions beyond the batch ------------------------------------------------
    def _named_dims(self) -> list[tuple[TensorSpec, int, str]]:
        """Every named dynamic dim other than the batch: (input spec, axis, name)."""
        return [(s, i, d) for s in self.inputs for i, d in enumerate(s.shape)
                if isinstance(d, str) and not (i == 0 and self.batched)]

    @property
    def dim_ranges(self) -> dict[str, Range]:
        """Named dynamic dims other than the batch -> their range (default 1..512).

        Inputs that share a name share one entry: their sizes are tied.
        """
        out: dict[str, Range] = {}
        for spec, _, dim in self._named_dims():
            out.setdefault(dim, spec.range_of(dim) or DEFAULT_RANGE)
        return out

    @property
    def example_dims(self) -> dict[str, int]:
        """The size each named dynamic dim has in the example inputs."""
        out: dict[str, int] = {}
        for spec, i, dim in self._named_dims():
            example = self.example_feeds.get(spec.name)
            if example is not None and i < example.ndim:
                out.setdefault(dim, int(example.shape[i]))
        return out

    def dynamic_axes(self, *, dynamic_batch: bool) -> list[dict[int, str]]:
        """Per input, the axes a converter must keep dynamic -> their names.

        Named dims always; dim 0 (``batch``) only with ``dynamic_batch`` on a batched model.
        """
        out = []
        for spec in self.inputs:
            axes = {i: d for i, d in enumerate(spec.shape)
                    if isinstance(d, str) and not (i == 0 and self.batched)}
            if dynamic_batch and self.batched and spec.shape:
                axes[0] = BATCH
            out.append(dict(sorted(axes.items())))
        return out

    def trace_dims(self, batch: int | None) -> dict[str, int]:
        """Sizes to trace or export the named dims at.

        The example's size where it can be used, else the smallest other size in range; never
        0 or 1 (exporters bake those in as constants) and never two dims, or a dim and the
        traced ``batch``, at one size (``torch.export`` would take them for one symbol).
        """
        taken = {0, 1} | ({batch} if batch is not None else set())
        example = self.example_dims
        out: dict[str, int] = {}
        for dim, (lo, hi) in self.dim_ranges.items():
            wanted = example.get(dim)
            if wanted is not None and lo <= wanted <= hi and wanted not in taken:
                size = wanted
            else:
                size = next((n for n in range(max(lo, 2), hi + 1) if n not in taken), hi)
            out[dim] = size
            taken.add(size)
        return out

    def apply_specs(self, specs: Sequence[TensorSpec]) -> None:
        """Make the dims ``specs`` leave dynamic (``-1`` or a name) dynamic in :attr:`inputs`.

        Specs match inputs by name, else by position when there are as many. A name keeps its
        range (``seq=1..256``), else spans 1..512; an anonymous ``-1`` gets a name
        (``<input>_dim<axis>``), shared with every other input's ``-1`` at the same axis whose
        example has the same size there (token ids and their attention mask, both ``-1x-1``,
        stay one length), else its own. Dim 0 of a batched model stays ``batch``. The example
        inputs must fit: ConfigError otherwise.
        """
        by_name = {s.name: s for s in specs}
        positional = len(specs) == len(self.inputs) and not any(
            s.name in by_name for s in self.inputs)
        users = [by_name.get(spec.name) or (specs[k] if positional else None)
                 for k, spec in enumerate(self.inputs)]
        anonymous = self._anonymous_names(users)
        explicit: dict[str, Range] = {}
        updated = []
        for k, spec in enumerate(self.inputs):
            user = users[k]
            if user is None or user.is_static or (
                    self.batched and all(isinstance(d, int) for d in user.shape[1:])):
                updated.append(spec)  # nothing dynamic beyond the batch: as before
                continue
            if len(user.shape) != len(spec.shape):
                raise ConfigError(f"input {spec.name!r}: spec shape {_fmt(user.shape)} has rank "
                                  f"{len(user.shape)}, the model's input has {len(spec.shape)}")
            shape, ranges = list(spec.shape), dict(spec.ranges)
            for i, dim in enumerate(user.shape):
                if isinstance(dim, int):
                    continue
                if i == 0 and self.batched:
                    if isinstance(dim, str) and dim in user.ranges:
                        ranges[BATCH] = user.ranges[dim]
                    continue
                name = dim if isinstance(dim, str) else anonymous[spec.name, i]
                shape[i] = name
                if name in user.ranges:
                    if explicit.setdefault(name, user.ranges[name]) != user.ranges[name]:
                        raise ConfigError(f"dimension {name!r} has two ranges: "
                                          f"{_fmt_range(explicit[name])} and "
                                          f"{_fmt_range(user.ranges[name])}")
            updated.append(dataclasses.replace(spec, shape=tuple(shape), ranges=ranges))
        self.inputs = tuple(self._with_ranges(s, explicit) for s in updated)
        self._check_example()

    def _anonymous_names(self, users: Sequence[TensorSpec | None]) -> dict[tuple[str, int], str]:
        """The name of each anonymous ``-1`` dim, keyed by (input, axis).

        That is the first such input's ``<input>_dim<axis>`` for every input whose example has
        the same size at that axis: one dimension, tied.
        """
        names: dict[tuple[str, int], str] = {}
        first: dict[tuple[int, int], str] = {}
        for spec, user in zip(self.inputs, users):
            if user is None or len(user.shape) != len(spec.shape):
                continue
            example = self.example_feeds.get(spec.name)
            for i, dim in enumerate(user.shape):
                if dim is None and not (i == 0 and self.batched):
                    own = _anonymous_dim(spec.name, i)
                    if example is None or example.ndim <= i:
                        names[spec.name, i] = own
                    else:
                        names[spec.name, i] = first.setdefault((i, example.shape[i]), own)
        return names

    @staticmethod
    def _with_ranges(spec: TensorSpec, explicit: Mapping[str, Range]) -> TensorSpec:
        """``spec`` with every named dim's range written out; ``lo == hi`` makes it static."""
        shape: list[Any] = list(spec.shape)
        ranges = dict(spec.ranges)
        for i, dim in enumerate(shape):
            if not isinstance(dim, str) or dim == BATCH:
                continue
            lo, hi = ranges[dim] = explicit.get(dim) or spec.range_of(dim) or DEFAULT_RANGE
            if lo == hi:
                shape[i] = lo
                del ranges[dim]
        return dataclasses.replace(spec, shape=tuple(shape), ranges=ranges)

    def _check_example(self) -> None:
        """ConfigError when the example inputs do not fit the inputs' dims and ranges."""
        try:
            self.check_feeds(self.example_feeds)
        except BadRequestError as exc:
            raise ConfigError(f"the example inputs do not fit the input specs: {exc}") from exc

    # -- forms backends import ------------------------------------------------------------
    def onnx_path(self, *, dynamic_batch: bool) -> Path:
        """Return an ONNX file for this model (converted once per handle and batch mode)."""
        dynamic_batch = dynamic_batch and self.batched
        with self._lock:
            if dynamic_batch not in self._onnx:
                out = self.workdir / f"model{'-dyn' if dynamic_batch else ''}.onnx"
                self._onnx[dynamic_batch] = self._to_onnx(out, dynamic_batch=dynamic_batch)
            return self._onnx[dynamic_batch]

    def _to_onnx(self, out: Path, *, dynamic_batch: bool) -> Path:
        raise ConversionError(f"{self.kind} models cannot be converted to ONNX")

    def specs_for(self, batch: int | None) -> tuple[TensorSpec, ...]:
        """Input specs with dim 0 fixed to ``batch``, or dynamic when ``batch`` is None."""
        if not self.batched:
            return self.inputs
        return tuple(s.dynamic_batch() if batch is None else s.with_batch(batch)
                     for s in self.inputs)

    def random_feeds(self, batch: int | None = None, seed: int | None = None,
                     dims: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        """Fresh random feeds shaped like the example (at ``batch`` when batched).

        ``dims`` sets named dynamic dims (``{"seq": 7}``); inputs sharing a name get the same
        size, padding masks stay masks; dims not named keep the example's size.
        """
        return random_inputs(self.inputs, batch=batch if self.batched else None,
                             like=self.example_feeds, seed=seed, dims=dims)

    # -- shared set-up ---------------------------------------------------------------------
    def _finish(self, feeds: dict[str, np.ndarray], output_names: Sequence[str]) -> None:
        """Derive input specs, output names and batchedness from an example run."""
        self.example_feeds = feeds
        try:
            outputs = self.run(feeds)
        except YellowstoneError:
            raise
        except Exception as exc:
            shapes = ", ".join(f"{k} {_fmt(v.shape)}" for k, v in feeds.items())
            raise ModelLoadError(f"{self.name} does not run on its example inputs ({shapes}): "
                                 f"{type(exc).__name__}: {exc}") from exc
        self.output_names = tuple(output_names) if output_names else tuple(
            "output" if len(outputs) == 1 else f"output_{i}" for i in range(len(outputs)))
        dims = {int(a.shape[0]) for a in feeds.values() if a.ndim >= 1}
        batched = (len(dims) == 1 and all(a.ndim >= 1 for a in feeds.values())
                   and all(o.ndim >= 1 and o.shape[0] == next(iter(dims)) for o in outputs))
        if batched:  # dim 0 must really follow the batch: try batch + 1
            b = next(iter(dims)) + 1
            try:
                bigger = self.run(random_inputs(self.inputs, batch=b, like=feeds, seed=0))
                batched = all(o.shape[0] == b for o in bigger)
            except Exception as exc:  # noqa: BLE001 - any failure means "not batchable"
                logger.debug("model does not take batch %d: %s", b, exc)
                batched = False
        self.batched = batched
        if batched:
            self.inputs = tuple(s.dynamic_batch() for s in self.inputs)


def _anonymous_dim(input_name: str, axis: int) -> str:
    """The name an anonymous dynamic dim gets: ``<input>_dim<axis>`` (an identifier)."""
    base = re.sub(r"\W", "_", input_name)
    return f"{base if base[:1].isalpha() or base[:1] == '_' else '_' + base}_dim{axis}"


def _fmt(shape: Sequence[Any]) -> str:
    return "x".join("-1" if d is None else str(d) for d in shape) or "scalar"


def _fmt_range(bounds: Range) -> str:
    return f"{bounds[0]}..{bounds[1]}"


def to_numpy(value: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor, TF tensor, list or scalar to a numpy array."""
    if isinstance(value, np.ndarray):
        return value
    mod = type(value).__module__
    if mod.startswith("torch"):
        if type(value).__name__ == "Tensor" and not value.requires_grad:
            try:  # the common case in one call: a CPU tensor numpy can view
                return value.numpy()
            except (TypeError, RuntimeError):  # bfloat16, another device, a conjugate view
                pass
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if hasattr(value, "numpy") and callable(value.numpy):
        return np.asarray(value.numpy())
    return np.asarray(value)


# TensorFlow takes these dtypes over DLPack; anything else (strings, objects) goes by tf.constant.
_DLPACK_KINDS = frozenset("biuf")
_DLPACK_ALIGN = 64  # TensorFlow's CPU tensors must start on a 64-byte boundary (a CHECK aborts)


def tf_tensor(array: np.ndarray) -> Any:
    """A CPU ``tf.Tensor`` holding ``array``'s values, made the cheap way where it can be.

    ``tf.constant`` costs 0.2-0.25 ms right after a model run (TensorFlow's conversion path is
    cold then; 9 us warm), which is 4% of a 6 ms model. A 64-byte-aligned copy handed over by
    DLPack costs about 0.1 ms in the same state. The copy is ours, so the tensor shares memory
    with nothing the caller or a backend holds. On a GPU host, for other dtypes and for empty
    arrays, ``tf.constant`` places and converts the tensor as it always has.
    """
    import tensorflow as tf

    if (array.size == 0 or array.dtype.kind not in _DLPACK_KINDS or array.dtype.itemsize > 8
            or _tf_dlpack_unusable()):
        return tf.constant(array)
    raw = np.empty(array.nbytes + _DLPACK_ALIGN, np.uint8)
    start = -raw.ctypes.data % _DLPACK_ALIGN
    own = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    own[...] = array
    return tf.experimental.dlpack.from_dlpack(own.__dlpack__())


@functools.cache
def _tf_dlpack_unusable() -> bool:
    """True without ``tf.experimental.dlpack`` or where TensorFlow sees a GPU (checked once)."""
    import tensorflow as tf

    return not hasattr(tf.experimental, "dlpack") or bool(tf.config.list_logical_devices("GPU"))


# ======================================================================================
# torch
# ======================================================================================
class TorchModel(ModelHandle):
    """An eager ``nn.Module``, a TorchScript module, or a ``torch.export`` program."""

    framework = "torch"

    def __init__(self, model: Any, example_inputs: Any, *, file_hash: str | None = None,
                 input_names: Sequence[str] | None = None):
        super().__init__()
        import torch

        self._file_hash = file_hash
        self._exported: dict[tuple[bool, int | None, Any], Any] = {}
        self.module: Any = None
        self.program: Any = None
        self._out_spec: Any = None
        self._one_tensor = False  # the model returns one bare tensor (wrap_outputs)
        names: list[str]
        if isinstance(model, torch.export.ExportedProgram):
            self.kind, self.program = "exported_program", model
            self.module = model.module()
            names = [s.arg.name for s in model.graph_signature.input_specs
                     if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
            if example_inputs is None:
                example_inputs = tuple(
                    torch.randn(*[int(d) for d in node.meta["val"].shape]).to(node.meta["val"].dtype)
                    for node in model.graph.nodes
                    if node.op == "placeholder" and node.name in names)
        elif isinstance(model, torch.jit.ScriptModule):
            self.kind, self.module, self.program = "torchscript", model, None
            names = [a.name for a in model.forward.schema.arguments[1:]]  # type: ignore[attr-defined]
        elif isinstance(model, torch.nn.Module):
            self.kind, self.module, self.program = "nn.Module", model, None
            params = inspect.signature(model.forward).parameters.values()
            names = [p.name for p in params
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        else:
            raise ModelLoadError(f"not a torch model: {type(model).__name__}")
        self._name = type(self.module).__name__ if self.kind == "nn.Module" else self.kind
        if self.kind != "exported_program":
            self.module.eval()
        if example_inputs is None:
            raise ConfigError("torch models need example_inputs (or --input NAME:SHAPE:DTYPE)")
        if isinstance(example_inputs, Mapping):
            order = [n for n in names if n in example_inputs] or list(example_inputs)
            feeds = {n: to_numpy(example_inputs[n]) for n in order}
        else:
            if not isinstance(example_inputs, (tuple, list)):
                example_inputs = (example_inputs,)
            names = list(input_names or names)
            if len(names) < len(example_inputs):
                names += [f"input_{i}" for i in range(len(names), len(example_inputs))]
            feeds = {n: to_numpy(v) for n, v in zip(names, example_inputs)}
        self.inputs = tuple(TensorSpec(name=n, shape=a.shape, dtype=canonical_dtype(a.dtype))
                            for n, a in feeds.items())
        out_names: list[str] = []
        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(a) for a in feeds.values()])
        leaves, self._out_spec = torch.utils._pytree.tree_flatten(out)
        self._one_tensor = self._out_spec.is_leaf()
        if isinstance(out, Mapping):
            out_names = [str(k) for k in out]
        if len(out_names) != len(leaves):
            out_names = []
        self._finish(feeds, out_names)

    def _fingerprint(self) -> str:
        if self._file_hash:
            return self._file_hash
        h = hashlib.sha256(self.kind.encode())
        if self.kind == "torchscript":
            h.update(self.module.code.encode())
        else:
            cls = type(self.module)
            h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
            h.update(repr(self.module).encode())
            try:
                h.update(inspect.getsource(cls).encode())
            except (OSError, TypeError):
                pass
        state = self.module.state_dict()
        for key in sorted(state):
            t = state[key]
            h.update(key.encode())
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            h.update(t.detach().contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
        return h.hexdigest()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[s.name]))
                                for s in self.inputs])
        leaves = torch.utils._pytree.tree_leaves(out)
        return [to_numpy(t) for t in leaves]

    def call_native(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(*args, **kwargs)

    def module_copy(self) -> Any:
        """A private copy of a TorchScript module, for converters that rewrite graphs in place.

        OpenVINO's TorchScript import runs graph passes on the module it is given; on the user's
        own module that left its native forward about 20% slower (MiniLM, 27 -> 34 ms), the
        model serving the fallback included. Other modules are returned as they are.
        """
        if self.kind != "torchscript":
            return self.module
        import io

        import torch

        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu").eval()

    def wrap_outputs(self, outputs: list[np.ndarray], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        import torch

        if self._one_tensor:  # a bare tensor out: no tree to rebuild
            return torch.from_numpy(outputs[0])
        tensors = [torch.from_numpy(o) for o in outputs]
        return torch.utils._pytree.tree_unflatten(tensors, self._out_spec)

    def exported_program(self, *, dynamic_batch: bool, autocast: Any = None,
                         batch: int | None = None) -> Any:
        """A ``torch.export`` program, its named dims dynamic, with a dynamic batch where allowed.

        One ``torch.export.Dim`` per dim name (inputs sharing ``seq`` stay tied), bounded by the
        dim's range; the batch spans 1..4096. A program the user gave is kept when it already
        has every dim that must be dynamic (and so keeps the user's own ranges). ``autocast``
        (a torch dtype, e.g. ``torch.bfloat16``) traces under CPU autocast, so the program
        carries autocast's casts: its matmuls and convolutions in that dtype, the ops autocast
        keeps in fp32 (softmax, norms, reductions) in fp32. Without a dynamic batch, ``batch``
        is the fixed batch size to export at (None: the example's).
        """
        import torch

        dynamic_batch = dynamic_batch and self.batched
        batch = None if dynamic_batch or not self.batched else batch
        key = (dynamic_batch, batch, autocast)
        with self._lock:
            if key in self._exported:
                return self._exported[key]
            if self.kind == "torchscript":
                raise ConversionError("torch.export cannot trace TorchScript modules")
            axes = self.dynamic_axes(dynamic_batch=dynamic_batch)
            if (autocast is None and self.program is not None
                    and _program_is_dynamic(self.program, axes)):
                ep = self.program
            else:
                # Export at batch 2 and dims >= 2: torch.export specialises a size-1 dim.
                at = 2 if dynamic_batch else batch
                dims = self.trace_dims(at)
                feeds = self.random_feeds(batch=at, seed=1, dims=dims) \
                    if dynamic_batch or dims or batch is not None else self.example_feeds
                args = tuple(torch.from_numpy(feeds[s.name]) for s in self.inputs)
                shapes = None
                if any(axes):
                    objs = {BATCH: torch.export.Dim(BATCH, min=1, max=4096)} if dynamic_batch else {}
                    for dim, (lo, hi) in self.dim_ranges.items():
                        objs.setdefault(dim, torch.export.Dim(dim, min=lo, max=hi))
                    shapes = tuple({i: objs[d] for i, d in a.items()} or None for a in axes)
                module, spec = self.module, shapes  # type: Any, Any
                if autocast is not None:  # its forward(*args) takes the specs as one tuple
                    module = _autocast_module(module, autocast)
                    spec = None if shapes is None else (shapes,)
                try:
                    ep = torch.export.export(module, args, dynamic_shapes=spec, strict=False)
                    if autocast is not None:  # autocast's region becomes plain casts
                        ep = ep.run_decompositions()
                except Exception as exc:
                    raise ConversionError(f"torch.export failed: {exc}") from exc
            self._exported[key] = ep
            return ep

    def _to_onnx(self, out: Path, *, dynamic_batch: bool) -> Path:
        """TorchScript and ``nn.Module``: the TorchScript-based exporter; programs: dynamo.

        For an ``nn.Module`` the TorchScript-based exporter comes first because its graphs run
        faster in ONNX Runtime where it matters (all-MiniLM-L6-v2 ran about twice as fast as
        from the dynamo exporter's graph, same session options); a module it cannot trace goes
        through ``torch.export`` and the dynamo exporter instead.
        """
        from .convert import get_conversion
        from .errors import ConversionError

        if self.kind == "exported_program":
            return get_conversion("torch-dynamo-onnx").convert(self, out, dynamic_batch=dynamic_batch)
        try:
            return get_conversion("torch-legacy-onnx").convert(self, out, dynamic_batch=dynamic_batch)
        except ConversionError as exc:
            if self.kind == "torchscript":
                raise
            logger.info("%s: TorchScript-based ONNX export failed (%s); using torch.export",
                        self.name, exc)
            return get_conversion("torch-dynamo-onnx").convert(self, out, dynamic_batch=dynamic_batch)


def _autocast_module(module: Any, dtype: Any) -> Any:
    """``module`` called under CPU autocast to ``dtype``, as a module ``torch.export`` traces.

    An autocast context around the export call itself is not traced; one inside ``forward`` is.
    """
    import torch

    class Autocast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            with torch.autocast("cpu", dtype=dtype):
                return self.inner(*args)

    return Autocast().eval()


def _program_is_dynamic(program: Any, axes: Sequence[Mapping[int, str]]) -> bool:
    """Whether a ``torch.export`` program has a symbolic dim at every axis in ``axes``.

    ``axes`` holds one ``{axis: name}`` per user input, in order.
    """
    import torch

    user = set(program.graph_signature.user_inputs)
    vals = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    if len(vals) != len(axes):
        return False
    return all(v is not None and all(i < len(v.shape) and isinstance(v.shape[i], torch.SymInt)
                                     for i in a) for v, a in zip(vals, axes))


# ======================================================================================
# TensorFlow
# ======================================================================================
class TensorFlowModel(ModelHandle):
    """A TF SavedModel signature, or a Keras model (in memory or a ``.keras`` file)."""

    framework = "tensorflow"

    def __init__(self, model: Any, example_inputs: Any = None, *,
                 signature: str = "serving_default", specs: Sequence[TensorSpec] | None = None):
        super().__init__()
        import tensorflow as tf

        self.signature_key = signature
        self._content: str | None = None
        self.saved_model_dir: Path | None = None
        self.keras_model: Any = None
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.suffix in (".keras", ".h5"):
                self.kind = "keras"
                self.keras_model = tf.keras.models.load_model(path, compile=False)
                self._content = _hash_files(path)
            else:
                self.kind, self.saved_model_dir = "saved_model", path
                self._content = _hash_files(path, SAVED_MODEL_PARTS)
        elif isinstance(model, tf.keras.Model):
            self.kind, self.keras_model, self._content = "keras", model, None
        else:
            raise ModelLoadError(f"not a TensorFlow model: {type(model).__name__}")
        self._name = self.kind
        self._tls = threading.local()
        if self.kind == "keras":
            km = self.keras_model
            names = [t.name.split(":")[0] for t in km.inputs] if km.inputs else ["input"]
            self.inputs = tuple(
                TensorSpec(name=n, shape=tuple(t.shape), dtype=canonical_dtype(t.dtype.name
                           if hasattr(t.dtype, "name") else t.dtype))
                for n, t in zip(names, km.inputs))
            out_names = [t.name.split(":")[0] for t in km.outputs] if len(km.outputs) > 1 else []
            self._multi_out = len(km.outputs) > 1
        else:
            loaded = tf.saved_model.load(str(self.saved_model_dir))
            if signature not in loaded.signatures:
                raise ModelLoadError(
                    f"SavedModel has no signature {signature!r}; it has "
                    f"{', '.join(loaded.signatures) or 'none'}")
            self._loaded = loaded
            fn = loaded.signatures[signature]
            _, kw = fn.structured_input_signature
            self.inputs = tuple(TensorSpec(name=n, shape=tuple(s.shape), dtype=s.dtype.name)
                                for n, s in sorted(kw.items()))
            out_names = sorted(fn.structured_outputs)
            self._multi_out = True
        if specs:
            self.inputs = tuple(specs)
        if example_inputs is None:
            feeds = random_inputs(self.inputs, seed=0)
        elif isinstance(example_inputs, Mapping):
            feeds = {k: to_numpy(v) for k, v in example_inputs.items()}
        else:
            if not isinstance(example_inputs, (tuple, list)):
                example_inputs = (example_inputs,)
            feeds = {s.name: to_numpy(v) for s, v in zip(self.inputs, example_inputs)}
        self.inputs = tuple(TensorSpec(name=s.name, shape=feeds[s.name].shape, dtype=s.dtype)
                            for s in self.inputs)
        self._finish(feeds, out_names)

    def _fingerprint(self) -> str:
        if self._content:
            return self._content
        import json

        h = hashlib.sha256(b"keras")
        h.update(json.dumps(self.keras_model.get_config(), sort_keys=True, default=str).encode())
        for w in self.keras_model.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
        return h.hexdigest()

    def _keras_graph(self) -> Any:
        """The Keras model as a ``tf.function`` (graph mode, as TF Serving would run it).

        Calling a Keras model eagerly dispatches op by op from Python (a MobileNetV2 runs many
        times slower that way), which would flatter every compiled backend; the reference and
        the ``native`` timing use the graph instead.
        """
        fn = getattr(self, "_graph_fn", None)
        if fn is None:
            import tensorflow as tf

            model = self.keras_model
            fn = self._graph_fn = tf.function(lambda x: model(x, training=False),
                                              reduce_retracing=True)
        return fn

    def signature_function(self) -> Any:
        """The served signature's concrete function (what TF Serving runs for it)."""
        if getattr(self, "_loaded", None) is None:  # a Keras model: export it first
            self.saved_model_path()
        return self._loaded.signatures[self.signature_key]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        if self.kind == "keras":
            args = [tf.constant(feeds[s.name]) for s in self.inputs]
            out = self._keras_graph()(args if len(args) > 1 else args[0])
            if isinstance(out, Mapping):
                return [np.asarray(out[k]) for k in sorted(out)]
            if isinstance(out, (list, tuple)):
                return [np.asarray(o) for o in out]
            return [np.asarray(out)]
        out = self.signature_function()(**{s.name: tf.constant(feeds[s.name]) for s in self.inputs})
        return [np.asarray(out[k]) for k in sorted(out)]

    def call_native(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model as the user would; a Keras model given its input alone runs as graph.

        The graph function gives the same outputs and types without eager op-by-op dispatch,
        which made a fallback several times slower than the report's ``native`` timing. Any
        other call (keyword arguments, several inputs) runs as written.
        """
        if self.kind == "keras":
            if len(args) == 1 and not kwargs:
                return self._keras_graph()(args[0])
            return self.keras_model(*args, **kwargs)
        return self.signature_function()(*args, **kwargs)

    def wrap_outputs(self, outputs: list[np.ndarray], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        tensors = [tf_tensor(o) for o in outputs]
        if self.kind == "saved_model":
            return dict(zip(self.output_names, tensors))
        return tensors if self._multi_out else tensors[0]

    def saved_model_path(self) -> Path:
        """A SavedModel directory for this model (Keras models are exported once)."""
        with self._lock:
            if self.saved_model_dir is None:
                out = self.workdir / "saved_model"
                try:
                    self.keras_model.export(str(out), verbose=False)
                except Exception as exc:
                    raise ConversionError(f"Keras export to SavedModel failed: {exc}") from exc
                self.saved_model_dir = out
                import tensorflow as tf

                self._loaded = tf.saved_model.load(str(out))
                self.signature_key = "serving_default"
            return self.saved_model_dir

    def _to_onnx(self, out: Path, *, dynamic_batch: bool) -> Path:
        from .convert import get_conversion

        return get_conversion("tf2onnx").convert(self, out, dynamic_batch=dynamic_batch)


# ======================================================================================
# ONNX
# ======================================================================================
class OnnxModel(ModelHandle):
    """An ONNX file or ``onnx.ModelProto``; ONNX Runtime with graph optimisation off is native."""

    framework = "onnx"
    kind = "onnx"

    def __init__(self, model: Any, example_inputs: Any = None):
        super().__init__()
        import onnx

        if isinstance(model, (str, os.PathLike)):
            self.path = Path(model)
            try:
                proto = onnx.load(str(self.path), load_external_data=False)
            except Exception as exc:
                raise ModelLoadError(f"cannot read ONNX file {self.path}: {exc}") from exc
            self._content = _hash_files(self.path)
        else:
            proto = model
            self.path = self.workdir / "model.onnx"
            onnx.save(proto, str(self.path))
            self._content = hashlib.sha256(proto.SerializeToString()).hexdigest()
        self._name = self.path.stem
        init = {i.name for i in proto.graph.initializer}
        specs = []
        for vi in proto.graph.input:
            if vi.name in init:
                continue
            tt = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                         for d in tt.shape.dim)
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            specs.append(TensorSpec(name=vi.name, shape=dims, dtype=canonical_dtype(dtype)))
        self.inputs = tuple(specs)
        self._session = None
        if example_inputs is None:
            feeds = random_inputs(self.inputs, seed=0)
        elif isinstance(example_inputs, Mapping):
            feeds = {k: to_numpy(v) for k, v in example_inputs.items()}
        else:
            if not isinstance(example_inputs, (tuple, list)):
                example_inputs = (example_inputs,)
            feeds = {s.name: to_numpy(v) for s, v in zip(self.inputs, example_inputs)}
        self.inputs = tuple(TensorSpec(name=s.name, shape=feeds[s.name].shape, dtype=s.dtype)
                            for s in self.inputs)
        self._finish(feeds, [o.name for o in proto.graph.output])

    def _fingerprint(self) -> str:
        return self._content

    def _reference_session(self) -> Any:
        if self._session is None:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ModelLoadError("running ONNX models needs `yellowstone[onnxruntime]`") from exc
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._session = ort.InferenceSession(str(self.path), opts,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return list(self._reference_session().run(None, {s.name: feeds[s.name] for s in self.inputs}))

    def call_native(self, *args: Any, **kwargs: Any) -> Any:
        outs = self.run(self.feeds_from_call(args, kwargs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _to_onnx(self, out: Path, *, dynamic_batch: bool) -> Path:
        return self.path


# ======================================================================================
def load_model(model: Any, example_inputs: Any = None, *,
               input_specs: Sequence[TensorSpec] | None = None,
               signature: str = "serving_default") -> ModelHandle:
    """Wrap ``model`` (an object or a path) in the right :class:`ModelHandle`.

    Paths: ``*.onnx``; ``*.pt2`` (``torch.export``); ``*.pt``/``*.pth``/``*.ts`` (TorchScript);
    ``*.keras``; a directory holding ``saved_model.pb``. Dims that ``input_specs`` give as
    ``-1`` or a name (``seq``, ``seq=1..256``) stay dynamic (:meth:`ModelHandle.apply_specs`).
    """
    if isinstance(model, ModelHandle):
        return model
    handle = _load(model, example_inputs, input_specs=input_specs, signature=signature)
    if input_specs:
        handle.apply_specs(input_specs)
    return handle


def _load(model: Any, example_inputs: Any, *, input_specs: Sequence[TensorSpec] | None,
          signature: str) -> ModelHandle:
    if input_specs and example_inputs is None:
        example_inputs = {s.name: a for s, a in
                          zip(input_specs, random_inputs(input_specs, seed=0).values())}
    names = [s.name for s in input_specs] if input_specs else None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"model path does not exist: {path}")
        if path.is_dir():
            if (path / "saved_model.pb").exists():
                return TensorFlowModel(path, example_inputs, signature=signature,
                                       specs=input_specs)
            raise ModelLoadError(f"{path} is a directory without saved_model.pb")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return OnnxModel(path, example_inputs)
        if suffix in (".keras", ".h5"):
            return TensorFlowModel(path, example_inputs, specs=input_specs)
        if suffix in (".pt2", ".pt", ".pth", ".ts", ".torchscript"):
            import torch

            file_hash = _hash_files(path)
            try:
                if suffix == ".pt2":
                    obj = torch.export.load(str(path))
                else:
                    obj = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:
                form = "torch.export" if suffix == ".pt2" else "TorchScript"
                raise ModelLoadError(f"cannot load {path} as {form}: {exc}") from exc
            return TorchModel(obj, example_inputs, file_hash=file_hash, input_names=names)
        raise ModelLoadError(f"unknown model format {suffix!r} for {path}")
    mod = type(model).__module__
    if mod.startswith("torch") or _is_torch_module(model):
        return TorchModel(model, example_inputs, input_names=names)
    if mod.startswith(("keras", "tensorflow", "tf_keras")) or _is_keras(model):
        return TensorFlowModel(model, example_inputs, specs=input_specs)
    if mod.startswith("onnx"):
        return OnnxModel(model, example_inputs)
    raise ModelLoadError(f"unsupported model type {type(model).__module__}.{type(model).__name__}")


def _is_torch_module(model: Any) -> bool:
    import sys

    torch: Any = sys.modules.get("torch")
    return torch is not None and isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


def _is_keras(model: Any) -> bool:
    import sys

    keras: Any = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)
