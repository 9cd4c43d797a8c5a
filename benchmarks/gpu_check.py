"""What yellowstone sees and does on a host with an NVIDIA GPU.

    python benchmarks/gpu_check.py [--out DIR]

Runs the hardware probe (the GPU's name, memory and compute capability, as ``nvidia-smi``
reports them, go into the cache fingerprint), every backend's availability probe (TensorRT needs
its own package besides the GPU), and one ``boost`` of a small CNN with ``auto``, printing the
report, then the same CNN on the GPU through PyTorch eager and ``torch.compile`` for the GPU
figures a user would compare with. Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``.
Needs only numpy and torch besides the repository (no virtual environment): it is meant for a
GPU machine that has PyTorch but not this project's environment.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _smi() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


def _cnn():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    return model, torch.rand(8, 3, 224, 224)


def _gpu_times(model, x) -> dict[str, Any]:
    """p50 ms of the CNN at batch 8 on the GPU: eager fp32, eager bf16 autocast, torch.compile."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}

    def p50(fn, n: int = 50) -> float:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        return round(sorted(times)[n // 2], 4)

    m, xg = model.cuda(), x.cuda()
    out: dict[str, Any] = {"cuda": True, "device": torch.cuda.get_device_name(0)}
    with torch.inference_mode():
        out["eager_fp32_ms"] = p50(lambda: m(xg))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out["eager_bf16_autocast_ms"] = p50(lambda: m(xg))
        try:
            compiled = torch.compile(m)
            t0 = time.perf_counter()
            compiled(xg)
            out["compile_s"] = round(time.perf_counter() - t0, 1)
            out["torch_compile_fp32_ms"] = p50(lambda: compiled(xg))
            diff = (compiled(xg) - m(xg)).abs().max().item()
            out["torch_compile_max_abs_err"] = diff
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            out["torch_compile_error"] = f"{type(exc).__name__}: {exc}"[:500]
    model.cpu()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite gpu_check.md from the saved gpu_check.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.render:
        md = markdown(json.loads((Path(args.out) / "gpu_check.json").read_text()))
        (Path(args.out) / "gpu_check.md").write_text(md)
        print(md)
        return 0
    import torch

    import yellowstone
    from benchmarks.roofline import host_info
    from yellowstone.backends import backend_names, get_backend
    from yellowstone.hardware import detect

    hw = detect()
    result: dict[str, Any] = {
        "nvidia_smi": _smi(), "python": platform.python_version(), "torch": torch.__version__,
        "host": host_info(), "hardware": hw.to_dict(), "fingerprint": hw.fingerprint}
    probes = {}
    for name in backend_names():
        a = get_backend(name).probe()
        probes[name] = {"available": a.available, "version": a.version, "reason": a.reason,
                        "devices": list(a.devices)}
    result["backends"] = probes
    model, x = _cnn()
    t0 = time.perf_counter()
    try:
        boosted = yellowstone.boost(model, (x[:1],), batch_sizes=(1, 8), time_budget_s=0.3,
                                    cache=False)
        result["boost"] = {"chosen": boosted.report.chosen, "table": boosted.report.table(),
                           "wall_s": round(time.perf_counter() - t0, 1)}
    except Exception as exc:  # noqa: BLE001 - recorded: this is what the check is for
        result["boost"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["gpu"] = _gpu_times(model, x)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    md = markdown(result)
    (out / "gpu_check.md").write_text(md)
    print(md)
    return 0


def markdown(r: dict[str, Any]) -> str:
    """The check as a short report."""
    hw = r["hardware"]
    isa = "/".join(k for k, v in hw["isa"].items() if v) or "baseline"
    cpu = (r["host"]["line"] if "host" in r else
           f"{hw['cpu_model']} (family/model not recorded in this run), {hw['cores']} CPUs, ISA {isa}")
    lines = [f"GPU host: `{r['nvidia_smi']}`; CPU {cpu}; Python {r['python']}, torch {r['torch']}.",
             "",
             f"Hardware probe: GPUs {json.dumps(r['hardware'].get('gpus'))}; cache fingerprint "
             f"`{r['fingerprint']}`.", "", "| backend | available | version | devices | reason |",
             "|---|---|---|---|---|"]
    for name, p in r["backends"].items():
        lines.append(f"| {name} | {p['available']} | {p['version'] or '-'} | "
                     f"{', '.join(p['devices']) or '-'} | {p['reason'] or '-'} |")
    boost = r["boost"]
    lines += ["", "`yellowstone.boost` of a small CNN (auto):", "", "```",
              boost.get("table") or boost.get("error", ""), "```", "",
              f"The same CNN on the GPU through PyTorch (batch 8): {json.dumps(r['gpu'])}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
