"""``yellowstone archive``: build a TorchServe .mar that serves through the boost handler.

    python -m yellowstone.plugins.torchserve.archive --model-name resnet \
        --serialized-file resnet.pt --handler image_classifier --input-shape 1,3,224,224 \
        --backends onnxruntime,openvino --time_budget_s 1 --precompile --export-path store

It writes the ``yellowstone:`` section into model-config.yaml (merged over ``--config-file``;
the boost flags are the serving layer's, one per ``BoostConfig`` field, spelled as it),
archives ``boost_handler.py`` as the handler, and with ``--precompile`` boosts the model here,
exactly as a worker would, and ships the compiled artifact directory inside the archive, so
workers on matching hardware load it instead of compiling.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yellowstone import serving
from yellowstone.errors import YellowstoneError

from . import BOOST_HANDLER_FILE
from .config import SECTION, parse_section

logger = logging.getLogger(__name__)
ARTIFACT_DIRNAME = "yellowstone_artifacts"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (torch-model-archiver's options plus yellowstone's)."""
    p = argparse.ArgumentParser(
        prog="yellowstone archive",
        description="Archive a model for TorchServe with the yellowstone boost handler.")
    p.add_argument("--model-name", required=True)
    p.add_argument("--version", default="1.0")
    p.add_argument("--serialized-file", required=True,
                   help="state dict (with --model-file), TorchScript .pt, torch.export .pt2, "
                        "or .onnx")
    p.add_argument("--model-file", default=None, help="model definition for eager models")
    p.add_argument("--handler", default=None,
                   help="the handler to boost: a built-in (image_classifier) or "
                        "path/to/handler.py[:Class] (shipped in the archive); default: the "
                        "config file's yellowstone.handler, else base_handler")
    p.add_argument("--extra-files", default="", help="comma-separated files to ship")
    p.add_argument("--config-file", default=None, help="model-config.yaml to extend")
    p.add_argument("--requirements-file", default=None)
    p.add_argument("--export-path", required=True)
    p.add_argument("--archive-format", default="default",
                   choices=["default", "tgz", "no-archive", "zip-store"])
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing archive")
    g = p.add_argument_group("yellowstone")
    g.add_argument("--input-shape", default=None, metavar="1,3,224,224",
                   help="example input shape (batch first); needed for --precompile unless "
                        "the config file has it")
    g.add_argument("--input-dtype", default=None)
    g.add_argument("--precompile", action="store_true",
                   help="compile here and ship the artifacts in the archive")
    g.add_argument("-q", "--quiet", action="store_true")
    serving.add_boost_flags(p)  # one per BoostConfig field, spelled as it (--time_budget_s)
    return p


def _section_from_args(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """The config file's ``yellowstone:`` section with the flags given on top of it."""
    section = dict(config.get(SECTION) or {})
    plugin = {"input_shape": args.input_shape, "input_dtype": args.input_dtype}
    section.update({k: v for k, v in plugin.items() if v is not None})
    section.update(serving.boost_flags(args))
    if args.handler:
        section["handler"] = _archived_handler_name(args.handler)
    return section


def _archived_handler_name(handler: str) -> str:
    """``dir/my_handler.py:Cls`` -> ``my_handler.py:Cls`` (where it lands in the archive)."""
    path, sep, attr = handler.partition(":")
    if path.endswith(".py"):
        return Path(path).name + sep + attr
    return handler


def _handler_file(handler: str | None) -> Path | None:
    if handler and handler.partition(":")[0].endswith(".py"):
        path = Path(handler.partition(":")[0])
        if not path.is_file():
            raise FileNotFoundError(f"handler file {path} does not exist")
        return path
    return None


@contextlib.contextmanager
def _on_sys_path(path: Path) -> Iterator[None]:
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path))


def _stage(args: argparse.Namespace, extra: list[str], stage: Path) -> None:
    """Lay files out as TorchServe extracts the archive (extra files and dirs at the root)."""
    for item in [args.serialized_file, args.model_file, *extra]:
        if not item:
            continue
        src = Path(item)
        if src.is_dir():
            for child in src.iterdir():
                dst = stage / child.name
                if child.is_dir():
                    shutil.copytree(child, dst)
                else:
                    shutil.copy2(child, dst)
        else:
            shutil.copy2(src, stage / src.name)


def precompile(args: argparse.Namespace, config: dict[str, Any], extra: list[str],
               out_dir: Path) -> str:
    """Boost the model as a worker would and save the artifacts under ``out_dir``.

    Returns the backend chosen. Raises YellowstoneError when nothing can be saved.
    """
    import ts
    from ts.context import Context

    from .handler import BoostHandler

    with tempfile.TemporaryDirectory(prefix="yellowstone-archive-") as tmp:
        stage = Path(tmp)
        _stage(args, extra, stage)
        manifest = {"model": {"modelName": args.model_name,
                              "serializedFile": Path(args.serialized_file).name,
                              "handler": BOOST_HANDLER_FILE.name, "modelVersion": args.version}}
        if args.model_file:
            manifest["model"]["modelFile"] = Path(args.model_file).name
        batch = int(config.get("batchSize") or 1)
        context = Context(args.model_name, str(stage), manifest, batch, None, ts.__version__,
                          True, None, config)
        handler = BoostHandler()
        cwd = os.getcwd()
        with _on_sys_path(stage):
            os.chdir(stage)
            try:
                handler.initialize(context)
            finally:
                os.chdir(cwd)
        boosted = handler.boosted
        if boosted is None:
            raise YellowstoneError("nothing was compiled: give --input-shape (or yellowstone."
                                   "input_shape in the config file) to precompile")
        if boosted.backend == "native":
            logger.warning("%s: no backend beat native here (%s); the archive ships no "
                           "artifacts", args.model_name, boosted.report.fallback_reason or
                           "native was fastest")
            return "native"
        boosted.save(out_dir)
        return boosted.backend


def _run_archiver(args: argparse.Namespace, config_path: Path, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "model_archiver.model_packaging",
           "--model-name", args.model_name, "--version", args.version,
           "--serialized-file", args.serialized_file, "--handler", str(BOOST_HANDLER_FILE),
           "--config-file", str(config_path), "--export-path", args.export_path,
           "--archive-format", args.archive_format]
    if args.model_file:
        cmd += ["--model-file", args.model_file]
    if extra:
        cmd += ["--extra-files", ",".join(extra)]
    if args.requirements_file:
        cmd += ["--requirements-file", args.requirements_file]
    if args.force:
        cmd += ["--force"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise YellowstoneError(f"torch-model-archiver failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")


def archive_main(argv: list[str]) -> int:
    """Entry point of ``yellowstone archive``; returns the exit status."""
    import yaml

    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format="%(message)s")
    try:
        config: dict[str, Any] = {}
        if args.config_file:
            config = yaml.safe_load(Path(args.config_file).read_text()) or {}
            if not isinstance(config, dict):
                raise YellowstoneError(f"{args.config_file} is not a YAML mapping")
        section = _section_from_args(args, config)
        parse_section(section)  # unknown keys and bad values fail here, before any work
        config[SECTION] = section
        extra = [e for e in args.extra_files.split(",") if e.strip()]
        handler_file = _handler_file(args.handler)
        if handler_file is not None and str(handler_file) not in extra:
            extra.append(str(handler_file))
        with tempfile.TemporaryDirectory(prefix="yellowstone-mar-") as tmp:
            tmp_dir = Path(tmp)
            if args.precompile:
                ship = tmp_dir / "ship"
                ship.mkdir()
                backend = precompile(args, config, extra, ship / ARTIFACT_DIRNAME)
                if backend != "native":
                    section["artifact_dir"] = ARTIFACT_DIRNAME
                    extra.append(str(ship))
                    logger.info("%s: precompiled for %s; artifacts shipped in the archive",
                                args.model_name, backend)
            config_path = tmp_dir / "model-config.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            Path(args.export_path).mkdir(parents=True, exist_ok=True)
            _run_archiver(args, config_path, extra)
    except (YellowstoneError, OSError) as exc:
        sys.stderr.write(f"yellowstone archive: error: {exc}\n")
        return 2
    logger.info("wrote %s", Path(args.export_path) / f"{args.model_name}.mar")
    return 0


if __name__ == "__main__":
    raise SystemExit(archive_main(sys.argv[1:]))
