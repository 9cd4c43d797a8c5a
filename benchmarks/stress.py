"""Stress harness: hostile load, injected faults, kill -9 and cache tampering against the 3 servers.

    .venv/bin/python benchmarks/stress.py [--servers torchserve,kserve,tfserving] [--seconds 45]
        [--clients 8] [--bad-fraction 0.2] [--phases baseline,raise,hang,kill,tamper] [--quick]

Each server (``stress_faults/servers.py``) runs on 127.0.0.1 with its own cache directory. In
every phase N client threads send requests for T seconds: good ones (checked against the
framework's own output for the same fixed inputs) and, with probability ``--bad-fraction``,
hostile ones of every kind the protocol can carry (``stress_faults/hostile.py``), over REST and,
for KServe and TF Serving, gRPC. Phases, each with load running:

- ``baseline``  no fault
- ``raise``     every compiled call raises (``stress_faults/site/sitecustomize.py``, switched on
                and off through a trigger file, nothing in core/ or plugins/ edited)
- ``hang``      every compiled call hangs (``--hang-s``, ended early when the phase ends)
- ``kill``      kill -9 of a TorchServe worker; KServe and TF Serving are single processes, so
                there it is kill -9 of the server and a restart on the same ports
- ``tamper``    each cache tampering kind (``stress_faults/tamper.py``): stop, tamper, restart,
                load; the server must rebuild and answer correctly

The servers get ``YELLOWSTONE_CALL_TIMEOUT_S`` and ``YELLOWSTONE_BREAKER_BACKOFF_S`` (the
per-call deadline and the circuit breaker's back-off). A good request counts as lost unless it
is answered 2xx (gRPC OK) with the right values; a bad one passes when it gets a 4xx (gRPC: a
code that maps to 4xx, see :data:`CLIENT_GRPC_CODES`). Writes ``benchmarks/results/stress.json``
and ``stress.md`` (one table; ``--update-readme`` puts it between ``<!-- stress:begin -->`` and
``<!-- stress:end -->`` in README.md). The load stops by itself: T seconds per phase, at most
``--max-requests`` per client, every request under ``--request-timeout``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress_faults import hostile, tamper  # noqa: E402
from benchmarks.stress_faults.hostile import Reply, Request  # noqa: E402
from benchmarks.stress_faults.report import clip, machine, render_markdown, update_readme  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FRAMEWORK_SERVES = ("native", "tensorflow")  # what Server.backend() says when nothing compiled does
PHASES = ("baseline", "raise", "hang", "kill", "tamper")
# gRPC codes that are the client's fault: those the gRPC-HTTP mapping sends to a 4xx.
CLIENT_GRPC_CODES = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE",
                               "NOT_FOUND", "ALREADY_EXISTS", "ABORTED", "PERMISSION_DENIED",
                               "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"})


# -- classifying answers ---------------------------------------------------------------------
def status_class(status: int | str | None) -> str:
    """``2xx``, ``4xx``, ``5xx`` (any other answer) or ``none`` (no answer)."""
    if status is None:
        return "none"
    if isinstance(status, str):
        return "2xx" if status == "OK" else "4xx" if status in CLIENT_GRPC_CODES else "5xx"
    return "2xx" if 200 <= status < 300 else "4xx" if 400 <= status < 500 else "5xx"


def classify(req: Request, reply: Reply, output_name: str = "") -> str:
    """The outcome of one request.

    Good: ``ok`` (2xx with the framework's values), else lost as ``wrong``, ``4xx``, ``5xx`` or
    ``no_answer``. Hostile: ``4xx`` (what it must get), ``accepted`` (2xx), ``5xx`` or
    ``no_answer``.
    """
    cls = status_class(reply.status)
    if req.good:
        if cls == "2xx":
            return "ok" if hostile.answer_matches(req, reply, output_name) else "wrong"
        return {"4xx": "4xx", "5xx": "5xx", "none": "no_answer"}[cls]
    return {"2xx": "accepted", "4xx": "4xx", "5xx": "5xx", "none": "no_answer"}[cls]


@dataclasses.dataclass(frozen=True)
class Record:
    """One request sent: when, what, and how it ended."""

    start: float
    end: float
    protocol: str
    kind: str
    outcome: str
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.kind == hostile.GOOD


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1e3, 2) if len(values) else None


def longest_outage(records: Iterable[Record], t0: float, t1: float) -> float:
    """The longest stretch of [t0, t1] in which no good request completed correctly."""
    ends = sorted(r.end for r in records if r.good and r.outcome == "ok" and t0 <= r.end <= t1)
    edges = [t0, *ends, t1]
    return round(max(b - a for a, b in zip(edges, edges[1:])), 2)


def summarize(records: Sequence[Record], t0: float | None = None,
              t1: float | None = None) -> dict[str, Any]:
    """Counts, good-request latency and the longest outage of one phase's records."""
    good = [r for r in records if r.good]
    bad = [r for r in records if not r.good]
    ok = sum(r.outcome == "ok" for r in good)
    bad_by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for r in bad:
        bad_by_kind[f"{r.protocol}:{r.kind}"][r.outcome] += 1
    lats = [r.end - r.start for r in good]
    if t0 is None:
        t0 = min((r.start for r in records), default=0.0)
    if t1 is None:
        t1 = max((r.end for r in records), default=t0)
    errors = Counter(r.detail for r in records if r.detail)
    return {
        "sent": len(records), "good": len(good), "good_ok": ok,
        "bad": len(bad), "bad_4xx": sum(r.outcome == "4xx" for r in bad),
        "lost": len(good) - ok,
        "lost_by": dict(Counter(r.outcome for r in good if r.outcome != "ok")),
        "bad_not_4xx": {k: dict(v) for k, v in sorted(bad_by_kind.items())
                        if set(v) - {"4xx"}},
        "p50_ms": _pct(lats, 50), "p99_ms": _pct(lats, 99), "max_ms": _pct(lats, 100),
        "seconds": round(t1 - t0, 2),
        "outage_s": longest_outage(records, t0, t1) if records else None,
        "errors": dict(errors.most_common(5)),
    }


# -- metrics ---------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
FALLBACK_NAMES = ("yellowstone_fallbacks_total", "YellowstoneFallbacks")
IN_USE_NAMES = ("yellowstone_backend_in_use", "YellowstoneBackendInUse")
DISCARD_NAMES = ("yellowstone_cache_discards_total", "YellowstoneCacheDiscards")


def metric_samples(text: str | None, names: Iterable[str]) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of the named series in Prometheus text."""
    wanted, out = set(names), []
    for line in (text or "").splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or m["name"] not in wanted:
            continue
        try:
            value = float(m["value"])
        except ValueError:
            continue
        out.append(({k.lower(): v for k, v in _LABEL.findall(m["labels"] or "")}, value))
    return out


def by_label(text: str | None, names: Iterable[str], label: str) -> dict[str, float]:
    """Sum of the named series per value of ``label`` (lower-cased label names)."""
    totals: dict[str, float] = defaultdict(float)
    for labels, value in metric_samples(text, names):
        totals[labels.get(label, "")] += value
    return dict(totals)


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each counter gained (a counter that went down was reset: all of ``after``)."""
    out = {}
    for k, v in after.items():
        d = v - before.get(k, 0.0)
        d = v if d < 0 else d
        if d:
            out[k] = d
    return out


# -- the load --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadOptions:
    seconds: float
    clients: int
    bad_fraction: float
    timeout: float
    max_requests: int
    seed: int


def run_load(server: Any, protocols: Sequence[hostile.Protocol], opts: LoadOptions, *,
             action: Callable[[], dict] | None = None, action_at: float = 0.0,
             after_action_s: float = 0.0) -> tuple[list[Record], dict, float, float]:
    """Load ``server`` for ``opts.seconds`` (and ``after_action_s`` past ``action``'s end).

    ``action`` runs in its own thread ``action_at`` seconds in; returns (records, what
    action returned, start, end).
    """
    t0 = time.monotonic()
    stop_at = [t0 + opts.seconds]
    done = threading.Event()
    result: dict = {}
    records: list[Record] = []
    lock = threading.Lock()

    def act() -> None:
        time.sleep(action_at)
        try:
            result.update(action())
        except Exception as exc:  # noqa: BLE001 - reported, the load goes on
            result["error"] = f"{type(exc).__name__}: {exc}"
        stop_at[0] = max(stop_at[0], time.monotonic() + after_action_s)
        done.set()

    def client(i: int) -> None:
        rng = random.Random(opts.seed * 1000 + i)
        channel, target, mine = None, "", []
        while len(mine) < opts.max_requests:
            if time.monotonic() >= stop_at[0] and (action is None or done.is_set()):
                break
            proto = rng.choice(protocols)
            req = proto.request(rng, opts.bad_fraction)
            start = time.monotonic()
            if req.transport == "rest":
                reply = hostile.send_http(server.rest, req, opts.timeout)
            else:
                if channel is None or target != server.grpc:
                    if channel is not None:
                        channel.close()
                    target = server.grpc
                    channel = hostile.grpc_channel(target)
                reply = hostile.send_grpc(channel, req, opts.timeout)
            outcome = classify(req, reply, proto.model.output_name)
            detail = reply.error or (f"{reply.status}" if outcome in ("5xx", "wrong") else "")
            mine.append(Record(start, time.monotonic(), proto.name, req.kind, outcome, detail))
            if reply.status is None or reply.status == "UNAVAILABLE":
                time.sleep(0.05)  # a server that is down: do not spin on refused connections
        if channel is not None:
            channel.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(opts.clients)]
    if action is not None:
        threads.append(threading.Thread(target=act, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records, result, t0, time.monotonic()


# -- the phases of one server ----------------------------------------------------------------
class FaultSwitch:
    """The trigger file the fault hook reads (written atomically)."""

    def __init__(self, path: Path):
        self.path = path
        self.clear()

    def set(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclasses.dataclass(kw_only=True)
class Settings:
    """Everything a run is told (recorded with the results)."""

    servers: list[str]
    phases: list[str]
    tamper_kinds: list[str]
    seconds: float
    clients: int
    bad_fraction: float
    hang_s: float
    call_timeout_s: float
    breaker_backoff_s: float
    request_timeout: float
    max_requests: int
    seed: int
    quick: bool


class ServerStress:
    """One server through every phase: start, warm up, each phase with load, stop."""

    def __init__(self, name: str, work: Path, settings: Settings):
        from benchmarks.stress_faults import servers

        self.name, self.work, self.s = name, work, settings
        self.model_dir = work / "model"
        self.cache = work / "cache"
        self.fault = FaultSwitch(work / "fault")
        env = {"YS_STRESS_FAULT_FILE": str(self.fault.path),
               "YELLOWSTONE_BREAKER_BACKOFF_S": str(settings.breaker_backoff_s)}
        if settings.call_timeout_s > 0:
            env["YELLOWSTONE_CALL_TIMEOUT_S"] = str(settings.call_timeout_s)
        self.server = servers.SERVERS[name](work / "server", self.model_dir, self.cache,
                                            servers.server_env(self.cache, env))
        self.protocols: list[hostile.Protocol] = []
        self.rows: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {"env": env}

    def load_opts(self, seconds: float | None = None) -> LoadOptions:
        s = self.s
        return LoadOptions(seconds=seconds or s.seconds, clients=s.clients,
                           bad_fraction=s.bad_fraction, timeout=s.request_timeout,
                           max_requests=s.max_requests, seed=s.seed + len(self.rows))

    # -- set-up
    def build(self) -> None:
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "benchmarks.stress_faults.servers", "build",
                        self.name, str(self.model_dir)], cwd=ROOT, check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1"),
                       capture_output=True, timeout=600)
        self.info["build_s"] = round(time.monotonic() - t0, 1)

    def start(self, attempts: int = 3) -> None:
        """Start and warm up. With fault phases to run, a compiled backend must serve: a boost
        that chose the framework (a close race on a loaded host) is redone on an empty cache,
        up to ``attempts`` times."""
        need_compiled = bool({"raise", "hang"} & set(self.s.phases))
        for attempt in range(1, attempts + 1):
            self.info["start_s"] = round(self.server.start(), 1)
            data = self.server.model_data()
            self.protocols = [hostile.PROTOCOLS[p](data) for p in self.server.protocols]
            self.info["warmup"] = self.warm_up()
            self.info["backend"] = self.server.backend()
            self.info["boost_attempts"] = attempt
            if not need_compiled or self.info["backend"] not in FRAMEWORK_SERVES:
                return
            self.server.stop()
            shutil.rmtree(self.cache, ignore_errors=True)
        print(f"  {self.name}: the framework serves after {attempts} boosts; the raise and hang "
              "phases fault nothing", file=sys.stderr, flush=True)
        self.server.start()

    def warm_up(self, limit_s: float = 120.0) -> dict[str, Any]:
        """Good requests one at a time until three in a row are right (or ``limit_s``)."""
        rng = random.Random(self.s.seed)
        streak, n, t0 = 0, 0, time.monotonic()
        last = ""
        channel = hostile.grpc_channel(self.server.grpc) if self.server.grpc else None
        while streak < 3 * len(self.protocols) and time.monotonic() - t0 < limit_s:
            proto = self.protocols[n % len(self.protocols)]
            req = proto.good(rng)
            reply = (hostile.send_http(self.server.rest, req, self.s.request_timeout)
                     if req.transport == "rest" else
                     hostile.send_grpc(channel, req, self.s.request_timeout))
            outcome = classify(req, reply, proto.model.output_name)
            n += 1
            streak = streak + 1 if outcome == "ok" else 0
            if outcome != "ok":
                last = f"{proto.name}: {outcome} {reply.status} {reply.error or reply.body[:200]!r}"
                time.sleep(0.5)
        if channel is not None:
            channel.close()
        return {"requests": n, "ok": streak >= 3 * len(self.protocols), "last_failure": last,
                "seconds": round(time.monotonic() - t0, 1)}

    # -- phases
    def scrape(self) -> dict[str, Any]:
        text = self.server.scrape()
        if text is None:
            return {"available": False}
        in_use = [labels.get("backend", "") for labels, v in
                  metric_samples(text, IN_USE_NAMES) if v == 1]
        return {"available": True, "fallbacks": by_label(text, FALLBACK_NAMES, "reason"),
                "discards": by_label(text, DISCARD_NAMES, "reason"), "in_use": sorted(in_use)}

    def phase(self, name: str, *, fault: str | None = None, action: Callable[[], dict] | None = None,
              seconds: float | None = None, note: str = "", extra: dict | None = None) -> dict:
        before = self.scrape()
        rss0 = self.server.rss_mib()
        if fault:
            self.fault.set(fault)
        try:
            records, acted, t0, t1 = run_load(
                self.server, self.protocols, self.load_opts(seconds), action=action,
                action_at=min(2.0, (seconds or self.s.seconds) / 4),
                after_action_s=min(5.0, (seconds or self.s.seconds) / 2))
        finally:
            self.fault.clear()
        after = self.scrape()
        row = {"server": self.name, "phase": name, **summarize(records, t0, t1),
               "rss_before_mib": rss0, "rss_after_mib": self.server.rss_mib(),
               "fallbacks": (counter_delta(before.get("fallbacks", {}), after["fallbacks"])
                             if after.get("available") else None),
               "cache_discards": (counter_delta(before.get("discards", {}), after["discards"])
                                  if after.get("available") else None),
               "in_use_after": after.get("in_use"), "note": note, **(extra or {})}
        if acted:
            row["action"] = acted
        self.rows.append(row)
        print(f"  {self.name} {name}: " + _short(row), file=sys.stderr, flush=True)
        return row

    def settle(self) -> None:
        """After a fault: good requests for the breaker's back-off so its trial call can close it."""
        opts = dataclasses.replace(self.load_opts(self.s.breaker_backoff_s + 1.0),
                                   bad_fraction=0.0, clients=1)
        run_load(self.server, self.protocols, opts)

    def run_kill(self) -> None:
        what = ("kill -9 of one worker (TorchServe restarts it)" if self.name == "torchserve"
                else "kill -9 of the server process, restarted on the same ports")
        row = self.phase("kill", action=self.server.kill, note=what)
        acted = row.get("action", {})
        row["note"] = (f"{acted.get('killed', what)}; back after {acted.get('back_s')} s; "
                       f"longest gap in correct answers {row['outage_s']} s")

    def run_tamper(self, kind: str) -> None:
        self.server.stop()
        try:
            what = tamper.tamper(kind, self.cache)
        except (FileNotFoundError, IndexError) as exc:
            what = f"nothing to tamper: {exc}"
        mark = self.server.log_mark()
        try:
            start_s = self.server.start()
            data = self.server.model_data()
            self.protocols = [hostile.PROTOCOLS[p](data) for p in self.server.protocols]
            log = self.server.log_since(mark)
            warned = list(dict.fromkeys(  # TorchServe drops the level: match the message
                line.strip() for line in log.splitlines()
                if re.search(r"\b(discarding|refusing)\b.*\b(cache|decision)", line)))
            # The entry is discarded while the restarted server loads, before the phase's own
            # scrapes: the count since this (fresh) process started is the one to report.
            at_start = self.scrape().get("discards") or {}
            row = self.phase(f"tamper:{kind}", seconds=self.s.seconds, extra={
                "tamper": what, "restart_s": round(start_s, 1), "warnings": warned[:5],
                "discards_at_restart": at_start, "backend_after": self.server.backend()})
            row["note"] = (f"{what}; restart {start_s:.1f} s; "
                           f"{sum(at_start.values()):g} cache discard(s) counted, "
                           f"{len(warned)} cache warning(s)"
                           + (f": {clip(warned[0])}" if warned else ""))
        finally:
            tamper.restore(kind, self.cache)

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            self.build()
            self.start()
            if not self.info["warmup"]["ok"]:
                raise RuntimeError(f"no correct answer during warm-up: {self.info['warmup']}")
            for phase in self.s.phases:
                if phase == "baseline":
                    self.phase("baseline", note=f"backend {self.info['backend']}")
                elif phase == "raise":
                    self.phase("raise", fault="raise", note="every compiled call raises")
                    self.settle()
                elif phase == "hang":
                    self.phase("hang", fault=f"hang {self.s.hang_s:g}",
                               note=f"every compiled call hangs (up to {self.s.hang_s:g} s)")
                    self.settle()
                elif phase == "kill":
                    self.run_kill()
                elif phase == "tamper":
                    for kind in self.s.tamper_kinds:
                        self.run_tamper(kind)
        except Exception as exc:  # noqa: BLE001 - one server's failure must not stop the others
            self.info["error"] = f"{type(exc).__name__}: {exc}"[:4000]
            print(f"  {self.name}: {self.info['error'][:2000]}", file=sys.stderr, flush=True)
        finally:
            self.fault.clear()
            self.server.stop()
            self.info["wall_s"] = round(time.monotonic() - t0, 1)
            self.info["backend_final"] = self.info.get("backend")


def _short(row: dict) -> str:
    return (f"sent {row['sent']}, good {row['good_ok']}/{row['good']}, bad 4xx "
            f"{row['bad_4xx']}/{row['bad']}, lost {row['lost']}, p99 {row['p99_ms']} ms")


# -- command line ----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--servers", default="torchserve,kserve,tfserving")
    p.add_argument("--seconds", type=float, default=None, help="load per phase (default 45; "
                   "--quick: 5)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--bad-fraction", type=float, default=0.2)
    p.add_argument("--phases", default=",".join(PHASES),
                   help="baseline,raise,hang,kill,tamper; tamper:KIND[+KIND] picks kinds of "
                        f"{','.join(tamper.KINDS)}")
    p.add_argument("--quick", action="store_true", help="5 s per phase")
    p.add_argument("--hang-s", type=float, default=40.0)
    p.add_argument("--call-timeout-s", type=float, default=2.0,
                   help="YELLOWSTONE_CALL_TIMEOUT_S for the servers (0: not set)")
    p.add_argument("--breaker-backoff-s", type=float, default=5.0)
    p.add_argument("--request-timeout", type=float, default=20.0)
    p.add_argument("--max-requests", type=int, default=100_000, help="per client and phase")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--workdir", type=Path, default=None, help="keep the servers' files here")
    p.add_argument("--update-readme", action="store_true")
    a = p.parse_args(argv)
    phases, kinds = [], list(tamper.KINDS)
    for item in filter(None, a.phases.split(",")):
        name, _, sub = item.partition(":")
        if name not in PHASES:
            p.error(f"unknown phase {name!r}; phases: {', '.join(PHASES)}")
        if name == "tamper" and sub:
            kinds = sub.split("+")
            unknown = set(kinds) - set(tamper.KINDS)
            if unknown:
                p.error(f"unknown tamper kind(s) {sorted(unknown)}; kinds: {', '.join(tamper.KINDS)}")
        phases.append(name)
    servers = [s for s in a.servers.split(",") if s]
    unknown = set(servers) - set(hostile.SERVER_PROTOCOLS)
    if unknown:
        p.error(f"unknown server(s) {sorted(unknown)}")
    seconds = a.seconds if a.seconds is not None else (5.0 if a.quick else 45.0)
    return Settings(servers=servers, phases=phases, tamper_kinds=kinds, seconds=seconds,
                    clients=a.clients, bad_fraction=a.bad_fraction, hang_s=a.hang_s,
                    call_timeout_s=a.call_timeout_s, breaker_backoff_s=a.breaker_backoff_s,
                    request_timeout=a.request_timeout, max_requests=a.max_requests, seed=a.seed,
                    quick=a.quick), a


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ys-stress-"))
    data: dict[str, Any] = {"machine": machine(), "settings": dataclasses.asdict(settings),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": [],
                            "servers": {}}
    t0 = time.monotonic()
    try:
        for name in settings.servers:
            print(f"{name}:", file=sys.stderr, flush=True)
            run = ServerStress(name, work / name, settings)
            run.run()
            data["rows"] += run.rows
            data["servers"][name] = run.info
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    data["wall_s"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stress.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    md = render_markdown(data)
    (args.out / "stress.md").write_text(md)
    print(md)
    if args.update_readme:
        update_readme(md)
    return 1 if any(i.get("error") for i in data["servers"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
