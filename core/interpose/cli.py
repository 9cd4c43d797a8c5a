"""``yellowstone run`` (and ``python -m yellowstone.interpose``): run a program with its loaders interposed.

Also ``--dry-run`` (what would be interposed) and ``--install-hook``/``--uninstall-hook``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..serving import add_boost_flags, boost_flags
from .apis import APIS
from .hooks import install
from .pth import PTH_NAME, install_hook, uninstall_hook
from .settings import InterposeSettings, settings_from

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yellowstone run",
        description="Run a Python program with its framework model loaders boosted: "
                    "yellowstone run [options] app.py [args] | -m module [args]")
    p.add_argument("--config", help="yellowstone.yaml: apis, backends, precision, cache_dir, "
                                     "batch_sizes, ... (default: $YELLOWSTONE_CONFIG)")
    p.add_argument("--apis", help="comma-separated APIs to interpose (default: all; "
                                  "$YELLOWSTONE_INTERPOSE_APIS)")
    p.add_argument("--report", metavar="FILE.json", help="write every model's report here")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be interposed and exit without running the program")
    p.add_argument("--install-hook", action="store_true",
                   help=f"write {PTH_NAME} so that YELLOWSTONE_INTERPOSE=1 interposes any "
                        "Python process of this environment")
    p.add_argument("--uninstall-hook", action="store_true", help=f"remove {PTH_NAME}")
    p.add_argument("--site-dir", help="directory for the hook (default: this venv's "
                                      "site-packages)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings from yellowstone")
    add_boost_flags(p)
    return p


def _split_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Our options, then the program (``app.py args`` or ``-m module args``)."""
    takes_value = {s for a in parser._actions if a.nargs != 0 for s in a.option_strings}
    ours: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m" or not a.startswith("-"):
            return ours, list(argv[i:])
        if a == "--":
            return ours, list(argv[i + 1:])
        ours.append(a)
        if a in takes_value and i + 1 < len(argv):
            ours.append(argv[i + 1])
            i += 1
        i += 1
    return ours, []


def _distribution_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dry_run_lines(settings: InterposeSettings) -> list[str]:
    """One line per API: name, present in this environment or not, selected or not."""
    width = max(len(a.name) for a in APIS)
    lines = []
    for api in APIS:
        present = importlib.util.find_spec(api.root) is not None
        version = _distribution_version(api.distribution) if present else None
        where = (f"present ({api.distribution} {version or '?'})" if present
                 else f"absent ({api.distribution} not installed)")
        action = ("would interpose" if api in settings.apis and present else
                  "not selected" if api not in settings.apis else "nothing to do")
        lines.append(f"{api.name.ljust(width)}  {where:34}  {action}")
    return lines


class _UntilAppLogs(logging.Filter):
    """Passes records only while the root logger has no handler (the app has not set up logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not logging.getLogger().handlers


def log_to_stderr(quiet: bool) -> None:
    """Show the interposer's lines on stderr; the application's logging is left exactly as it is.

    Only the ``yellowstone`` logger is touched: its level, and one stderr handler that speaks
    while the application has configured no root handler (once it has, our records reach the
    application's handlers by propagation, like any library's, and are not printed twice).
    """
    ours = logging.getLogger("yellowstone")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(_UntilAppLogs())
        ours.addHandler(handler)
    ours.setLevel(logging.WARNING if quiet else logging.INFO)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _hook_command(args: argparse.Namespace) -> int:
    if args.install_hook:
        path = install_hook(args.site_dir)
        _out(f"installed {path}; processes of this environment started with "
             "YELLOWSTONE_INTERPOSE=1 are interposed")
    else:
        removed = uninstall_hook(args.site_dir)
        _out(f"removed {removed}" if removed else "no hook was installed")
    return 0


def _dry_run(settings: InterposeSettings, program: list[str]) -> int:
    off = os.environ.get("YELLOWSTONE_INTERPOSE", "").strip() == "0"
    options = {**settings.boost, **settings.flags}
    _out(f"yellowstone run: interposer {'off (YELLOWSTONE_INTERPOSE=0)' if off else 'on'}; "
         f"boost options: {options or 'YELLOWSTONE_* environment / defaults'}")
    for line in dry_run_lines(settings):
        _out(line)
    if program:
        _out(f"would run: {' '.join(program)}")
    return 0


def run_main(argv: list[str]) -> int:
    """``yellowstone run``: install the interposer, then run the program as Python would."""
    parser = _parser()
    ours, program = _split_argv(argv, parser)
    args = parser.parse_args(ours)
    if args.install_hook or args.uninstall_hook:
        return _hook_command(args)
    try:
        settings = settings_from(config_file=args.config, apis=args.apis,
                                 report_path=args.report, flags=boost_flags(args))
    except ConfigError as exc:
        sys.stderr.write(f"yellowstone run: {exc}\n")
        return 2
    if args.dry_run:
        return _dry_run(settings, program)
    if not program:
        parser.print_usage(sys.stderr)
        sys.stderr.write("yellowstone run: give a program: app.py [args] or -m module [args]\n")
        return 2
    log_to_stderr(args.quiet)
    install(settings)
    return _run_program(program)


def _run_program(program: list[str]) -> int:
    """Run ``app.py args`` or ``-m module args`` in this process, as ``python`` would."""
    import runpy

    try:
        if program[0] == "-m":
            if len(program) < 2:
                sys.stderr.write("yellowstone run: -m needs a module name\n")
                return 2
            sys.argv = [program[1], *program[2:]]  # run_module sets argv[0] to the file
            sys.path[0:1] = [os.getcwd()]
            runpy.run_module(program[1], run_name="__main__", alter_sys=True)
        else:
            script = program[0]
            if not Path(script).exists():
                sys.stderr.write(f"yellowstone run: can't open file {script!r}\n")
                return 2
            sys.argv = list(program)
            sys.path[0:1] = [str(Path(script).resolve().parent)]
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        sys.stderr.write(f"{code}\n")
        return 1
    return 0


def main() -> int:
    """``python -m yellowstone.interpose ...``: the same as ``yellowstone run ...``."""
    return run_main(sys.argv[1:])
