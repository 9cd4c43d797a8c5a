"""Kubernetes manifests for the boost predictor: ClusterServingRuntime, InferenceService, NFD rule.

:func:`build_manifests` is pure (plain dicts in, plain dicts out); :func:`manifests_main` is the
``yellowstone kserve manifests`` command that writes them as YAML. Placement works in two steps:
a Node Feature Discovery ``NodeFeatureRule`` labels each node with what yellowstone can use there
(AVX-512, BF16, AMX, the GPU vendor), and the predictor's node affinity asks for those labels,
with the device plugin's resource (``nvidia.com/gpu``, ``gpu.intel.com/i915``, ``amd.com/gpu``)
and a toleration for the GPU taint.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yellowstone import __version__

LABEL_NS = "yellowstone.feature.node.kubernetes.io"  # NFD always allows *.feature.node.kubernetes.io
GPU_VENDOR_LABEL = f"{LABEL_NS}/gpu-vendor"
DEFAULT_IMAGE = f"ghcr.io/yellowstone-ml/kserve-predictor:{__version__}"
MODEL_FORMAT = "yellowstone"
CACHE_DIR = "/var/cache/yellowstone"
HTTP_PORT, GRPC_PORT = 8080, 8081
PROBE_PERIOD_S = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class Accelerator:
    """How to place a predictor on one kind of accelerator.

    Attributes:
        name: the ``--accelerator`` value.
        resource: the device plugin's extended resource, or None for CPU.
        vendor: the value of the ``gpu-vendor`` node label the NFD rule sets.
        backends: the yellowstone backends worth trying there.
        toleration_key: the taint key GPU node pools usually carry.
    """

    name: str
    resource: str | None
    vendor: str | None
    backends: str
    toleration_key: str | None = None


ACCELERATORS: dict[str, Accelerator] = {
    "cpu": Accelerator(name="cpu", resource=None, vendor=None,
                       backends="onnxruntime,openvino,tvm"),
    "nvidia-gpu": Accelerator(name="nvidia-gpu", resource="nvidia.com/gpu", vendor="nvidia",
                              backends="tensorrt,onnxruntime,inductor",
                              toleration_key="nvidia.com/gpu"),
    "intel-gpu": Accelerator(name="intel-gpu", resource="gpu.intel.com/i915", vendor="intel",
                             backends="openvino,onnxruntime", toleration_key="gpu.intel.com/i915"),
    "amd-gpu": Accelerator(name="amd-gpu", resource="amd.com/gpu", vendor="amd",
                           backends="onnxruntime,tvm", toleration_key="amd.com/gpu"),
}

# PCI vendor ids and display/3D/processing-accelerator class codes for each GPU vendor.
_PCI = {"nvidia": ("10de", ["0300", "0302"]), "intel": ("8086", ["0300", "0380"]),
        "amd": ("1002", ["0300", "0302", "0380", "1200"])}


def runtime_name(accelerator: str) -> str:
    """The ClusterServingRuntime name for an accelerator kind."""
    return f"yellowstone-{accelerator}"


def _cpuid(*flags: str) -> dict[str, Any]:
    return {"feature": "cpu.cpuid", "matchExpressions": {f: {"op": "Exists"} for f in flags}}


def node_feature_rule(name: str = "yellowstone") -> dict[str, Any]:
    """An NFD NodeFeatureRule that labels nodes with the features yellowstone uses."""
    rules: list[dict[str, Any]] = [
        {"name": "yellowstone: AVX-512", "labels": {f"{LABEL_NS}/cpu-avx512": "true"},
         "matchFeatures": [_cpuid("AVX512F")]},
        {"name": "yellowstone: BF16 on the CPU (AVX512_BF16 or AMX-BF16)",
         "labels": {f"{LABEL_NS}/cpu-bf16": "true"},
         "matchAny": [{"matchFeatures": [_cpuid("AVX512BF16")]},
                      {"matchFeatures": [_cpuid("AMXBF16")]}]},
        {"name": "yellowstone: AMX tiles", "labels": {f"{LABEL_NS}/cpu-amx": "true"},
         "matchFeatures": [_cpuid("AMXTILE", "AMXBF16")]},
        {"name": "yellowstone: VNNI (int8)", "labels": {f"{LABEL_NS}/cpu-vnni": "true"},
         "matchAny": [{"matchFeatures": [_cpuid("AVX512VNNI")]},
                      {"matchFeatures": [_cpuid("AVXVNNI")]}]},
    ]
    for vendor, (pci_vendor, classes) in _PCI.items():
        rules.append({
            "name": f"yellowstone: {vendor} GPU", "labels": {GPU_VENDOR_LABEL: vendor},
            "matchFeatures": [{"feature": "pci.device", "matchExpressions": {
                "vendor": {"op": "In", "value": [pci_vendor]},
                "class": {"op": "In", "value": list(classes)}}}]})
    return {"apiVersion": "nfd.k8s-sigs.io/v1alpha1", "kind": "NodeFeatureRule",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "yellowstone"}},
            "spec": {"rules": rules}}


def _scheduling(acc: Accelerator, precision: str) -> dict[str, Any]:
    """nodeSelector, affinity and tolerations for a predictor pod on ``acc``."""
    out: dict[str, Any] = {"nodeSelector": {"kubernetes.io/os": "linux",
                                            "kubernetes.io/arch": "amd64"}}
    if acc.vendor:
        out["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": GPU_VENDOR_LABEL, "operator": "In", "values": [acc.vendor]}]}]}}}
        out["tolerations"] = [{"key": acc.toleration_key, "operator": "Exists",
                               "effect": "NoSchedule"}]
    else:
        bf16 = {"key": f"{LABEL_NS}/cpu-bf16", "operator": "In", "values": ["true"]}
        node_affinity: dict[str, Any] = {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": f"{LABEL_NS}/cpu-amx", "operator": "In", "values": ["true"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [bf16]}},
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": f"{LABEL_NS}/cpu-avx512", "operator": "In", "values": ["true"]}]}},
        ]}
        if precision == "bf16":  # bf16 without hardware support is slower than fp32: require it
            node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
                "nodeSelectorTerms": [{"matchExpressions": [bf16]}]}
        out["affinity"] = {"nodeAffinity": node_affinity}
    return out


def _startup_probe(compile_timeout_s: int) -> dict[str, Any]:
    """The server listens only after the model is boosted: allow the whole compile time."""
    return {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
            "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5,
            "failureThreshold": max(3, math.ceil(compile_timeout_s / PROBE_PERIOD_S))}


def cluster_serving_runtime(accelerator: str, *, image: str = DEFAULT_IMAGE,
                            backends: str | None = None, precision: str = "fp32",
                            compile_timeout_s: int = 900, grpc: bool = False) -> dict[str, Any]:
    """A ClusterServingRuntime running the boost predictor for one accelerator kind."""
    acc = ACCELERATORS[accelerator]
    port = ({"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"} if grpc
            else {"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"})
    container = {
        "name": "kserve-container", "image": image,
        "command": ["python", "-m", "yellowstone.plugins.kserve"],
        "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models",
                 f"--http_port={HTTP_PORT}", f"--grpc_port={GRPC_PORT}",
                 f"--backends={backends or acc.backends}", f"--precision={precision}"],
        "env": [{"name": "YELLOWSTONE_CACHE_DIR", "value": CACHE_DIR},
                {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "ports": [port],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                      "limits": {"cpu": "2", "memory": "4Gi"}},
        "startupProbe": _startup_probe(compile_timeout_s),
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
                          "periodSeconds": 20, "failureThreshold": 3},
        "volumeMounts": [{"name": "yellowstone-cache", "mountPath": CACHE_DIR}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    spec: dict[str, Any] = {
        "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT),
                        "prometheus.kserve.io/path": "/metrics"},
        "supportedModelFormats": [
            {"name": MODEL_FORMAT, "version": "1", "autoSelect": True, "priority": 1},
            {"name": "onnx", "version": "1", "autoSelect": False},
            {"name": "pytorch", "version": "2", "autoSelect": False},
            {"name": "tensorflow", "version": "2", "autoSelect": False},
        ],
        "protocolVersions": ["grpc-v2"] if grpc else ["v1", "v2"],
        "containers": [container],
        "volumes": [{"name": "yellowstone-cache", "emptyDir": {"sizeLimit": "4Gi"}}],
        **_scheduling(acc, precision),
    }
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime",
            "metadata": {"name": runtime_name(accelerator),
                         "labels": {"app.kubernetes.io/part-of": "yellowstone",
                                    "yellowstone.io/accelerator": accelerator}},
            "spec": spec}


def inference_service(model_name: str, storage_uri: str, accelerator: str, *,
                      namespace: str | None = None, gpus: int = 1, cpu: str = "2",
                      memory: str = "4Gi", precision: str | None = None,
                      min_replicas: int = 1, max_replicas: int = 4,
                      grpc: bool = False) -> dict[str, Any]:
    """An InferenceService for one model on the accelerator's runtime."""
    acc = ACCELERATORS[accelerator]
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if acc.resource:
        if gpus < 1:
            raise ValueError(f"{accelerator} needs at least one GPU, got {gpus}")
        limits[acc.resource] = str(gpus)
        requests[acc.resource] = str(gpus)
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT, "version": "1"},
        "runtime": runtime_name(accelerator), "storageUri": storage_uri,
        "protocolVersion": "grpc-v2" if grpc else "v2",
        "resources": {"requests": requests, "limits": limits},
        "readinessProbe": {"httpGet": {"path": f"/v2/models/{model_name}/ready",
                                       "port": HTTP_PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
    }
    if precision:
        model["args"] = [f"--precision={precision}"]
    metadata: dict[str, Any] = {"name": model_name,
                                "labels": {"app.kubernetes.io/part-of": "yellowstone",
                                           "yellowstone.io/accelerator": accelerator}}
    if namespace:
        metadata["namespace"] = namespace
    predictor = {"minReplicas": min_replicas, "maxReplicas": max_replicas, "model": model,
                 **_scheduling(acc, precision or "fp32")}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": metadata, "spec": {"predictor": predictor}}


def build_manifests(model_name: str, storage_uri: str, accelerator: str = "cpu", *,
                    image: str = DEFAULT_IMAGE, namespace: str | None = None,
                    backends: str | None = None, precision: str = "fp32", gpus: int = 1,
                    cpu: str = "2", memory: str = "4Gi", compile_timeout_s: int = 900,
                    grpc: bool = False, node_feature_rule_name: str | None = "yellowstone",
                    ) -> list[dict[str, Any]]:
    """Return [NodeFeatureRule?, ClusterServingRuntime, InferenceService] as plain dicts.

    Raises:
        ValueError: an unknown accelerator, or a bad name, precision or size.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; choose one of "
                         f"{', '.join(ACCELERATORS)}")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    if compile_timeout_s < 1:
        raise ValueError("compile_timeout_s must be positive")
    _check_dns_name(model_name)
    docs: list[dict[str, Any]] = []
    if node_feature_rule_name:
        docs.append(node_feature_rule(node_feature_rule_name))
    docs.append(cluster_serving_runtime(accelerator, image=image, backends=backends,
                                        precision=precision,
                                        compile_timeout_s=compile_timeout_s, grpc=grpc))
    docs.append(inference_service(model_name, storage_uri, accelerator, namespace=namespace,
                                  gpus=gpus, cpu=cpu, memory=memory,
                                  precision=None if precision == "fp32" else precision,
                                  grpc=grpc))
    return docs


def _check_dns_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(f"model name {name!r} must be a DNS label (lower case letters, digits "
                         f"and '-', starting with a letter; InferenceService names become "
                         f"host names)")


def to_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, keys in the order written."""
    import yaml

    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False, default_flow_style=False)


def manifests_main(argv: list[str]) -> int:
    """``yellowstone kserve manifests``: write the manifests for a model; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="yellowstone kserve manifests",
        description="Write a ClusterServingRuntime, an InferenceService and an NFD "
                    "NodeFeatureRule that place the yellowstone boost predictor.")
    parser.add_argument("--model-name", required=True, help="InferenceService name")
    parser.add_argument("--storage-uri", required=True,
                        help="where KServe fetches the model (s3://, gs://, pvc://, ...)")
    parser.add_argument("--accelerator", default="cpu", choices=list(ACCELERATORS))
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the predictor image")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--backends", default=None,
                        help="override the accelerator's backend list, comma-separated")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per replica (GPU kinds)")
    parser.add_argument("--cpu", default="2")
    parser.add_argument("--memory", default="4Gi")
    parser.add_argument("--compile-timeout-s", type=int, default=900,
                        help="longest expected boost time; sizes the startup probe")
    parser.add_argument("--grpc", action="store_true",
                        help="expose gRPC (h2c, port 8081) instead of REST")
    parser.add_argument("--no-node-feature-rule", action="store_true",
                        help="leave out the NFD NodeFeatureRule (already installed)")
    parser.add_argument("--out", default="-", help="output file, or - for stdout")
    args = parser.parse_args(argv)
    try:
        docs = build_manifests(
            args.model_name, args.storage_uri, args.accelerator, image=args.image,
            namespace=args.namespace, backends=args.backends, precision=args.precision,
            gpus=args.gpus, cpu=args.cpu, memory=args.memory,
            compile_timeout_s=args.compile_timeout_s, grpc=args.grpc,
            node_feature_rule_name=None if args.no_node_feature_rule else "yellowstone")
    except ValueError as exc:
        parser.error(str(exc))
    text = to_yaml(docs)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0
