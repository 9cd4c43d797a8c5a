"""The table of interposable framework loaders (names, aliases, where each lives); imports nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Api:
    """One interposable loader.

    Attributes:
        name: the public spelling users select it by (``YELLOWSTONE_INTERPOSE_APIS``).
        distribution: the package that provides it (for ``--dry-run``).
        root: the top-level module; nothing is patched before the application imports it.
        targets: ``(module name, attribute)`` pairs holding the function; each is replaced.
        kind: which proxy wraps what the loader returns.
    """

    name: str
    distribution: str
    root: str
    targets: tuple[tuple[str, str], ...]
    kind: str


APIS: tuple[Api, ...] = (
    Api("keras.models.load_model", "keras", "keras",
        (("keras.models", "load_model"), ("keras.saving", "load_model"),
         ("keras._tf_keras.keras.models", "load_model")), "keras"),
    Api("tf.saved_model.load", "tensorflow", "tensorflow",
        (("tensorflow.saved_model", "load"),), "saved_model"),
    Api("torch.jit.load", "torch", "torch", (("torch.jit", "load"),), "torch"),
    Api("torch.export.load", "torch", "torch", (("torch.export", "load"),), "exported_program"),
    Api("torch.load", "torch", "torch", (("torch", "load"),), "torch_load"),
)
ALIASES = {"tf.keras.models.load_model": "keras.models.load_model",
           "keras.saving.load_model": "keras.models.load_model",
           "tensorflow.saved_model.load": "tf.saved_model.load"}


def api_names() -> list[str]:
    """Names accepted in ``apis`` / ``YELLOWSTONE_INTERPOSE_APIS``."""
    return [a.name for a in APIS]


def select_apis(spec: str | Sequence[str] | None) -> tuple[Api, ...]:
    """The APIs named in ``spec`` (comma-separated or a list; empty or ``all`` = every one).

    Raises:
        ConfigError: a name is neither an API nor an alias; the message lists the valid ones.
    """
    if spec is None:
        return APIS
    names = [str(s).strip() for s in (spec.split(",") if isinstance(spec, str) else spec)
             if str(s).strip()]
    if not names or names == ["all"]:
        return APIS
    by_name = {a.name: a for a in APIS}
    chosen: list[Api] = []
    unknown: list[str] = []
    for n in names:
        api = by_name.get(ALIASES.get(n, n))
        if api is None:
            unknown.append(n)
        elif api not in chosen:
            chosen.append(api)
    if unknown:
        raise ConfigError(f"unknown interposable API(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(api_names() + sorted(ALIASES))}")
    return tuple(chosen)
