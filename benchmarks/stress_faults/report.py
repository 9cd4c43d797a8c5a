"""The stress harness's results in words: the machine line, one Markdown table, the README section."""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
README_BEGIN, README_END = "<!-- stress:begin -->", "<!-- stress:end -->"


def clip(text: str, n: int = 110) -> str:
    """``text`` cut to ``n`` characters (with an ellipsis)."""
    return text if len(text) <= n else text[: n - 3] + "..."


def machine() -> dict[str, Any]:
    """The CPU (model, family/model, microarchitecture, ISA) and the load when the run began."""
    from benchmarks.roofline import identify, read_cpuinfo

    cpu = read_cpuinfo()
    arch = identify(cpu)
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
                       "amx_bf16", "amx_int8") if f in cpu.flags]
    return {"cpu_model": cpu.model_name, "vendor": cpu.vendor, "family": cpu.family,
            "model": cpu.model, "microarchitecture": arch.name if arch else None, "isa": isa,
            "cpus": os.cpu_count(), "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version()}


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['cpu_model']} (family {m['family']} model {m['model']} = "
            f"{m['microarchitecture'] or 'unknown microarchitecture'}), {m['cpus']} CPUs, ISA "
            f"{'/'.join(m['isa']) or 'baseline'}, load average {m['loadavg_at_start'][0]} at start")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _rss(a: float | None, b: float | None) -> str:
    return f"{'-' if a is None else f'{a:.0f}'} → {'-' if b is None else f'{b:.0f}'}"


def _fallbacks(f: dict[str, float] | None) -> str:
    if f is None:
        return "n/a"
    return ", ".join(f"{k or '?'} {v:g}" for k, v in sorted(f.items())) or "0"


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as one Markdown table, a row per server and phase."""
    lines = ["| server | phase | sent | good answered correctly | bad answered 4xx | lost | "
             "p50 / p99 ms (good) | RSS MiB before → after | fallbacks | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['phase']} | {r['sent']} | {r['good_ok']}/{r['good']} | "
            f"{r['bad_4xx']}/{r['bad']} | {r['lost']} | {_ms(r['p50_ms'])} / {_ms(r['p99_ms'])} | "
            f"{_rss(r['rss_before_mib'], r['rss_after_mib'])} | {_fallbacks(r.get('fallbacks'))} "
            f"| {(r.get('note') or '').replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def bad_kinds_summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per server: the hostile kinds that did not always get a 4xx, and what they got.

    The kill phase is left out: there the server is down for a while by design.
    """
    per: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for r in rows:
        if r["phase"] == "kill":
            continue
        for kind, outcomes in r.get("bad_not_4xx", {}).items():
            per[r["server"]][kind].update(outcomes)
    lines = []
    for server, kinds in per.items():
        parts = [f"`{k}` " + ", ".join(f"{o} {n}" for o, n in sorted(c.items()))
                 for k, c in sorted(kinds.items())]
        lines.append(f"- {server}: " + "; ".join(parts))
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    head = (f"Stress run on {machine_line(data['machine'])}; {s['clients']} clients, "
            f"{s['seconds']:g} s per phase, {s['bad_fraction']:.0%} hostile requests, "
            f"call_timeout_s {s['call_timeout_s']:g}, breaker_backoff_s {s['breaker_backoff_s']:g}"
            f"{' (quick mode)' if s['quick'] else ''}. Lost = good requests not answered "
            "correctly; latency over every good request of the phase (during the fault).")
    out = [head, "", render_table(data["rows"])]
    failing = bad_kinds_summary(data["rows"])
    if failing:
        out += ["Hostile requests not answered 4xx, all phases but kill (protocol:kind outcome "
                "count; `no_answer`: the connection closed or timed out):", "", *failing, ""]
    for name, info in data["servers"].items():
        if info.get("error"):
            out.append(f"- {name} did not finish: {clip(info['error'].splitlines()[0], 300)}")
    return "\n".join(out).rstrip() + "\n"


def update_readme(md: str, readme: Path = ROOT / "README.md") -> bool:
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        print(f"README.md has no {README_BEGIN} ... {README_END} section", file=sys.stderr)
        return False
    pre, rest = text.split(README_BEGIN, 1)
    post = rest.split(README_END, 1)[1]
    readme.write_text(f"{pre}{README_BEGIN}\n{md}{README_END}{post}")
    return True
