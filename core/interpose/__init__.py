"""The framework interposer: boost models that plain Python code loads, with no code change.

``yellowstone run app.py`` (or ``YELLOWSTONE_INTERPOSE=1`` with the ``.pth`` hook installed)
replaces a few framework loaders with wrappers, each patched only once the application itself
imports the framework (a ``sys.meta_path`` finder patches a module right after it is first
executed, so the interposer never imports torch or TensorFlow on its own):

    keras.models.load_model / tf.keras.models.load_model   -> model proxy (predict, __call__, ...)
    tf.saved_model.load                                    -> proxy whose signatures are boosted
    torch.jit.load, torch.export.load, torch.load (module) -> module proxy (eval, no-grad forward)

A proxy forwards every attribute to the original object and boosts lazily: the first eligible
call (inference, no gradients, plain tensors) is the example for ``yellowstone.boost``; later
calls run on the chosen backend. A call the boosted model does not take (a shape it was not
compiled for, a failure of the compiled path) runs on the original through one fallback path,
logged and counted in ``yellowstone_fallbacks_total``; a client error (4xx) is re-raised as is.
When boosting fails the original serves, with one WARNING naming the reason. A proxy and its
boosted model are released when the application lets the proxy go. ``uninstall()`` (or
``YELLOWSTONE_INTERPOSE=0``) puts the original functions back.

    apis        the table of interposable loaders      settings   InterposeSettings, read
    state       lock, active settings, patches         hooks      install / uninstall / patching
    finder      patch right after a module imports     capture    the core's warnings held back
    boostable   the lazy-boost state machine           registry   proxied models, weakly held
    report      the ``--report`` file                  proxies/   torch, keras, tf proxies
    pth         the ``.pth`` start-up hook             cli        ``yellowstone run``
"""

from __future__ import annotations

from .apis import ALIASES, APIS, Api, api_names, select_apis
from .cli import dry_run_lines, main, run_main
from .hooks import install, install_from_env, is_installed, uninstall
from .proxies import (
    ExportedProgramProxy,
    KerasProxy,
    Proxy,
    SavedModelProxy,
    SignatureProxy,
    TorchModuleProxy,
)
from .pth import PTH_LINE, PTH_NAME, install_hook, site_packages, uninstall_hook
from .registry import REGISTRY
from .report import patched_functions, reports, write_report
from .settings import InterposeSettings, read_config_file, settings_from

__all__ = [
    "Api", "APIS", "ALIASES", "api_names", "select_apis",
    "InterposeSettings", "read_config_file", "settings_from",
    "install", "install_from_env", "uninstall", "is_installed", "patched_functions",
    "Proxy", "TorchModuleProxy", "ExportedProgramProxy", "KerasProxy", "SavedModelProxy",
    "SignatureProxy", "REGISTRY", "reports", "write_report",
    "PTH_NAME", "PTH_LINE", "site_packages", "install_hook", "uninstall_hook",
    "dry_run_lines", "run_main", "main",
]
