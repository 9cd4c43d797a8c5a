"""Models and their numbered versions: config, which to serve (version policy), loading, polling, lookup."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yellowstone.serving import settle_heap

from .errors import ServingError
from .textproto import StartupError

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1


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
    """A version's state as ModelService reports it, and the directory it was found in."""

    state: str = "START"  # START, LOADING, AVAILABLE, UNLOADING, END
    servable: Any = None
    error: str = ""
    path: Path | None = None


def _platform(c: Any) -> str:
    """GetPlatform: model_platform, or the deprecated model_type (TENSORFLOW only)."""
    if c.model_type:  # MODEL_TYPE_UNSPECIFIED is 0
        if c.model_platform:
            raise StartupError(
                "INVALID_ARGUMENT",
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                "ModelServerConfig::model_platform.",
            )
        if c.model_type != 1:  # TENSORFLOW
            raise StartupError(
                "INVALID_ARGUMENT", f"ModelServerConfig::model_type choice {c.model_type} not supported."
            )
        return "tensorflow"
    if not c.model_platform:
        raise StartupError(
            "INVALID_ARGUMENT",
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            "ModelServerConfig::model_platform.",
        )
    return str(c.model_platform)


def configs_from_proto(cfg: Any) -> list[ModelConfig]:
    """ModelConfigs from a ModelServerConfig message, validated as ServerCore::ReloadConfig does."""
    which = cfg.WhichOneof("config")
    if which == "custom_model_config":
        raise StartupError("INVALID_ARGUMENT", "ModelServer does not yet support custom model config.")
    out: list[ModelConfig] = []
    seen: set[str] = set()
    for c in cfg.model_config_list.config:
        if c.name in seen:
            raise StartupError(
                "INVALID_ARGUMENT", f"Illegal to list model {c.name} multiple times in config list"
            )
        seen.add(c.name)
        platform = _platform(c)
        if platform != "tensorflow":
            raise StartupError("INVALID_ARGUMENT", f"Model {c.name} requests unsupported platform {platform}")
        if c.HasField("logging_config"):
            raise StartupError(
                "INVALID_ARGUMENT",
                f"Model {c.name}: logging_config (request logging) is not supported by yellowstone",
            )
        vp = c.model_version_policy
        kind = vp.WhichOneof("policy_choice")
        if kind == "all":
            kw: dict[str, Any] = {"policy": "all"}
        elif kind == "specific":
            kw = {"policy": "specific", "versions": tuple(int(v) for v in vp.specific.versions)}
        else:
            kw = {"policy": "latest", "num_versions": int(vp.latest.num_versions or 1)}
        out.append(ModelConfig(name=c.name, base_path=c.base_path, labels=dict(c.version_labels), **kw))
    return out


def parse_model_config_file(path: str) -> list[ModelConfig]:
    """Read a ModelServerConfig text proto (``--model_config_file``); StartupError when it is bad."""
    from tensorflow_serving.config import model_server_config_pb2

    from .textproto import parse_text_file

    return configs_from_proto(parse_text_file(path, model_server_config_pb2.ModelServerConfig()))


def version_dirs(base_path: str) -> dict[int, Path]:
    """Version number -> directory, for every all-digit (int64) child holding a SavedModel."""
    root = Path(base_path)
    if not root.is_dir():
        return {}
    found: dict[int, Path] = {}
    for p in sorted(root.iterdir()):
        if not (p.is_dir() and _VERSION_DIR.fullmatch(p.name)):
            continue
        version = int(p.name)
        if version > _INT64_MAX:
            continue
        if not ((p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists()):
            continue
        if version in found:
            logger.warning(
                "%s and %s are both version %d; serving %s", found[version], p, version, found[version]
            )
            continue
        found[version] = p
    return found


def available_versions(base_path: str) -> list[int]:
    """Numbered version directories holding a SavedModel, ascending."""
    return sorted(version_dirs(base_path))


class ModelManager:
    """Keeps each model's wanted versions loaded; answers lookups by name, version or label.

    Version directories are found as TF Serving's file-system source finds them: any all-digit name
    under the base path is a version, its number parsed as an int64 (``00000123`` is version 123),
    and the version is loaded from the directory that was found. Loads may retry
    (``--max_num_load_retries``) and run on a thread pool (``--num_load_threads``); an old version
    is unloaded only once a wanted one is AVAILABLE (AvailabilityPreservingPolicy). A new config
    (``--model_config_file_poll_wait_seconds``) adds and removes models while serving; version labels
    are checked against what is loaded, as ServerCore does.

    Args:
        configs: the models to serve.
        loader: ``(config, version, directory) -> servable``; an exception fails the load.
        poll_s: seconds between file-system polls (<= 0: only the first poll).
        load_threads / unload_threads: pool sizes for loads / unloads (0: one at a time).
        max_load_retries: further attempts after a failed load; ``retry_interval_s`` apart.
        allow_unavailable_labels: None skips label checks; False (TF Serving's default) needs
            every label on an AVAILABLE version; True lets a new label name any version.
    """

    def __init__(
        self,
        configs: Sequence[ModelConfig],
        loader: Callable[[ModelConfig, int, Path], Any],
        poll_s: float = 1.0,
        *,
        load_threads: int = 0,
        unload_threads: int = 0,
        max_load_retries: int = 0,
        retry_interval_s: float = 0.0,
        allow_unavailable_labels: bool | None = None,
    ):
        self._loader = loader
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._load_threads, self._unload_threads = load_threads, unload_threads
        self._retries, self._retry_s = max_load_retries, retry_interval_s
        self._label_policy = allow_unavailable_labels
        self.configs: dict[str, ModelConfig] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        self._empty: set[str] = set()
        for c in configs:
            self.configs[c.name] = dataclasses.replace(c, labels={}) if self._label_policy is not None else c
            self._states[c.name] = {}
        self._wanted_labels = {c.name: dict(c.labels) for c in configs}

    # -- policy ------------------------------------------------------------------------------
    def _wanted(self, cfg: ModelConfig, have: list[int]) -> list[int]:
        if cfg.policy == "all":
            return have
        if cfg.policy == "specific":
            return [v for v in have if v in cfg.versions]
        return have[-max(cfg.num_versions, 1) :]

    # -- loading -----------------------------------------------------------------------------
    def _load_version(self, cfg: ModelConfig, v: int, path: Path) -> None:
        states = self._states[cfg.name]
        attempts = 1 + max(self._retries, 0)
        for attempt in range(1, attempts + 1):
            try:
                servable = self._loader(cfg, v, path)
            except Exception as exc:  # noqa: BLE001 - a bad version must not stop the server
                logger.error("Loading servable: {name: %s version: %d} failed: %s", cfg.name, v, exc)
                retry = attempt < attempts and cfg.name in self.configs
                if retry and not self._stop.wait(max(self._retry_s, 0.0)):
                    logger.info(
                        "Retrying load of {name: %s version: %d} (retry %d of %d)",
                        cfg.name,
                        v,
                        attempt,
                        attempts - 1,
                    )
                    continue
                with self._lock:
                    states[v] = VersionState(state="END", error=f"{type(exc).__name__}: {exc}", path=path)
                return
            with self._lock:
                states[v] = VersionState(state="AVAILABLE", servable=servable, path=path)
            logger.info("Successfully loaded servable version {name: %s version: %d}", cfg.name, v)
            return

    def _unload(self, name: str, v: int, st: VersionState) -> None:
        with self._lock:
            st.state = "UNLOADING"
            servable, st.servable = st.servable, None
        try:
            if servable is not None and hasattr(servable, "close"):
                servable.close()
        finally:
            with self._lock:
                st.state = "END"
            logger.info("Unloaded servable version {name: %s version: %d}", name, v)

    @staticmethod
    def _run_all(jobs: list[Callable[[], None]], threads: int) -> None:
        if threads <= 0 or len(jobs) <= 1:
            for job in jobs:
                job()
            return
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ys-tfserving-load") as pool:
            for fut in [pool.submit(job) for job in jobs]:
                fut.result()

    def poll_once(self) -> None:
        """Load newly wanted versions (newest first), then unload versions no longer wanted."""
        with self._poll_lock:
            if self._poll():
                settle_heap()  # the loaded models' objects out of the collector's passes

    def _poll(self) -> bool:
        """One round of loads and unloads; True when any version was loaded or unloaded."""
        loads: list[Callable[[], None]] = []
        plan: list[tuple[ModelConfig, list[int], dict[int, Path]]] = []
        for cfg in list(self.configs.values()):
            found = version_dirs(cfg.base_path)
            if not found and cfg.name not in self._empty:
                self._empty.add(cfg.name)
                logger.warning(
                    "No versions of servable %s found under base path %s. Did you forget to name your "
                    "leaf directories as numbers (eg. /1/, /2/, etc.)?",
                    cfg.name,
                    cfg.base_path,
                )
            if found:
                self._empty.discard(cfg.name)
            wanted = self._wanted(cfg, sorted(found))
            plan.append((cfg, wanted, found))
            states = self._states[cfg.name]
            for v in sorted(wanted, reverse=True):
                st = states.get(v)
                if st is not None and (st.state != "END" or st.error):
                    continue  # loaded, in flight, or failed for good (no reload, as TF Serving)
                with self._lock:
                    states[v] = VersionState(state="LOADING", path=found[v])
                loads.append(lambda c=cfg, v=v, p=found[v]: self._load_version(c, v, p))
        self._run_all(loads, self._load_threads)
        unloads: list[Callable[[], None]] = []
        for cfg, wanted, _ in plan:
            states = self._states[cfg.name]
            if not any(states.get(v) and states[v].state == "AVAILABLE" for v in wanted):
                continue  # keep serving what is loaded until a wanted version is available
            for v, st in list(states.items()):
                if v not in wanted and st.state == "AVAILABLE":
                    unloads.append(lambda n=cfg.name, v=v, st=st: self._unload(n, v, st))
        self._run_all(unloads, self._unload_threads)
        self._apply_labels(raise_errors=False)
        return bool(loads or unloads)

    # -- labels ------------------------------------------------------------------------------
    def _check_labels(self, name: str, wanted: Mapping[str, int]) -> None:
        cfg = self.configs[name]
        states = self._states[name]
        for label, version in wanted.items():
            ok = states.get(version) is not None and states[version].state == "AVAILABLE"
            new_label = label not in cfg.labels
            if not ok and not (self._label_policy and new_label):
                raise StartupError(
                    "FAILED_PRECONDITION",
                    f"Request to assign label to version {version} of model {name}, which is not currently "
                    "available for inference",
                )

    def _apply_labels(self, raise_errors: bool) -> None:
        """Make each model's configured labels active once they point where the policy allows."""
        if self._label_policy is None:
            return
        for name, wanted in self._wanted_labels.items():
            cfg = self.configs.get(name)
            if cfg is None or dict(cfg.labels) == wanted:
                continue
            try:
                self._check_labels(name, wanted)
            except StartupError as exc:
                if raise_errors:
                    raise
                logger.debug("labels of %s not applied yet: %s", name, exc.message)
                continue
            with self._lock:
                self.configs[name] = dataclasses.replace(cfg, labels=dict(wanted))

    def check_labels(self) -> None:
        """Apply the configured version labels now; StartupError when one cannot be assigned."""
        self._apply_labels(raise_errors=True)

    # -- reconfiguration ---------------------------------------------------------------------
    def reload(self, configs: Sequence[ModelConfig]) -> None:
        """Serve exactly ``configs`` from now on: new models load, dropped models unload."""
        new = {c.name: c for c in configs}
        if len(new) != len(configs):
            raise StartupError("INVALID_ARGUMENT", "Illegal to list a model multiple times in config list")
        changed = False
        with self._poll_lock:
            for name in [n for n in self.configs if n not in new]:
                logger.info("Removing model %s (no longer in the model config)", name)
                with self._lock:
                    del self.configs[name]
                    self._wanted_labels.pop(name, None)
                for v, st in list(self._states[name].items()):
                    if st.state == "AVAILABLE":
                        self._unload(name, v, st)
                        changed = True
            for name, cfg in new.items():
                old = self.configs.get(name)
                if self._label_policy is None:
                    keep: Mapping[str, int] = cfg.labels
                else:
                    keep = old.labels if old is not None else {}
                if old is None:
                    logger.info(" (Re-)adding model: %s", name)
                with self._lock:
                    self.configs[name] = dataclasses.replace(cfg, labels=dict(keep))
                    self._states.setdefault(name, {})
                    self._wanted_labels[name] = dict(cfg.labels)
            if self._poll() or changed:
                settle_heap()
        self.check_labels()

    # -- threads -----------------------------------------------------------------------------
    def start(self, config_file: str = "", config_poll_s: float = 0.0) -> None:
        """Poll base paths every ``poll_s`` s, and ``config_file`` every ``config_poll_s`` s (0: never)."""

        def every(seconds: float, fn: Callable[[], None], what: str) -> None:
            def loop() -> None:
                while not self._stop.wait(seconds):
                    try:
                        fn()
                    except Exception:  # noqa: BLE001
                        logger.exception("%s failed", what)

            t = threading.Thread(target=loop, name=f"ys-tfserving-{what.split()[0]}", daemon=True)
            t.start()
            self._threads.append(t)

        if self._poll_s > 0:
            every(self._poll_s, self.poll_once, "polling the model base paths")
        if config_file and config_poll_s > 0:
            every(config_poll_s, lambda: self._reload_file(config_file), "config reload")

    def _reload_file(self, path: str) -> None:
        try:
            configs = parse_model_config_file(path)
        except StartupError as exc:
            logger.error("Failed to read ModelServerConfig file: %s", exc.message)
            return
        current = {n: dataclasses.replace(c, labels={}) for n, c in self.configs.items()}
        wanted = {c.name: dataclasses.replace(c, labels={}) for c in configs}
        labels = {c.name: dict(c.labels) for c in configs}
        if current == wanted and labels == self._wanted_labels:
            return
        try:
            self.reload(configs)
        except StartupError as exc:
            logger.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc.message)

    def stop(self) -> None:
        """Stop polling (and any load retry waiting)."""
        self._stop.set()

    # -- lookups -----------------------------------------------------------------------------
    def get(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        """The servable for a request; NOT_FOUND as TF Serving words it."""
        with self._lock:
            states = self._states.get(name)
            if states is None:
                what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
                raise ServingError("NOT_FOUND", f"Servable not found for request: {what}")
            if label:
                cfg = self.configs.get(name)
                if cfg is None or label not in cfg.labels:
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

    def failed(self) -> list[tuple[str, int, str]]:
        """(model, version, error) of every version whose load ended in an error."""
        with self._lock:
            return [
                (name, v, st.error)
                for name, states in self._states.items()
                for v, st in sorted(states.items())
                if st.state == "END" and st.error
            ]
