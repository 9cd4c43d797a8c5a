"""Build the TF Serving shim's C code; everything else is declared in pyproject.toml.

Two shared objects come from ``plugins/tfserving/csrc``:

* ``yellowstone/plugins/tfserving/_ysshim*.so``: the CPython binding (shim + binding).
* ``yellowstone/plugins/tfserving/libysshim.so``: the plain C library (shim + TensorFlow C API
  interposer), loaded with ``LD_PRELOAD``; no Python in it, TF_* symbols versioned ``tensorflow``.

Neither links against OpenVINO, ONNX Runtime or TensorFlow: the shim dlopens the backends' C
libraries at run time and declares the few C API types it uses itself, so the isolated build
environment needs nothing but a C compiler.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "plugins/tfserving/csrc"
CFLAGS = ["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra"]
SHIM = [f"{CSRC}/ys_shim.c", f"{CSRC}/ys_openvino.c", f"{CSRC}/ys_onnxruntime.c"]
HEADERS = [f"{CSRC}/ys_shim.h", f"{CSRC}/ys_backend.h"]


class BuildExt(build_ext):
    """build_ext that names the preload library ``libysshim.so`` (it is not a Python module)."""

    def get_ext_filename(self, fullname):
        if fullname.split(".")[-1] == "libysshim":  # called with the full or the last name
            return fullname.replace(".", "/") + ".so"
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        if ext.name.split(".")[-1] == "libysshim":
            return []
        return super().get_export_symbols(ext)


setup(
    ext_modules=[
        Extension(
            "yellowstone.plugins.tfserving._ysshim",
            sources=[*SHIM, f"{CSRC}/ys_pymodule.c"],
            depends=HEADERS,
            extra_compile_args=CFLAGS,
            libraries=["dl", "pthread"],
        ),
        Extension(
            "yellowstone.plugins.tfserving.libysshim",
            sources=[*SHIM, f"{CSRC}/ys_interpose.c"],
            depends=[*HEADERS, f"{CSRC}/ys_shim.map"],
            extra_compile_args=CFLAGS,
            extra_link_args=[f"-Wl,--version-script={CSRC}/ys_shim.map"],
            libraries=["dl", "pthread"],
        ),
    ],
    cmdclass={"build_ext": BuildExt},
    package_data={"yellowstone.plugins.tfserving": ["csrc/*.c", "csrc/*.h", "csrc/*.map", "Dockerfile"]},
)
