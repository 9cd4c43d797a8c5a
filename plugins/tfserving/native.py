"""Find and load the shim's native parts: the CPython binding, the preload library, the backends' C APIs."""

from __future__ import annotations

import functools
import glob
import importlib
import importlib.util
import logging
import os
import subprocess
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from yellowstone.errors import BackendUnavailableError, BadRequestError

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
PRELOAD_NAME = "libysshim.so"
SHIM_SOURCES = ("ys_shim.c", "ys_openvino.c", "ys_onnxruntime.c")
SHIM_BACKENDS = ("openvino", "onnxruntime")


def _build_dir() -> Path:
    from yellowstone.config import default_cache_dir

    return default_cache_dir() / "tfserving-native" / sysconfig.get_config_var("SOABI")


def build(out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Compile ``_ysshim`` and ``libysshim.so`` with ``cc`` into ``out_dir`` and return it.

    ``pip install`` builds both shared objects (see setup.py). Where they are missing (a source tree
    without a build), :func:`build` compiles them with the system C compiler into a cache directory.
    The shim runs OpenVINO (``libopenvino_c.so.*``) or ONNX Runtime (``libonnxruntime.so.*``), each
    found in its installed wheel and loaded with ``dlopen`` once per process (:func:`runtime`).
    """
    out = Path(out_dir) if out_dir else _build_dir()
    if out_dir is None:
        _private_dir(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    flags = ["-O2", "-std=gnu11", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra"]
    shim = [str(CSRC / name) for name in SHIM_SOURCES]
    ext = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    jobs = [
        [
            cc,
            *flags,
            f"-I{sysconfig.get_paths()['include']}",
            "-o",
            str(out / f"_ysshim{ext}"),
            *shim,
            str(CSRC / "ys_pymodule.c"),
            "-ldl",
            "-lpthread",
        ],
        [
            cc,
            *flags,
            "-o",
            str(out / PRELOAD_NAME),
            *shim,
            str(CSRC / "ys_interpose.c"),
            f"-Wl,--version-script={CSRC / 'ys_shim.map'}",
            "-ldl",
            "-lpthread",
        ],
    ]
    for cmd in jobs:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendUnavailableError(f"building the shim failed: {' '.join(cmd)}\n{proc.stderr}")
    return out


def _private_dir(path: Path) -> None:
    """Make ``path`` a directory only this user can write, or refuse it: native code loads from it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.lstat()
    if path.is_symlink() or st.st_uid != os.getuid():
        raise BackendUnavailableError(f"{path}: not a directory of this user's; refusing to build "
                                      "or load the shim there (set YELLOWSTONE_CACHE_DIR)")
    os.chmod(path, 0o700)


@functools.cache
def binding() -> ModuleType:
    """The ``_ysshim`` extension module (built by pip, else compiled here once)."""
    try:
        return importlib.import_module("yellowstone.plugins.tfserving._ysshim")
    except ImportError:
        logger.info("the shim binding is not built; compiling it with the C compiler")
    out = build()  # compiled afresh in a private directory, then loaded by its exact name
    path = out / f"_ysshim{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    spec = importlib.util.spec_from_file_location("yellowstone.plugins.tfserving._ysshim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preload_library() -> Path:
    """Path of ``libysshim.so`` for ``LD_PRELOAD`` (built next to this file by pip, else here)."""
    path = HERE / PRELOAD_NAME
    if path.exists():
        return path
    path = _build_dir() / PRELOAD_NAME
    if not path.exists():
        build()
    return path


def _wheel_c_library(package: str, pattern: str, env_var: str) -> str:
    """``$env_var``, else the newest ``pattern`` match inside ``package``'s installed wheel."""
    env = os.environ.get(env_var)
    if env:
        return env
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(f"{package} is not installed; install `yellowstone[{package}]`")
    for loc in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(loc, pattern)))
        if found:
            return found[-1]
    raise BackendUnavailableError(f"the {package} wheel has no {pattern} (C API)")


@functools.cache
def openvino_c_library() -> str:
    """Absolute path of OpenVINO's C library in the installed wheel (versioned name only)."""
    return _wheel_c_library("openvino", "libs/libopenvino_c.so*", "YS_OPENVINO_C_LIB")


@functools.cache
def onnxruntime_c_library() -> str:
    """Absolute path of ONNX Runtime's C library in the installed wheel (``capi/libonnxruntime.so.*``)."""
    return _wheel_c_library("onnxruntime", "capi/libonnxruntime.so*", "YS_ONNXRUNTIME_C_LIB")


def c_library(backend: str) -> str:
    """The C library the shim loads for ``backend`` (``openvino`` or ``onnxruntime``)."""
    if backend == "openvino":
        return openvino_c_library()
    if backend == "onnxruntime":
        return onnxruntime_c_library()
    raise BackendUnavailableError(f"the shim runs {' and '.join(SHIM_BACKENDS)}, not {backend!r}")


@functools.cache
def runtime(backend: str = "openvino") -> Any:
    """The process's one shim runtime for ``backend`` (its C library loaded once)."""
    return binding().Runtime(c_library(backend), backend)


def manifest_backend(artifact_dir: str | os.PathLike[str]) -> str:
    """The backend a shim directory's ``shim.txt`` names (ModelLoadError when it has none)."""
    backend, _ = binding().manifest_backend(str(artifact_dir))
    return str(backend)


class ShimModel:
    """A boosted signature served by the C shim: numpy in, numpy out, no Python in inference.

    The backend is the one the directory's ``shim.txt`` names; ``threads`` > 0 overrides the
    manifest's thread count.

    Attributes:
        backend: ``openvino`` or ``onnxruntime``.
        signature: the SavedModel signature key this model serves.
        inputs / outputs: ``(name, tensor_name, dtype, shape)`` tuples in run order.
    """

    def __init__(self, artifact_dir: str | os.PathLike[str], *, device: str = "CPU", threads: int = 0):
        self.backend = manifest_backend(artifact_dir)
        self._model = binding().Model(runtime(self.backend), str(artifact_dir), device, threads)
        self.artifact_dir = Path(artifact_dir)
        self.signature: str = self._model.signature
        self.inputs: list[tuple[str, str, str, tuple[int, ...]]] = self._model.inputs
        self.outputs: list[tuple[str, str, str, tuple[int, ...]]] = self._model.outputs
        self.input_names = [i[0] for i in self.inputs]
        self.output_names = [o[0] for o in self.outputs]
        batched_in = all(len(s) >= 1 and s[0] == -1 for _, _, _, s in self.inputs)
        # Output shapes known up front (dim 0 follows the batch) are preallocated; others are
        # allocated by the shim's callback once it knows them.
        self._out_plan = [(np.dtype(dt), shape) for _, _, dt, shape in self.outputs]
        self._batched = batched_in

    def _planned(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        bufs: list[np.ndarray | None] = []
        batch = int(feeds[0].shape[0]) if self._batched and feeds and feeds[0].ndim else None
        for dtype, shape in self._out_plan:
            dims = list(shape)
            if dims and dims[0] == -1 and batch is not None:
                dims[0] = batch
            bufs.append(np.empty(dims, dtype) if all(d >= 0 for d in dims) else None)
        return bufs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on named feeds (exactly the signature's inputs); return outputs by name."""
        missing = [n for n in self.input_names if n not in feeds]
        extra = sorted(set(feeds) - set(self.input_names))
        if missing or extra:
            raise BadRequestError(
                f"inputs {sorted(feeds)} do not match the signature's {sorted(self.input_names)}"
            )
        arrays = [np.ascontiguousarray(feeds[n]) for n in self.input_names]
        outs = self._planned(arrays)
        allocated: dict[int, np.ndarray] = {}

        def alloc(index: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            allocated[index] = np.empty(shape, dtype)
            return allocated[index]

        shapes = self._model.run(arrays, outs, alloc)
        result = {}
        for i, (name, shape) in enumerate(zip(self.output_names, shapes)):
            arr = allocated.get(i, outs[i])
            assert arr is not None
            if arr.shape != tuple(shape):  # preallocated larger than needed
                arr = arr.reshape(-1)[: int(np.prod(shape))].reshape(shape)
            result[name] = arr
        return result

    def close(self) -> None:
        """Free the compiled model."""
        self._model.close()
