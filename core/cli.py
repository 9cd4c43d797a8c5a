"""The ``yellowstone`` command: doctor, compile, bench, and the server plugins' entry points."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import YellowstoneError
from .serving.settings import add_boost_flags


def _print_err(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class _Progress:
    """Prints step lines to stderr, plus a heartbeat while one step runs long (a compile)."""

    def __init__(self, quiet: bool, every_s: float = 15.0):
        self.quiet = quiet
        self.every_s = every_s
        self._step = ""
        self._since = time.perf_counter()
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        if not quiet:
            self._thread.start()

    def __call__(self, msg: str) -> None:
        self._step, self._since = msg, time.perf_counter()
        if not self.quiet:
            _print_err(f"[{time.perf_counter() - self._t0:6.1f}s] {msg}")

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            took = time.perf_counter() - self._since
            if self._step and took >= self.every_s:
                _print_err(f"[{time.perf_counter() - self._t0:6.1f}s]   ... still at: "
                           f"{self._step} ({took:.0f} s)")

    def close(self) -> None:
        self._stop.set()


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file or directory: .onnx, .pt2, .pt (TorchScript), "
                                 ".keras, or a SavedModel directory")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="input signature, e.g. x:1x3x224x224:float32 (-1 or a name for a "
                        "dynamic dim); repeat per input. Needed for torch files.")
    p.add_argument("--signature", default="serving_default", help="SavedModel signature")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_boost_flags(p)


def _boost_from_args(args: argparse.Namespace, progress: _Progress) -> Any:
    from .engine import boost
    from .model import load_model
    from .serving import boost_config, boost_flags, parse_specs

    specs = parse_specs(args.input, where="--input") or None
    # flags not given leave YELLOWSTONE_* in force; not a server: threads may spin between calls
    cfg = boost_config(flags=boost_flags(args), server=False)
    handle = load_model(args.model, input_specs=specs, signature=args.signature)
    return boost(handle, config=cfg, progress=progress)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    info = doctor()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    hw = info["hardware"]
    print(f"CPU   {hw['cpu_model']} ({hw['arch']}), {hw['cores']} cores available")
    print("ISA   " + "  ".join(f"{k}={'yes' if v else 'no'}" for k, v in hw["isa"].items()))
    for gpu in hw["gpus"]:
        print(f"GPU   {gpu['vendor']} {gpu['name']} ({gpu['memory_mib']} MiB)")
    if not hw["gpus"]:
        print("GPU   none found")
    print(f"host fingerprint {hw['fingerprint']}\n")
    width = max(len(b["name"]) for b in info["backends"])
    for b in info["backends"]:
        state = "available  " if b["available"] else "unavailable"
        devices = ",".join(b["devices"]) or "-"
        print(f"{b['name'].ljust(width)}  {state}  {str(b['version'] or '-'):14} "
              f"{devices:10} {b['reason']}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    progress = _Progress(args.quiet or args.json)
    try:
        boosted = _boost_from_args(args, progress)
    finally:
        progress.close()
    if args.out:
        boosted.save(args.out)
        progress(f"wrote artifact directory {args.out}")
    print(boosted.report.to_json(indent=2) if args.json else boosted.report.table())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    progress = _Progress(args.quiet or args.json)
    try:
        boosted = _boost_from_args(args, progress)
    finally:
        progress.close()
    report = boosted.report
    print(report.to_json(indent=2) if args.json else report.table())
    if args.plot:
        plot_report(report.to_dict(), Path(args.plot))
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def plot_report(report: dict[str, Any], out: Path, title: str | None = None) -> None:
    """Bar chart of p50 latency (p90 as error bar) per backend and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = [c for c in report["candidates"] if c.get("latency_ms")]
    sizes = report["batch_sizes"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cands) * max(1, len(sizes)) ** 0.5, 4))
    width = 0.8 / max(1, len(sizes))
    for j, b in enumerate(sizes):
        p50 = [c["latency_ms"].get(str(b), {}).get("p50_ms", 0) for c in cands]
        p90 = [c["latency_ms"].get(str(b), {}).get("p90_ms", 0) for c in cands]
        xs = [i + j * width for i in range(len(cands))]
        ax.bar(xs, p50, width, yerr=[[0] * len(p50), [max(0, a - b_) for a, b_ in zip(p90, p50)]],
               label=f"batch {b}", capsize=3)
    ax.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(cands))])
    ax.set_xticklabels([c["backend"] + (" *" if c["status"] == "chosen" else "") for c in cands])
    ax.set_ylabel("latency ms (p50, bar to p90)")
    ax.set_title(title or f"{report['model']} ({report['precision']}); * = chosen")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _delegate(module: str, func: str, argv: Sequence[str]) -> int:
    import importlib

    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        _print_err(f"yellowstone: this command is not available: {exc}")
        return 2
    return int(fn(list(argv)) or 0)


# Server plugins own their flags; these subcommands hand them the rest of the command line.
_DELEGATES = {
    "archive": ("yellowstone.plugins.torchserve.archive", "archive_main",
                "package a TorchServe model archive with the boost handler"),
    "tfserving": ("yellowstone.plugins.tfserving.server", "main",
                  "serve SavedModels with TF Serving's gRPC/REST APIs on the boost shim"),
    "kserve": ("yellowstone.plugins.kserve.manifests", "manifests_main",
               "KServe helpers: `yellowstone kserve manifests ...`"),
    "run": ("yellowstone.interpose", "run_main",
            "run a Python program with framework calls boosted"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(prog="yellowstone",
                                     description="Boost models with the fastest validated backend.")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="show hardware and which backends can run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_doctor)
    p = sub.add_parser("compile", help="boost a model; optionally write a portable artifact")
    _add_model_args(p)
    p.add_argument("--out", default=None, metavar="DIR", help="write the artifact directory here")
    p.set_defaults(fn=_cmd_compile)
    p = sub.add_parser("bench", help="compare every backend on a model (table, --json, --plot)")
    _add_model_args(p)
    p.add_argument("--plot", default=None, metavar="FILE.png")
    p.set_defaults(fn=_cmd_bench)
    for name, (_, _, help_text) in _DELEGATES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``yellowstone`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in _DELEGATES:
        module, func, _ = _DELEGATES[first]
        rest = argv[argv.index(first) + 1:]
        if first == "kserve":
            if not rest or rest[0] != "manifests":
                _print_err("usage: yellowstone kserve manifests [options]")
                return 2
            rest = rest[1:]
        if first != "run":  # `run` leaves logging to the application it runs, as Python would
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return _delegate(module, func, rest)
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.fn(args))
    except YellowstoneError as exc:
        _print_err(f"yellowstone: error: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
