"""Proxies for what torch loaders return: modules (jit, pickled) and ``torch.export`` programs."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..registry import REGISTRY
from .base import Proxy, batch_of

MUTATORS = frozenset({"to", "cpu", "cuda", "half", "float", "double", "bfloat16", "type",
                      "load_state_dict", "apply", "_apply", "train", "to_empty", "requires_grad_",
                      "share_memory"})


class TorchModuleProxy(Proxy):
    """A loaded ``nn.Module``/TorchScript module: eval-mode, no-grad forward calls are boosted.

    Anything else (training mode, gradients enabled, hooks, non-tensor or non-CPU arguments)
    calls the original module. ``.to()``, ``.train()``, ``.load_state_dict()`` and the like
    forget the boosted model; the next eligible call boosts again (the cache makes it cheap).
    """

    _ys_mutators = MUTATORS

    def __init__(self, original: Any, *, api: str, source: str, program: Any = None):
        super().__init__(original, api=api, source=source)
        object.__setattr__(self, "_ys_program", program)  # torch.export: boost the program
        # torch.export's module() installs its own input-check pre-hook: only later hooks count
        own = _hook_keys(original) if program is not None else frozenset()
        object.__setattr__(self, "_ys_own_hooks", own)

    def _ys_ineligible(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        torch: Any = sys.modules["torch"]
        module = self._ys_original
        if torch.is_grad_enabled():
            return "gradients enabled"
        if self._ys_program is None and getattr(module, "training", False):
            return "training mode"
        if args and kwargs:
            return "mixed positional and keyword arguments"
        values = list(args) + list(kwargs.values())
        if not values:
            return "no inputs"
        for v in values:
            if not isinstance(v, torch.Tensor) or v.device.type != "cpu" or v.requires_grad \
                    or v.dtype in (torch.bfloat16, torch.complex64, torch.complex128):
                return "non-tensor, non-CPU or gradient-tracking argument"
        if _hook_keys(module) - self._ys_own_hooks:
            return "forward hooks"
        return ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self._ys_original
        if self._ys_ineligible(args, kwargs):
            return self._ys_original_call(module, *args, **kwargs)
        example = dict(kwargs) if kwargs else tuple(args)
        cfg = self._ys_config(batch_of(list(args) + list(kwargs.values())))
        boosted = self._ys.get(lambda: self._ys_boost(example, cfg))
        if boosted is None:
            return self._ys_original_call(module, *args, **kwargs)
        return self._ys_call_boosted(boosted, module, args, kwargs)

    def _ys_boost(self, example: Any, cfg: Any) -> Any:
        from ... import engine

        program = self._ys_program
        boosted = engine.boost(program if program is not None else self._ys_original, example,
                               config=cfg)
        if program is not None and cfg.dynamic_batch and boosted.backend == "native" and \
                any("torch.export failed" in c.reason for c in boosted.report.candidates):
            # The core re-exports with its own batch range, which a program saved with a
            # narrower one rejects ("Constraints violated"): use batch buckets instead.
            from ...config import BoostConfig

            boosted = engine.boost(program, example, config=BoostConfig.from_dict(
                {"dynamic_batch": False}, base=cfg))
        return boosted


def _hook_keys(module: Any) -> frozenset[tuple[str, Any]]:
    """The module's forward pre-hooks and hooks, as ``("pre"|"post", key)``."""
    return frozenset({("pre", k) for k in getattr(module, "_forward_pre_hooks", None) or ()} |
                     {("post", k) for k in getattr(module, "_forward_hooks", None) or ()})


class ExportedProgramProxy(Proxy):
    """A ``torch.export`` program: ``.module()`` returns a boosted module proxy."""

    def module(self, *args: Any, **kwargs: Any) -> Any:
        """The program's module, as a :class:`TorchModuleProxy` that boosts the program."""
        gm = self._ys_original.module(*args, **kwargs)
        proxy = TorchModuleProxy(gm, api=self._ys.api, source=self._ys.source,
                                 program=self._ys_original)
        REGISTRY.discard(self._ys)  # the program itself is never called: report the module's
        return proxy


def wrap_torch(kind: str, obj: Any, *, api: str, source: str) -> Any:
    """A proxy for what a torch loader returned; anything but a module or program is untouched."""
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return obj
    if kind == "exported_program":
        if isinstance(obj, torch.export.ExportedProgram):
            return ExportedProgramProxy(obj, api=api, source=source)
        return obj
    if isinstance(obj, torch.nn.Module):
        return TorchModuleProxy(obj, api=api, source=source)
    return obj  # torch.load of a state dict, a tensor, ...: untouched
