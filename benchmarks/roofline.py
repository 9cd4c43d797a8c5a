"""The machine's compute roof per precision: theoretical (cores x clock x FLOP/cycle) beside measured.

    .venv/bin/python benchmarks/roofline.py [--quick] [--out benchmarks/results/roofline.json]

The theoretical roof of one precision is ``physical cores x sustained clock x FLOP per cycle per
core``, where FLOP per cycle follows from the microarchitecture (AMD: /proc/cpuinfo family and
model, the ranges of Linux's ``arch/x86/kernel/cpu/amd.c``; Intel: ISA flags, refined by model)
and the ISA the CPU reports (``MICROARCHS`` below, with its sources). The clock is measured, not
read from "cpu MHz" (a hypervisor reports the host's nominal clock there): a chain of dependent
integer adds (one cycle each) in a small C function, compiled with gcc at run time and called
through ctypes, one copy per logical CPU at once, so every core is busy. The measured roof is one
large MatMul in OpenVINO per precision on all cores (fp32: INFERENCE_PRECISION_HINT f32; bf16:
hint bf16; int8: FakeQuantize on both inputs, which OpenVINO's low-precision transformations run
as a u8 x i8 MatMul); the precision each ran at is read back from OpenVINO's runtime model.

A measured rate above the theoretical roof means the derivation is wrong (a FLOP/cycle entry, the
clock, or the core count, e.g. SMT siblings shown to the guest as cores): this is printed loudly
and recorded under ``violations``, never clamped. See ``benchmarks/ROOFLINE.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16", "int8")

# ---------------------------------------------------------------------------------------------
# FLOP per cycle per core. One FMA is 2 FLOP per fp32 lane. The dot-product instructions
# accumulate into fp32/int32 lanes: VDPBF16PS does 2 bf16 multiply-adds per 32-bit lane (4 FLOP,
# 2x an FMA), VPDPBUSD 4 u8 x s8 multiply-adds per lane (8 OP, 4x an FMA). On every core below
# they issue on the FMA/multiply pipes at the FMA's throughput (uops.info: e.g. Zen 4 VFMADD231PS,
# VDPBF16PS and VPDPBUSD zmm each at one per cycle, ymm at two; Cascade Lake zmm at two per cycle
# on p0+p5), so bf16 = 2 x fp32 and int8 = 4 x fp32 where the CPU has the instruction.
# Without VNNI, int8 needs VPMADDUBSW + VPMADDWD (both on the multiply pipes) per 4 products per
# lane: 2 x fp32. Without AVX512_BF16 or AMX there is no bf16 arithmetic: it runs in fp32.
# Intel AMX (Sapphire Rapids and later): 1024 bf16 FLOP and 2048 int8 OP per cycle per core
# (Intel 64 and IA-32 Architectures Optimization Reference Manual, chapter "Intel AMX"; Intel
# Architecture Day 2021). Sources for pipes and widths:
#   AMD Software Optimization Guides: family 17h (pub. 55723, Zen/Zen+: 2 FMA pipes x 128 bit;
#   pub. 56305, Zen 2: 2 x 256), family 19h (pub. 56665, Zen 3: 2 x 256; pub. 57647, Zen 4:
#   2 x 256, AVX-512 executed on the 256-bit datapaths, a zmm op using both halves), family 1Ah
#   (pub. 58455, Zen 5: 2 FMA pipes x 512 bit). Zen 5 mobile (Strix Point, family 1Ah models
#   20h-2Fh; Krackan Point, 60h-6Fh) keeps 256-bit datapaths (A. Yee, "Zen5's AVX512 Teardown",
#   numberworld.org, 2024; Chips and Cheese, "AMD's Strix Point: Zen 5 Hits Mobile", 2024).
#   Intel: Optimization Reference Manual and uops.info (Haswell..Raptor Lake P-core: FMA on p0
#   and p1, 2 x 256; Skylake-SP..Granite Rapids Xeon: 2 x 512 with the second FMA unit on p5,
#   which Xeon Bronze/Silver and some Gold 5xxx lack; Ice Lake/Tiger Lake/Rocket Lake client:
#   one 512-bit FMA (p0+p1 fused), so 32 fp32 FLOP/cycle at zmm as at ymm).
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Microarch:
    """A core design: FMA pipes and their datapath width, where it is told apart, and the source."""

    name: str
    vendor: str  # "AuthenticAMD" / "GenuineIntel"
    fma_pipes: int
    datapath_bits: int  # width of one FMA pipe
    family: int | None = None  # AMD: the cpuinfo "cpu family"
    models: tuple[tuple[int, int], ...] = ()  # AMD: inclusive cpuinfo "model" ranges
    amx: bool = False
    note: str = ""


MICROARCHS: tuple[Microarch, ...] = (
    # AMD, from family/model (Linux arch/x86/kernel/cpu/amd.c, bsp_init_amd: the Zen ranges).
    Microarch(name="Zen/Zen+", vendor="AuthenticAMD", family=0x17, fma_pipes=2, datapath_bits=128,
              models=((0x00, 0x2F), (0x50, 0x5F)), note="AMD SOG 17h (55723)"),
    Microarch(name="Zen 2", vendor="AuthenticAMD", family=0x17, fma_pipes=2, datapath_bits=256,
              models=((0x30, 0x4F), (0x60, 0x7F), (0x90, 0x91), (0xA0, 0xAF)),
              note="AMD SOG 17h models 30h+ (56305)"),
    Microarch(name="Zen 3", vendor="AuthenticAMD", family=0x19, fma_pipes=2, datapath_bits=256,
              models=((0x00, 0x0F), (0x20, 0x5F)), note="AMD SOG 19h (56665)"),
    Microarch(name="Zen 4", vendor="AuthenticAMD", family=0x19, fma_pipes=2, datapath_bits=256,
              models=((0x10, 0x1F), (0x60, 0xAF)),
              note="AMD SOG 19h models 10h+ (57647); AVX-512 on 256-bit datapaths; uops.info"),
    Microarch(name="Zen 5 (mobile, 256-bit)", vendor="AuthenticAMD", family=0x1A, fma_pipes=2,
              datapath_bits=256, models=((0x20, 0x2F), (0x60, 0x6F)),
              note="Strix Point / Krackan: 256-bit datapaths (numberworld.org Zen 5 teardown)"),
    Microarch(name="Zen 5", vendor="AuthenticAMD", family=0x1A, fma_pipes=2, datapath_bits=512,
              models=((0x00, 0x1F), (0x40, 0x4F), (0x70, 0x7F)),
              note="AMD SOG 1Ah (58455): full 512-bit datapaths (Turin, Granite Ridge, Strix Halo)"),
    # Intel, told apart by flags first (see identify()).
    Microarch(name="Intel AMX (Sapphire Rapids+)", vendor="GenuineIntel", fma_pipes=2,
              datapath_bits=512, amx=True, note="Intel Opt. Manual, AMX chapter: 1024 bf16 / "
              "2048 int8 per cycle; Xeon: 2 FMA units"),
    Microarch(name="Intel AVX-512 client", vendor="GenuineIntel", fma_pipes=1, datapath_bits=512,
              note="Ice/Tiger/Rocket Lake: one 512-bit FMA (p0+p1 fused)"),
    Microarch(name="Intel AVX-512 Xeon", vendor="GenuineIntel", fma_pipes=2, datapath_bits=512,
              note="Skylake-SP..Emerald Rapids without AMX; assumes the second FMA unit (p5)"),
    Microarch(name="Intel AVX2", vendor="GenuineIntel", fma_pipes=2, datapath_bits=256,
              note="Haswell..Raptor Lake P-cores: FMA on p0, p1"),
)
# Intel client cores with AVX-512 and one FMA unit (cpuinfo "model", family 6).
_INTEL_AVX512_CLIENT_MODELS = frozenset({0x7D, 0x7E, 0x8C, 0x8D, 0xA7})


@dataclasses.dataclass(frozen=True, kw_only=True)
class CpuInfo:
    """What /proc/cpuinfo says about the first CPU."""

    vendor: str = "unknown"
    model_name: str = "unknown"
    family: int | None = None
    model: int | None = None
    mhz: float | None = None
    flags: frozenset[str] = frozenset()


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the first processor block of /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())

    def num(key: str, cast: type) -> Any:
        try:
            return cast(fields[key])
        except (KeyError, ValueError):
            return None

    return CpuInfo(vendor=fields.get("vendor_id", "unknown"),
                   model_name=fields.get("model name", platform.processor() or "unknown"),
                   family=num("cpu family", int), model=num("model", int), mhz=num("cpu MHz", float),
                   flags=frozenset(fields.get("flags", "").split()))


def read_cpuinfo(path: str = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CpuInfo (empty fields where there is no /proc/cpuinfo)."""
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8"))
    except OSError:
        return CpuInfo()


def identify(cpu: CpuInfo) -> Microarch | None:
    """The microarchitecture of ``cpu`` from MICROARCHS, or None when it is not in the table."""
    if cpu.vendor in ("AuthenticAMD", "HygonGenuine"):
        for arch in MICROARCHS:
            if arch.family == cpu.family and cpu.model is not None and any(
                    lo <= cpu.model <= hi for lo, hi in arch.models):
                return arch
        return None
    if cpu.vendor == "GenuineIntel":
        by_name = {a.name: a for a in MICROARCHS}
        if {"amx_bf16", "amx_int8"} & cpu.flags:
            return by_name["Intel AMX (Sapphire Rapids+)"]
        if "avx512f" in cpu.flags:
            client = cpu.family == 6 and cpu.model in _INTEL_AVX512_CLIENT_MODELS
            return by_name["Intel AVX-512 client" if client else "Intel AVX-512 Xeon"]
        if {"avx2", "fma"} <= cpu.flags:
            return by_name["Intel AVX2"]
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PerCycle:
    """FLOP (int8: OP) per cycle per core of one precision, and the instruction that sets it."""

    precision: str
    flop_per_cycle: int
    isa: str


def flop_per_cycle(arch: Microarch, flags: frozenset[str]) -> dict[str, PerCycle]:
    """FLOP per cycle per core for each precision, on ``arch`` with the ISA in ``flags``."""
    if "avx512f" in flags:
        width, vec = 512, "zmm"
    elif {"avx2", "fma"} <= flags:
        width, vec = 256, "ymm"
    elif "avx" in flags:  # AVX without FMA: a multiply and an add pipe
        width, vec = 256, "ymm (no FMA)"
    else:
        width, vec = 128, "xmm"
    lanes = min(width, arch.datapath_bits) * arch.fma_pipes // 32  # fp32 lanes per cycle
    fp32 = lanes * 2
    out = {"fp32": PerCycle(precision="fp32", flop_per_cycle=fp32,
                            isa=f"FMA {vec}: {arch.fma_pipes} pipes x {arch.datapath_bits} bit")}
    if arch.amx and "amx_bf16" in flags:
        out["bf16"] = PerCycle(precision="bf16", flop_per_cycle=1024, isa="AMX-BF16 TDPBF16PS")
    elif "avx512_bf16" in flags:
        out["bf16"] = PerCycle(precision="bf16", flop_per_cycle=2 * fp32, isa=f"VDPBF16PS {vec}")
    else:
        out["bf16"] = PerCycle(precision="bf16", flop_per_cycle=fp32, isa="none: runs in fp32")
    if arch.amx and "amx_int8" in flags:
        out["int8"] = PerCycle(precision="int8", flop_per_cycle=2048, isa="AMX-INT8 TDPBUSD")
    elif "avx512_vnni" in flags and "avx512f" in flags:
        out["int8"] = PerCycle(precision="int8", flop_per_cycle=4 * fp32, isa=f"VPDPBUSD {vec}")
    elif "avx_vnni" in flags:
        ymm = min(256, arch.datapath_bits) * arch.fma_pipes // 32 * 2
        out["int8"] = PerCycle(precision="int8", flop_per_cycle=4 * ymm, isa="VPDPBUSD ymm (AVX-VNNI)")
    else:
        out["int8"] = PerCycle(precision="int8", flop_per_cycle=2 * fp32,
                               isa=f"VPMADDUBSW+VPMADDWD {vec}")
    return out


# ---------------------------------------------------------------------------------------------
# Arithmetic of the roof, shared with core_bench.
# ---------------------------------------------------------------------------------------------


def theoretical_gflops(cores: int, clock_ghz: float, per_cycle: int) -> float:
    """Theoretical roof in GFLOP/s (int8: GOP/s): cores x GHz x FLOP per cycle per core."""
    return cores * clock_ghz * per_cycle


def share_of_roof(gflops: float | None, roof_gflops: float | None) -> float | None:
    """``gflops`` as a fraction of ``roof_gflops`` (None when either is unknown); never clamped."""
    if gflops is None or not roof_gflops:
        return None
    return gflops / roof_gflops


def roof_violation(share: float | None, label: str) -> str | None:
    """A loud message when ``share`` exceeds the roof (the derivation is then wrong), else None."""
    if share is None or share <= 1.0:
        return None
    return (f"ROOFLINE VIOLATION: {label} reaches {100 * share:.0f}% of its theoretical roof; "
            "a rate above the roof is impossible, so the derivation (FLOP/cycle entry, measured "
            "clock or core count) or the FLOP count is wrong")


def roof_cell(share: float | None) -> str:
    """Markdown cell for a share of the roof; above 100% it is marked, not clamped."""
    if share is None:
        return "-"
    pct = f"{100 * share:.0f}%"
    return f"**{pct} > roof (derivation wrong)**" if share > 1.0 else pct


# ---------------------------------------------------------------------------------------------
# Cores and clock.
# ---------------------------------------------------------------------------------------------


def topology() -> dict[str, int]:
    """Logical CPUs in this process's affinity mask, the physical cores they sit on, the cores used.

    ``cores`` is the physical cores, capped by a cgroup CPU quota: SMT siblings share one core's
    FMA pipes, so they count once.
    """
    sys.path.insert(0, str(ROOT))
    from yellowstone.hardware import available_cores

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    phys = set()
    for cpu in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            phys.add((base.joinpath("physical_package_id").read_text().strip(),
                      base.joinpath("core_id").read_text().strip()))
        except OSError:
            phys.add(("?", str(cpu)))
    physical = len(phys)
    return {"logical_cpus": len(cpus), "physical_cores": physical,
            "threads_per_core": max(1, len(cpus) // max(1, physical)),
            "cores": max(1, min(physical, available_cores()))}


_CLOCK_C = r"""
#include <stdint.h>
/* 256 dependent register adds per block: each waits for the one before, so one block takes 256
   cycles (integer add latency is 1 cycle); the loop counter runs on another ALU in parallel.
   The addend is a register, not an immediate: some cores (Intel Golden Cove) fold chains of
   small-immediate adds at rename and would run them faster than one per cycle. */
uint64_t ys_add_chain(uint64_t blocks, uint64_t one) {
    uint64_t x = 0;
    for (uint64_t i = 0; i < blocks; ++i) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ volatile(".rept 256\n\tadd %1, %0\n\t.endr" : "+r"(x) : "r"(one));
#elif defined(__aarch64__)
        __asm__ volatile(".rept 256\n\tadd %0, %0, %1\n\t.endr" : "+r"(x) : "r"(one));
#else
#error "no add chain for this architecture"
#endif
    }
    return x;
}
"""


def _build_clock_lib(tmp: Path) -> ctypes.CDLL:
    src, lib = tmp / "ys_clock.c", tmp / "ys_clock.so"
    src.write_text(_CLOCK_C)
    cc = os.environ.get("CC", "gcc")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   capture_output=True, text=True)
    dll = ctypes.CDLL(str(lib))
    dll.ys_add_chain.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
    dll.ys_add_chain.restype = ctypes.c_uint64
    return dll


def _clock_round(dll: ctypes.CDLL, cpus: list[int | None], blocks: int) -> list[float]:
    """One round: a thread per CPU, started together; each one's GHz by its own CPU time."""
    barrier = threading.Barrier(len(cpus))
    ghz: list[float] = [0.0] * len(cpus)

    def run(i: int, cpu: int | None) -> None:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})  # this thread only (Linux)
            except OSError:
                pass
        barrier.wait()
        start = time.thread_time()  # CPU time: time spent descheduled by other processes in
        done = dll.ys_add_chain(blocks, 1)  # this OS is not counted as cycles
        elapsed = time.thread_time() - start
        ghz[i] = 256 * blocks / elapsed / 1e9 if done == 256 * blocks and elapsed > 0 else 0.0

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(cpus)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not all(ghz):
        raise RuntimeError("the add chain miscounted or a thread failed")
    return ghz


def measure_clock(seconds: float = 0.2, repeats: int = 3) -> dict[str, Any]:
    """Sustained core clock in GHz with every logical CPU running the add chain at once.

    Each thread pins itself to one CPU of the affinity mask and times ~``seconds`` of adds by its
    own CPU time (``time.thread_time``: preemption by other processes in this OS is not counted;
    a hypervisor's steal time can still be, and reads low, never high); ctypes releases the GIL
    during the call. Best of ``repeats`` rounds; the per-thread rates of that round are kept.
    Integer adds run at the core's full clock: under heavy AVX-512 a core may clock lower, so
    this is the upper bound the roof wants.
    """
    cpus: list[int | None] = (sorted(os.sched_getaffinity(0))
                              if hasattr(os, "sched_getaffinity") else [None])
    with tempfile.TemporaryDirectory() as tmp:
        dll = _build_clock_lib(Path(tmp))
        blocks = 20_000
        t0 = time.thread_time()
        dll.ys_add_chain(blocks, 1)  # calibrate on one thread
        rate = blocks / max(time.thread_time() - t0, 1e-6)
        blocks = max(1000, int(rate * seconds))
        rounds = [_clock_round(dll, cpus, blocks) for _ in range(repeats)]
    best = max(rounds, key=statistics.median)
    return {"ghz": round(statistics.median(best), 3), "per_cpu_ghz": [round(g, 3) for g in best],
            "method": f"dependent integer add chain, {len(cpus)} threads at once, ~{seconds} s "
                      f"CPU time each, best of {repeats}"}


# ---------------------------------------------------------------------------------------------
# Measured roof: one large MatMul in OpenVINO per precision.
# ---------------------------------------------------------------------------------------------

_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def _matmul_model(precision: str, n: int):
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    w = rng.standard_normal((n, n)).astype(np.float32)  # [N, K]: the FullyConnected layout
    x, wc = a, ops.constant(w)
    if precision == "int8":  # the pattern NNCF writes: FakeQuantize on activations and weights

        def c(v: float):
            return ops.constant(np.array(v, dtype=np.float32))

        x = ops.fake_quantize(a, c(0.0), c(1.0), c(0.0), c(1.0), 256)  # inputs in [0, 1): u8
        m = float(np.abs(w).max())
        wc = ops.fake_quantize(wc, c(-m), c(m), c(-m), c(m), 255)  # symmetric i8
    return ov.Model([ops.matmul(x, wc, False, True)], [a], f"matmul_{precision}")


def _executed_precision(compiled) -> str:
    """The runtime precision OpenVINO chose for the MatMul (FullyConnected/MatMul node)."""
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("FullyConnected", "MatMul"):
            return info["runtimePrecision"].astype(str)
    return "?"


def measure_matmul(precision: str, *, n: int, threads: int, budget_s: float) -> dict[str, Any]:
    """Best GFLOP/s (int8: GOP/s) of an n x n x n MatMul in OpenVINO on ``threads`` threads."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(_matmul_model(precision, n), "CPU", {
        "INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).random((n, n), dtype=np.float32)
    for _ in range(3):
        request.infer({0: x})
    best, runs, deadline = float("inf"), 0, time.perf_counter() + budget_s
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return {"n": n, "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "executed": _executed_precision(compiled), "runs": runs,
            "best_ms": round(best * 1e3, 3), "gflops": round(2 * n**3 / best / 1e9, 1)}


# ---------------------------------------------------------------------------------------------
# The whole roofline.
# ---------------------------------------------------------------------------------------------


def roofline(*, quick: bool = False, measure: bool = True) -> dict[str, Any]:
    """Measure and derive everything ``roofline.json`` holds."""
    cpu = read_cpuinfo()
    arch = identify(cpu)
    topo = topology()
    clock_error = None
    try:
        clock = measure_clock(seconds=0.05 if quick else 0.2, repeats=2 if quick else 3)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        clock_error = f"clock not measured ({type(exc).__name__}: {exc}); using cpuinfo MHz"
        clock = {"ghz": (cpu.mhz or 0) / 1e3 or None, "per_cpu_ghz": [], "method": clock_error}
    result: dict[str, Any] = {
        "cpu_model": cpu.model_name, "vendor": cpu.vendor, "family": cpu.family,
        "model": cpu.model, "family_hex": None if cpu.family is None else hex(cpu.family),
        "model_hex": None if cpu.model is None else hex(cpu.model),
        "microarchitecture": arch.name if arch else None,
        "microarchitecture_source": arch.note if arch else "not in MICROARCHS: no theoretical roof",
        "isa": sorted(f for f in cpu.flags if f.startswith(("avx", "fma", "amx"))),
        **topo, "cpuinfo_mhz": cpu.mhz, "clock_ghz": clock["ghz"], "clock": clock,
        "precisions": {}, "violations": [], "quick": quick,
    }
    per = flop_per_cycle(arch, cpu.flags) if arch else {}
    n, budget = (512, 0.2) if quick else (2048, 2.0)
    for prec in PRECISIONS:
        row: dict[str, Any] = {"flop_per_cycle": None, "isa": None, "theoretical_gflops": None,
                               "measured_gflops": None, "measured_share": None}
        if prec in per:
            row["flop_per_cycle"], row["isa"] = per[prec].flop_per_cycle, per[prec].isa
            if clock["ghz"]:
                row["theoretical_gflops"] = round(theoretical_gflops(
                    topo["cores"], clock["ghz"], per[prec].flop_per_cycle), 1)
        if measure:
            try:
                mm = measure_matmul(prec, n=n, threads=topo["cores"], budget_s=budget)
            except Exception as exc:  # noqa: BLE001 - recorded in the row, the rest goes on
                mm = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            row["matmul"] = mm
            row["measured_gflops"] = mm.get("gflops")
            share = share_of_roof(row["measured_gflops"], row["theoretical_gflops"])
            row["measured_share"] = None if share is None else round(share, 3)
            msg = roof_violation(share, f"the OpenVINO {prec} MatMul")
            if msg:
                result["violations"].append(msg)
        result["precisions"][prec] = row
    return result


def host_info() -> dict[str, Any]:
    """This host for a results file: CPU model, vendor family/model, microarchitecture, ISA, CPU
    count, platform, Python and the load at the time; ``line`` says it in one sentence."""
    cpu = read_cpuinfo()
    arch = identify(cpu)
    info: dict[str, Any] = {
        "cpu_model": cpu.model_name, "vendor": cpu.vendor, "family": cpu.family, "model": cpu.model,
        "microarchitecture": arch.name if arch else None,
        "isa": sorted(f for f in cpu.flags if f.startswith(("avx", "fma", "amx"))),
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}
    isa = "/".join(f for f in info["isa"] if f in (
        "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")) or "baseline"
    info["line"] = (f"{cpu.model_name} (family {cpu.family} model {cpu.model} = "
                    f"{info['microarchitecture'] or 'unknown'}), {os.cpu_count()} CPUs, ISA {isa}")
    return info


def machine_line(roof: dict[str, Any]) -> str:
    """One line naming the CPU, family/model, microarchitecture, ISA, clock and cores."""
    isa = "/".join(f for f in roof.get("isa", []) if f in (
        "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16",
        "amx_int8")) or "baseline"
    clock = roof.get("clock_ghz")
    return (f"{roof.get('cpu_model')} (family {roof.get('family')} model {roof.get('model')}"
            f" = {roof.get('microarchitecture') or 'unknown microarchitecture'}), "
            f"{roof.get('cores')} cores ({roof.get('logical_cpus')} logical CPUs), ISA {isa}, "
            f"measured clock {clock if clock is None else f'{clock:.2f}'} GHz")


def table(roof: dict[str, Any]) -> str:
    """The roofline as a markdown table."""
    lines = [f"Roofline: {machine_line(roof)}.", "",
             "| precision | instruction | FLOP/cycle/core | theoretical GFLOP/s | "
             "OpenVINO MatMul GFLOP/s | ran as | share of theoretical |",
             "|---|---|---|---|---|---|---|"]
    for prec, row in roof["precisions"].items():
        mm = row.get("matmul", {})
        lines.append(f"| {prec} | {row['isa'] or '-'} | {row['flop_per_cycle'] or '-'} | "
                     f"{row['theoretical_gflops'] or '-'} | "
                     f"{row['measured_gflops'] or mm.get('error', '-')} | "
                     f"{mm.get('executed', '-')} | {roof_cell(row['measured_share'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="seconds: short clock runs, 512^3 MatMul")
    p.add_argument("--out", default=None, help="write roofline.json here")
    args = p.parse_args()
    roof = roofline(quick=args.quick)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(roof, indent=1))
    print(table(roof))
    if roof["microarchitecture"] is None:
        print(f"WARNING: family {roof['family']} model {roof['model']} ({roof['vendor']}) is not "
              "in MICROARCHS: no theoretical roof; add it with its source", file=sys.stderr)
    for msg in roof["violations"]:
        print("!" * 80 + f"\n{msg}\n" + "!" * 80, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
