"""The KServe manifests generator: every accelerator kind validates against the real CRD schemas
(strictly: unknown fields are errors), and placement is consistent with the NFD rule."""

from __future__ import annotations

import copy
import functools
import gzip
from pathlib import Path

import jsonschema
import pytest

from yellowstone.plugins.kserve import manifests as m

CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "k8s-crds"  # upstream CRDs, gzipped
ACCELERATORS = list(m.ACCELERATORS)


def _strict(schema):
    """Reject unknown fields like ``kubectl apply --validate=strict``: objects with properties
    and no preserve-unknown-fields marker get additionalProperties: false."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _validators():
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = {}
    paths = sorted(CRD_DIR.glob("*.yaml.gz"))
    assert len(paths) == 4, f"expected the KServe and NFD CRDs in {CRD_DIR}"
    for path in paths:
        for crd in yaml.load_all(gzip.decompress(path.read_bytes()).decode(), Loader=loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def _errors(doc):
    validator = _validators().get((doc["apiVersion"], doc["kind"]))
    assert validator is not None, f"no CRD schema for {doc['apiVersion']} {doc['kind']}"
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("accelerator", ACCELERATORS)
@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_manifests_validate_against_crds(accelerator, grpc):
    docs = m.build_manifests("resnet", "s3://models/resnet", accelerator, grpc=grpc,
                             namespace="ml")
    assert [d["kind"] for d in docs] == ["NodeFeatureRule", "ClusterServingRuntime",
                                         "InferenceService"]
    for doc in docs:
        assert _errors(doc) == [], doc["kind"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_other_precisions_validate(precision):
    for doc in m.build_manifests("bert", "pvc://models/bert", "cpu", precision=precision):
        assert _errors(doc) == []


def test_validation_catches_broken_manifests():
    """The schema check is real: a wrong type and an unknown field are both reported."""
    isvc = m.build_manifests("resnet", "s3://x", "cpu")[2]
    bad_type = copy.deepcopy(isvc)
    bad_type["spec"]["predictor"]["minReplicas"] = "one"
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop(
        "storageUri")
    assert any("minReplicas" in e for e in _errors(bad_type))
    assert any("storageURI" in e for e in _errors(typo))
    rule = m.node_feature_rule()
    rule["spec"]["rules"][0]["matchFeatures"][0]["matchExpressions"]["AVX512F"]["op"] = "Has"
    assert _errors(rule)


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_resources_placement_and_probes(accelerator):
    rule, runtime, isvc = m.build_manifests("resnet", "s3://x", accelerator, gpus=2,
                                            compile_timeout_s=1200)
    acc = m.ACCELERATORS[accelerator]
    predictor = isvc["spec"]["predictor"]
    limits = predictor["model"]["resources"]["limits"]
    gpu_keys = {"nvidia.com/gpu", "gpu.intel.com/i915", "amd.com/gpu"}
    if acc.resource:
        assert limits[acc.resource] == "2" and set(limits) & gpu_keys == {acc.resource}
        assert predictor["tolerations"] == [{"key": acc.resource, "operator": "Exists",
                                             "effect": "NoSchedule"}]
        (term,) = predictor["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [{"key": m.GPU_VENDOR_LABEL, "operator": "In",
                                             "values": [acc.vendor]}]
    else:
        assert not set(limits) & gpu_keys and "tolerations" not in predictor
    # Every node label the predictor asks for is one the NFD rule can set.
    rule_labels = {(k, v) for r in rule["spec"]["rules"] for k, v in r["labels"].items()}
    node_aff = predictor["affinity"]["nodeAffinity"]
    terms = [t for t in node_aff.get("requiredDuringSchedulingIgnoredDuringExecution", {})
             .get("nodeSelectorTerms", [])]
    terms += [p["preference"] for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    asked = {(e["key"], v) for t in terms for e in t["matchExpressions"] for v in e["values"]}
    assert asked and asked <= rule_labels
    # The startup probe waits out the whole compile; the ISVC uses this runtime.
    probe = runtime["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 1200
    assert predictor["model"]["runtime"] == runtime["metadata"]["name"] == f"yellowstone-{accelerator}"
    assert f"--backends={acc.backends}" in runtime["spec"]["containers"][0]["args"]


def test_bf16_on_cpu_requires_bf16_nodes():
    isvc = m.build_manifests("bert", "s3://x", "cpu", precision="bf16")[2]
    req = isvc["spec"]["predictor"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert req == [{"matchExpressions": [{"key": f"{m.LABEL_NS}/cpu-bf16", "operator": "In",
                                          "values": ["true"]}]}]
    assert isvc["spec"]["predictor"]["model"]["args"] == ["--precision=bf16"]


def test_nfd_rule_matches_cpu_and_pci_features():
    rules = {r["name"]: r for r in m.node_feature_rule()["spec"]["rules"]}
    nvidia = rules["yellowstone: nvidia GPU"]["matchFeatures"][0]
    assert nvidia["feature"] == "pci.device"
    assert nvidia["matchExpressions"]["vendor"] == {"op": "In", "value": ["10de"]}
    amx = rules["yellowstone: AMX tiles"]["matchFeatures"][0]["matchExpressions"]
    assert set(amx) == {"AMXTILE", "AMXBF16"}


def test_container_args_parse_with_the_entry_point():
    """The runtime's args are accepted by ``python -m yellowstone.plugins.kserve``'s parser."""
    pytest.importorskip("kserve")
    from yellowstone.plugins.kserve.__main__ import boost_options, build_parser

    runtime = m.build_manifests("resnet", "s3://x", "intel-gpu", precision="fp16")[1]
    container = runtime["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "yellowstone.plugins.kserve"]
    args = build_parser().parse_args([a.replace("{{.Name}}", "resnet") for a in container["args"]])
    assert (args.model_name, args.model_dir, args.http_port, args.grpc_port) == (
        "resnet", "/mnt/models", 8080, 8081)
    assert boost_options(args) == {"backends": "openvino,onnxruntime", "precision": "fp16"}


def test_manifests_main_writes_yaml(tmp_path, capsys):
    import yaml

    out = tmp_path / "isvc.yaml"
    assert m.manifests_main(["--model-name", "resnet", "--storage-uri", "gs://b/resnet",
                             "--accelerator", "amd-gpu", "--out", str(out),
                             "--no-node-feature-rule"]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["kind"] for d in docs] == ["ClusterServingRuntime", "InferenceService"]
    assert docs[1]["spec"]["predictor"]["model"]["resources"]["limits"]["amd.com/gpu"] == "1"
    for doc in docs:
        assert _errors(doc) == []
    with pytest.raises(SystemExit) as exc:
        m.manifests_main(["--model-name", "Bad_Name", "--storage-uri", "s3://x"])
    assert exc.value.code == 2
    assert "DNS label" in capsys.readouterr().err
