"""What replaces the wrapped handler's ``model``: thin stand-ins that call the boosted model.

The handler keeps calling ``self.model`` as it was written to; a torch module stand-in (for
``nn.Module``, TorchScript and ``torch.export`` models) or an ONNX Runtime session stand-in
forwards each call to the boost handler, which runs the boosted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def boosted_module_class() -> type:
    """The ``nn.Module`` stand-in class (torch is imported only when a worker needs it)."""
    import torch

    class BoostedModule(torch.nn.Module):
        """Stands in for ``handler.model``: forward runs the boosted model.

        Attributes the handler reads from its model (``.fc``, ``.embedding``, ``.training``) are
        the original's; the original stays registered as ``original`` so ``.to()``/``.eval()``
        and captum explanations keep working on it.
        """

        def __init__(self, original: Any, plugin: Any):
            super().__init__()
            self.original = original
            object.__setattr__(self, "_plugin", plugin)

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._modules["original"], name)

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self._plugin._call_boosted(args, kwargs)

    return BoostedModule


class BoostedOrtSession:
    """Stands in for the ONNX Runtime session BaseHandler builds for ``.onnx`` models.

    Keeps the session API handlers use (``run``, ``get_inputs``, ``get_outputs``) and is also
    callable with torch tensors, so BaseHandler's own ``inference`` works on ONNX models too.
    """

    def __init__(self, session: Any, plugin: Any):
        self._session = session
        self._plugin = plugin

    def get_inputs(self) -> Any:
        """The original session's input descriptions."""
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        """The original session's output descriptions."""
        return self._session.get_outputs()

    def run(self, output_names: Sequence[str] | None, input_feed: dict, run_options: Any = None) -> list:
        """Run like ``InferenceSession.run``: named numpy feeds in, numpy outputs out."""
        import numpy as np

        boosted = self._plugin._ensure_boosted(
            tuple(input_feed[n] for n in [i.name for i in self.get_inputs()] if n in input_feed),
            {})
        outs = boosted.run_dict({k: np.asarray(v) for k, v in input_feed.items()})
        names = list(output_names) if output_names else list(boosted.output_names)
        return [outs[n] for n in names]

    def __call__(self, *args: Any) -> Any:
        return self._plugin._call_boosted(args, {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
