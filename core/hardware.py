"""Hardware discovery: CPU ISA features, NVIDIA GPUs, and the fingerprint that keys the cache."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
from typing import Any

# /proc/cpuinfo flag -> the name we report. Order is the order shown by `yellowstone doctor`.
ISA_FLAGS = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512vl": "avx512vl", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16", "avx_vnni": "avx_vnni", "amx_tile": "amx_tile",
    "amx_bf16": "amx_bf16", "amx_int8": "amx_int8",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gpu:
    """One accelerator as reported by its vendor's tool."""

    vendor: str
    name: str
    memory_mib: int | None = None
    compute_capability: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hardware:
    """What this process can run on."""

    arch: str
    cpu_model: str
    cores: int
    isa: tuple[str, ...]
    gpus: tuple[Gpu, ...] = ()

    @property
    def fingerprint(self) -> str:
        """A short hash of what compiled code depends on: arch, CPU model, ISA, GPU models."""
        blob = json.dumps([self.arch, self.cpu_model, sorted(self.isa),
                           sorted((g.vendor, g.name, g.compute_capability) for g in self.gpus)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def has(self, feature: str) -> bool:
        """True when the CPU reports ``feature`` (a name from ISA_FLAGS)."""
        return feature in self.isa

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        return {
            "arch": self.arch, "cpu_model": self.cpu_model, "cores": self.cores,
            "isa": {name: name in self.isa for name in ISA_FLAGS.values()},
            "gpus": [dataclasses.asdict(g) for g in self.gpus],
            "fingerprint": self.fingerprint,
        }


def affinity_cores() -> int:
    """Cores in this process's affinity mask (the machine's cores when it has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    In a Kubernetes pod (a KServe replica) the container's CPU limit is a CFS quota, not an
    affinity mask: a pod limited to 2 CPUs on a 64-core node still sees 64 cores in
    ``sched_getaffinity``. Threads are sized from the quota, rounded up.
    """
    cores = affinity_cores()
    quota = _cgroup_cpu_quota(cgroup_root)
    return max(1, min(cores, quota)) if quota else cores


def _cgroup_cpu_quota(root: str) -> int | None:
    """CPUs granted by the cgroup CPU quota (v2 ``cpu.max``, else v1 CFS files), None if unlimited."""
    try:
        with open(os.path.join(root, "cpu.max"), encoding="utf-8") as fh:
            quota, _, period = fh.read().strip().partition(" ")
        if quota != "max" and period:
            return -(-int(quota) // int(period))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="utf-8") as fh:
            quota_us = int(fh.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="utf-8") as fh:
            period_us = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return -(-quota_us // period_us) if quota_us > 0 and period_us > 0 else None


def memory_limit_bytes(cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The container's memory limit (v2 ``memory.max``, else v1 ``limit_in_bytes``), or None.

    A v1 limit of 2**60 or more is the kernel's "unlimited".
    """
    for rel in ("memory.max", os.path.join("memory", "memory.limit_in_bytes")):
        try:
            with open(os.path.join(cgroup_root, rel), encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            return None
        return value if 0 < value < 2**60 else None
    return None


def _read_cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def _nvidia_gpus() -> tuple[Gpu, ...]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            mem = int(parts[1]) if parts[1].isdigit() else None
            gpus.append(Gpu(vendor="nvidia", name=parts[0], memory_mib=mem,
                            compute_capability=parts[2]))
    return tuple(gpus)


@functools.cache
def detect() -> Hardware:
    """Probe the hardware once per process."""
    model, flags = _read_cpuinfo()
    isa = tuple(name for flag, name in ISA_FLAGS.items() if flag in flags)
    return Hardware(arch=platform.machine(), cpu_model=model, cores=available_cores(),
                    isa=isa, gpus=_nvidia_gpus())
