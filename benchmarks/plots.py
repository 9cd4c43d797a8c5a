"""Plots and tables shared by the request breakdown benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def stacked_bars(path: Path, rows: Mapping[str, Mapping[str, float]], labels: Mapping[str, str],
                 stages: Sequence[str], title: str) -> bool:
    """One stacked bar per key of ``labels`` (its stages' ms, bottom to top) into ``path``.

    Returns False, saying so, where matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    keys = list(labels)
    bottom = [0.0] * len(keys)
    for stage in stages:
        vals = [rows[k][stage] for k in keys]
        ax.bar(range(len(keys)), vals, 0.6, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(keys)), [labels[k] for k in keys])
    ax.set_ylabel("ms per request (median)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def stage_table(rows: Mapping[str, Mapping[str, float]], labels: Mapping[str, str],
                stages: Sequence[str], first: str) -> list[str]:
    """Markdown lines: one row per key of ``labels``, its stages' ms and its total."""
    lines = [f"| {first} | " + " | ".join(stages) + " | total |",
             "|---|" + "---|" * (len(stages) + 1)]
    for key, label in labels.items():
        r = rows[key]
        lines.append(f"| {label} | " + " | ".join(f"{r[s]:.2f}" for s in stages)
                     + f" | {r['total']:.2f} |")
    return lines
