"""The roofline's derivation: cpuinfo -> microarchitecture -> FLOP/cycle, and the % of roof arithmetic."""

from __future__ import annotations

import pytest

from benchmarks import core_bench
from benchmarks.roofline import (
    CpuInfo,
    flop_per_cycle,
    identify,
    parse_cpuinfo,
    roof_cell,
    roof_violation,
    share_of_roof,
    theoretical_gflops,
)

AVX2 = frozenset({"avx", "avx2", "fma"})
ZEN4_FLAGS = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}
SPR_FLAGS = ZEN4_FLAGS | {"amx_tile", "amx_bf16", "amx_int8"}


def amd(family: int, model: int, flags: frozenset[str] = ZEN4_FLAGS) -> CpuInfo:
    return CpuInfo(vendor="AuthenticAMD", model_name="AMD EPYC", family=family, model=model,
                   flags=flags)


def intel(model: int, flags: frozenset[str]) -> CpuInfo:
    return CpuInfo(vendor="GenuineIntel", model_name="Intel Xeon", family=6, model=model,
                   flags=flags)


def test_parse_cpuinfo_reads_the_first_processor_only() -> None:
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
            "model name\t: AMD EPYC 9R14\ncpu MHz\t\t: 2596.0\nflags\t\t: fpu avx2 fma avx512f\n\n"
            "processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n")
    cpu = parse_cpuinfo(text)
    assert (cpu.vendor, cpu.family, cpu.model, cpu.model_name) == (
        "AuthenticAMD", 25, 17, "AMD EPYC 9R14")
    assert cpu.mhz == pytest.approx(2596.0)
    assert {"avx2", "fma", "avx512f"} <= cpu.flags


@pytest.mark.parametrize(("family", "model", "name"), [
    (0x17, 0x01, "Zen/Zen+"), (0x17, 0x31, "Zen 2"), (0x17, 0x71, "Zen 2"),
    (0x19, 0x01, "Zen 3"), (0x19, 0x21, "Zen 3"), (0x19, 0x50, "Zen 3"),
    (0x19, 0x11, "Zen 4"), (0x19, 0x18, "Zen 4"), (0x19, 0x61, "Zen 4"), (0x19, 0x74, "Zen 4"),
    (0x19, 0xA0, "Zen 4"),
    (0x1A, 0x02, "Zen 5"), (0x1A, 0x11, "Zen 5"), (0x1A, 0x44, "Zen 5"), (0x1A, 0x70, "Zen 5"),
    (0x1A, 0x24, "Zen 5 (mobile, 256-bit)"), (0x1A, 0x60, "Zen 5 (mobile, 256-bit)"),
])
def test_amd_family_and_model_name_the_microarchitecture(family: int, model: int,
                                                          name: str) -> None:
    arch = identify(amd(family, model))
    assert arch is not None and arch.name == name


@pytest.mark.parametrize(("family", "model"), [(0x1A, 0x50), (0x1A, 0x90), (0x19, 0xB0), (0x15, 0x02)])
def test_an_unknown_amd_model_has_no_microarchitecture(family: int, model: int) -> None:
    assert identify(amd(family, model)) is None  # e.g. Zen 6: no guessed roof


@pytest.mark.parametrize(("cpu", "name"), [
    (intel(0x8F, SPR_FLAGS), "Intel AMX (Sapphire Rapids+)"),
    (intel(0x55, AVX2 | {"avx512f", "avx512_vnni"}), "Intel AVX-512 Xeon"),
    (intel(0x8C, AVX2 | {"avx512f", "avx512_vnni"}), "Intel AVX-512 client"),
    (intel(0x97, AVX2 | {"avx_vnni"}), "Intel AVX2"),
])
def test_intel_is_told_apart_by_flags(cpu: CpuInfo, name: str) -> None:
    arch = identify(cpu)
    assert arch is not None and arch.name == name


def per_cycle(cpu: CpuInfo) -> dict[str, int]:
    arch = identify(cpu)
    assert arch is not None
    return {p: v.flop_per_cycle for p, v in flop_per_cycle(arch, cpu.flags).items()}


@pytest.mark.parametrize(("cpu", "expected"), [
    # Zen 4: AVX-512 on 256-bit datapaths: 2 x 8 lanes x 2 = 32; VDPBF16PS 2x; VPDPBUSD 4x.
    (amd(0x19, 0x11), {"fp32": 32, "bf16": 64, "int8": 128}),
    # Zen 5 desktop/server: full 512-bit datapaths.
    (amd(0x1A, 0x02), {"fp32": 64, "bf16": 128, "int8": 256}),
    # Zen 5 mobile keeps 256-bit datapaths.
    (amd(0x1A, 0x24), {"fp32": 32, "bf16": 64, "int8": 128}),
    # Zen 5 with AVX-512 hidden by the hypervisor: ymm only, no bf16 arithmetic, no VNNI.
    (amd(0x1A, 0x02, AVX2), {"fp32": 32, "bf16": 32, "int8": 64}),
    # Zen 3 / Zen 2: AVX2, 2 FMA pipes x 256 bit; int8 by VPMADDUBSW + VPMADDWD.
    (amd(0x19, 0x01, AVX2), {"fp32": 32, "bf16": 32, "int8": 64}),
    (amd(0x17, 0x31, AVX2), {"fp32": 32, "bf16": 32, "int8": 64}),
    (amd(0x17, 0x01, AVX2), {"fp32": 16, "bf16": 16, "int8": 32}),
    # Intel AMX: 1024 bf16 FLOP and 2048 int8 OP per cycle per core.
    (intel(0x8F, SPR_FLAGS), {"fp32": 64, "bf16": 1024, "int8": 2048}),
    (intel(0x55, AVX2 | {"avx512f", "avx512_vnni"}), {"fp32": 64, "bf16": 64, "int8": 256}),
    (intel(0x8C, AVX2 | {"avx512f", "avx512_vnni"}), {"fp32": 32, "bf16": 32, "int8": 128}),
    (intel(0x97, AVX2 | {"avx_vnni"}), {"fp32": 32, "bf16": 32, "int8": 128}),
])
def test_flop_per_cycle_per_precision(cpu: CpuInfo, expected: dict[str, int]) -> None:
    assert per_cycle(cpu) == expected


def test_theoretical_roof_is_cores_times_clock_times_flop_per_cycle() -> None:
    assert theoretical_gflops(2, 3.5, 32) == pytest.approx(224.0)
    assert theoretical_gflops(2, 3.7, 64) == pytest.approx(473.6)


def test_share_of_roof_is_never_clamped_and_above_100_percent_is_flagged() -> None:
    assert share_of_roof(112.0, 224.0) == pytest.approx(0.5)
    assert share_of_roof(None, 224.0) is None and share_of_roof(100.0, None) is None
    assert roof_cell(0.5) == "50%" and roof_cell(None) == "-"
    assert roof_violation(0.99, "x") is None
    over = share_of_roof(440.0, 224.0)
    assert over == pytest.approx(440 / 224)  # not clamped to 1
    assert "derivation wrong" in roof_cell(over) and "196%" in roof_cell(over)
    msg = roof_violation(over, "resnet50 fp32 openvino")
    assert msg is not None and "VIOLATION" in msg and "resnet50 fp32 openvino" in msg


ROOF = {"cores": 2, "clock_ghz": 3.5, "precisions": {
    "fp32": {"theoretical_gflops": 224.0, "flop_per_cycle": 32, "isa": "FMA"},
    "bf16": {"theoretical_gflops": 448.0, "flop_per_cycle": 64, "isa": "VDPBF16PS"},
    "int8": {"theoretical_gflops": 896.0, "flop_per_cycle": 128, "isa": "VPDPBUSD"}}}


def report(precision: str, backend: str, p50_ms: float, gflop: float = 8.0) -> dict:
    lat = {"1": {"p50_ms": p50_ms}}
    return {"model": "m", "precision": precision, "gflop": gflop, "batch_sizes": [1],
            "run_backends": "auto", "candidates": [
                {"backend": "native", "status": "ok", "reason": "", "latency_ms": {
                    "1": {"p50_ms": 100.0}}},
                {"backend": backend, "status": "chosen", "reason": "", "latency_ms": lat}]}


def row_of(md: str, precision: str, backend: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and cells[1] == precision and cells[2] == backend:
            return cells
    raise AssertionError(f"no {precision} {backend} row in\n{md}")


def test_each_suite_row_is_measured_against_its_own_precisions_roof() -> None:
    # 8 GFLOP in 40 ms = 200 GFLOP/s: 89% of fp32's 224, 45% of bf16's 448, 22% of int8's 896.
    reps = [report("fp32", "openvino", 40.0), report("bf16", "openvino", 40.0),
            report("int8", "onnxruntime", 40.0)]
    md = core_bench.markdown(reps, "test machine", ROOF, 60.0, auto_table=False)
    assert row_of(md, "fp32", "openvino")[-1] == "89%"
    assert row_of(md, "bf16", "openvino")[-1] == "45%"
    assert row_of(md, "int8", "onnxruntime")[-1] == "22%"
    assert row_of(md, "fp32", "native")[-1] == "36%"  # 80 GFLOP/s of the fp32 roof
    assert "VIOLATION" not in md


def test_a_row_above_its_roof_is_flagged_loudly_not_clamped() -> None:
    md = core_bench.markdown([report("fp32", "openvino", 20.0)], "test machine", ROOF, 60.0,
                             auto_table=False)  # 400 GFLOP/s against a 224 roof
    assert "179% > roof" in row_of(md, "fp32", "openvino")[-1]
    assert "ROOFLINE VIOLATIONS" in md


def test_peers_and_yellowstone_vs_best_peer() -> None:
    peers = [{"model": "m", "peer": "inductor", "precision": "fp32", "setup": "s",
              "status": "ok", "reason": "", "latency_ms": {"1": {"p50_ms": 60.0}}},
             {"model": "m", "peer": "onnxruntime", "precision": "fp32", "setup": "s",
              "status": "ok", "reason": "", "latency_ms": {"1": {"p50_ms": 50.0}}}]
    md = core_bench.markdown([report("fp32", "openvino", 40.0)], "test machine", ROOF, 60.0,
                             peers=peers)
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | fp32 | openvino |")
                and "ms" in ln)
    assert "onnxruntime 50.00 ms" in line and "1.25x" in line


def test_yellowstone_vs_best_peer_uses_the_time_measured_alone() -> None:
    peers = [{"model": "m", "peer": "onnxruntime", "precision": "fp32", "setup": "s",
              "status": "ok", "reason": "", "latency_ms": {"1": {"p50_ms": 50.0}}}]
    rep = report("fp32", "openvino", 40.0)  # in the suite's shared process
    rep["isolated"] = {"latency_ms": {"1": {"p50_ms": 25.0}}}  # alone, as the peer was timed
    md = core_bench.markdown([rep], "test machine", ROOF, 60.0, peers=peers)
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | fp32 | openvino |")
                and "onnxruntime" in ln)
    assert "25.00 ms |" in line and "2.00x" in line and "ms*" not in line
    del rep["isolated"]  # the fresh-process run failed: the suite's time, marked
    md = core_bench.markdown([rep], "test machine", ROOF, 60.0, peers=peers)
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | fp32 | openvino |")
                and "onnxruntime" in ln)
    assert "40.00 ms*" in line and "1.25x" in line


def test_a_peer_that_fails_the_check_is_shown_but_is_not_the_best_peer() -> None:
    peers = [{"model": "m", "peer": "inductor", "precision": "bf16", "setup": "s",
              "status": "rejected", "top1_agreement": 0.85,
              "reason": "output: top-1 agreement 0.850 over 82 samples < 0.9",
              "latency_ms": {"1": {"p50_ms": 20.0}}},
             {"model": "m", "peer": "openvino_torch", "precision": "bf16", "setup": "s",
              "status": "ok", "reason": "", "top1_agreement": 0.95,
              "latency_ms": {"1": {"p50_ms": 50.0}}}]
    md = core_bench.markdown([report("bf16", "openvino", 40.0)], "test machine", ROOF, 60.0,
                             peers=peers)
    row = next(ln for ln in md.splitlines() if ln.startswith("| m | bf16 | inductor |"))
    assert "rejected (output: top-1 agreement 0.850" in row and "| 0.850 |" in row
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | bf16 | openvino |")
                and "openvino_torch" in ln)
    # measured against the fastest peer that passes; the faster rejected one named beside it
    assert "openvino_torch 50.00 ms (inductor 20.00 ms rejected)" in line and "1.25x" in line
    assert core_bench.best_peers(peers, "m", "bf16", 1) == ("openvino_torch", 50.0)
    peers[1]["latency_ms"]["1"]["p50_ms"] = 10.0  # the valid peer is the faster: nothing named
    assert core_bench.faster_rejected(peers, "m", "bf16", 1, ("openvino_torch", 10.0)) is None


def test_a_reduced_precision_that_fell_back_to_fp32_shows_what_serves() -> None:
    rep = report("bf16", "openvino", 40.0)
    rep["candidates"][1].update(status="rejected", reason="top-1 agreement 0.8")
    rep["candidates"][0]["status"] = "chosen"  # native, in the bf16 search
    rep["fp32_fallback"] = {"chosen": "onnxruntime", "dispatch": {"1": "onnxruntime"},
                            "candidates": [{"backend": "onnxruntime", "status": "chosen",
                                            "latency_ms": {"1": {"p50_ms": 25.0}}}]}
    peers = [{"model": "m", "peer": "inductor", "precision": "bf16", "setup": "s",
              "status": "ok", "reason": "", "latency_ms": {"1": {"p50_ms": 50.0}}}]
    md = core_bench.markdown([rep], "test machine", ROOF, 60.0, peers=peers)
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | bf16 | onnxruntime (fp32")
                and "inductor" in ln)
    assert "25.00 ms*" in line and "2.00x" in line
    auto = next(ln for ln in md.splitlines() if ln.startswith("| m | bf16 | onnxruntime"))
    assert auto.endswith("| 1.00 |")


def test_rows_behind_or_close_are_settled_head_to_head_against_their_best_peer() -> None:
    def peer(name: str, p50: float) -> dict:
        return {"model": "m", "peer": name, "precision": "fp32", "setup": "s", "status": "ok",
                "reason": "", "latency_ms": {"1": {"p50_ms": p50}}}

    close = report("fp32", "openvino", 40.0)
    close["isolated"] = {"latency_ms": {"1": {"p50_ms": 48.0}}}  # one slow draw: 0.81x
    far = report("bf16", "openvino", 20.0)
    far["isolated"] = {"latency_ms": {"1": {"p50_ms": 20.0}}}  # 2x ahead: nothing to settle
    peers = [peer("onnxruntime", 39.0), peer("inductor", 43.0),
             {**peer("inductor", 40.0), "precision": "bf16"}]
    calls = []

    def pair(rep, row):
        calls.append((rep["precision"], row["peer"]))
        return {"peer": row["peer"], "rounds": 8, "latency_ms": {"1": {"p50_ms": 38.5}},
                "peer_latency_ms": {"1": {"p50_ms": 40.1}}, "ratio": {"1": 1.04},
                "ratio_range": {"1": [0.97, 1.12]}}

    core_bench.settle([close, far], peers, pair, log=lambda m: None)
    assert calls == [("fp32", "onnxruntime")]  # only the close row, only against its best peer
    md = core_bench.markdown([close, far], "test machine", ROOF, 60.0, peers=peers)
    line = next(ln for ln in md.splitlines() if ln.startswith("| m | fp32 | openvino | in turns"))
    # the head-to-head medians and the paired ratio, not 39.00 / 48.00
    assert "| in turns x8 | 38.50 ms | onnxruntime 40.10 ms | 1.04x (0.97-1.12) |" in line
    far_line = next(ln for ln in md.splitlines() if ln.startswith("| m | bf16 | openvino | alone"))
    assert "| alone | 20.00 ms | inductor 40.00 ms | 2.00x |" in far_line


def test_a_failed_head_to_head_leaves_the_fresh_process_times() -> None:
    rep = report("fp32", "openvino", 4.0)
    rep["isolated"] = {"latency_ms": {"1": {"p50_ms": 6.2}}}  # a slow spell: 0.56x
    peers = [{"model": "m", "peer": "onnxruntime", "precision": "fp32", "setup": "s",
              "status": "ok", "reason": "", "latency_ms": {"1": {"p50_ms": 3.5}}}]
    core_bench.settle([rep], peers, lambda r, row: None, log=lambda m: None)
    assert "head_to_head" not in rep
    md = core_bench.markdown([rep], "test machine", ROOF, 60.0, peers=peers)
    assert "| m | fp32 | openvino | alone | 6.20 ms | onnxruntime 3.50 ms | 0.56x |" in md
