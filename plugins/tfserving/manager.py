"""Models and their numbered versions: which to serve (version policy), loading, polling, lookup."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ServingError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One entry of TF Serving's model_config_list."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class VersionState:
    """A version's state as ModelService reports it."""

    state: str = "START"  # START, LOADING, AVAILABLE, UNLOADING, END
    servable: Any = None
    error: str = ""


def parse_model_config_file(path: str) -> list[ModelConfig]:
    """Read a ModelServerConfig text proto (``--model_config_file``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(Path(path).read_text(), cfg)
    out = []
    for c in cfg.model_config_list.config:
        vp = c.model_version_policy
        which = vp.WhichOneof("policy_choice")
        if which == "all":
            kw: dict[str, Any] = {"policy": "all"}
        elif which == "specific":
            kw = {"policy": "specific", "versions": tuple(int(v) for v in vp.specific.versions)}
        else:
            kw = {"policy": "latest", "num_versions": int(vp.latest.num_versions or 1)}
        out.append(ModelConfig(name=c.name, base_path=c.base_path, labels=dict(c.version_labels), **kw))
    return out


def available_versions(base_path: str) -> list[int]:
    """Numbered version directories holding a SavedModel, ascending."""
    root = Path(base_path)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name.isdigit()
            and ((p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists())
        ):
            found.append(int(p.name))
    return sorted(found)


class ModelManager:
    """Keeps each model's wanted versions loaded; answers lookups by name, version or label."""

    def __init__(
        self,
        configs: Sequence[ModelConfig],
        loader: Callable[[ModelConfig, int, Path], Any],
        poll_s: float = 1.0,
    ):
        self.configs = {c.name: c for c in configs}
        self._loader = loader
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._states: dict[str, dict[int, VersionState]] = {c.name: {} for c in configs}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _wanted(self, cfg: ModelConfig, have: list[int]) -> list[int]:
        if cfg.policy == "all":
            return have
        if cfg.policy == "specific":
            return [v for v in have if v in cfg.versions]
        return have[-max(cfg.num_versions, 1) :]

    def poll_once(self) -> None:
        """Load newly wanted versions (newest first), then unload versions no longer wanted."""
        for cfg in self.configs.values():
            have = available_versions(cfg.base_path)
            wanted = self._wanted(cfg, have)
            states = self._states[cfg.name]
            for v in sorted(wanted, reverse=True):
                if v in states and states[v].state in ("AVAILABLE", "LOADING", "END"):
                    continue
                with self._lock:
                    states[v] = VersionState(state="LOADING")
                try:
                    servable = self._loader(cfg, v, Path(cfg.base_path) / str(v))
                except Exception as exc:  # noqa: BLE001 - a bad version must not stop the server
                    logger.error("loading %s version %d failed: %s", cfg.name, v, exc)
                    with self._lock:
                        states[v] = VersionState(state="END", error=f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    states[v] = VersionState(state="AVAILABLE", servable=servable)
                logger.info("Successfully loaded servable version {name: %s version: %d}", cfg.name, v)
            for v, st in list(states.items()):
                if v not in wanted and st.state == "AVAILABLE":
                    with self._lock:
                        st.state = "END"
                        servable, st.servable = st.servable, None
                    logger.info("Unloaded servable version {name: %s version: %d}", cfg.name, v)
                    if servable is not None and hasattr(servable, "close"):
                        servable.close()

    def start(self) -> None:
        """Poll the base paths every ``poll_s`` seconds in a daemon thread (0 = never again)."""
        if self._poll_s <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(self._poll_s):
                try:
                    self.poll_once()
                except Exception:  # noqa: BLE001
                    logger.exception("polling the model base paths failed")

        self._thread = threading.Thread(target=loop, name="ys-tfserving-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        """The servable for a request; NOT_FOUND as TF Serving words it."""
        with self._lock:
            states = self._states.get(name)
            if states is None:
                what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
                raise ServingError("NOT_FOUND", f"Servable not found for request: {what}")
            if label:
                cfg = self.configs[name]
                if label not in cfg.labels:
                    raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
                version = cfg.labels[label]
            if version is None:
                ready = [v for v, s in states.items() if s.state == "AVAILABLE"]
                if not ready:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
                return states[max(ready)].servable
            st = states.get(int(version))
            if st is None or st.state != "AVAILABLE":
                raise ServingError(
                    "NOT_FOUND", f"Servable not found for request: Specific({name}, {version})"
                )
            return st.servable

    def status(self, name: str, version: int | None = None) -> list[tuple[int, str, str]]:
        """(version, state, error message) for ModelService.GetModelStatus."""
        with self._lock:
            states = self._states.get(name)
            if states is None:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            if version is not None:
                st = states.get(int(version))
                if st is None:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [(int(version), st.state, st.error)]
            return [(v, s.state, s.error) for v, s in sorted(states.items(), reverse=True)]
