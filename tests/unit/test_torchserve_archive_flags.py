"""``yellowstone archive`` takes the serving layer's boost flags, spelled as the BoostConfig fields,
and writes them into the archive's ``yellowstone:`` section (no server, no compile)."""

from __future__ import annotations

import pytest
import yaml

from yellowstone.config import BoostConfig
from yellowstone.plugins.torchserve import archive
from yellowstone.plugins.torchserve.config import SECTION, parse_section, resolve

REQUIRED = ["--model-name", "m", "--serialized-file", "m.pt", "--export-path", "store"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_BATCH_SIZES",
                "YELLOWSTONE_TIME_BUDGET_S", "YELLOWSTONE_WORKERS"):
        monkeypatch.delenv(var, raising=False)


def test_every_boost_flag_is_the_field_name():
    actions = {a.dest: a.option_strings for a in archive.build_parser()._actions}
    fields = set(BoostConfig.field_names()) - {"options"}
    for name in fields:
        assert actions.get(name) == [f"--{name}"], name
    for own in ("model_name", "serialized_file", "handler", "export_path", "input_shape",
                "input_dtype", "precompile", "quiet", "force", "archive_format"):
        assert own in actions, own  # the archiver's own flags stay


@pytest.mark.parametrize("old", ["--time-budget", "--batch-sizes", "--cache-dir"])
def test_old_spellings_are_gone(old, capsys):
    with pytest.raises(SystemExit):
        archive.build_parser().parse_args([*REQUIRED, old, "1"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_flags_land_in_the_section_over_the_config_file():
    args = archive.build_parser().parse_args([
        *REQUIRED, "--handler", "dir/mine.py:Mine", "--input-shape", "1,3,32,32",
        "--backends", "onnxruntime", "--precision", "bf16", "--task", "classification",
        "--time_budget_s", "0.5", "--batch_sizes", "1,8", "--cache_dir", "/c",
        "--validation_rounds", "3", "--dispatch", "single", "--cache", "false"])
    config = {SECTION: {"backends": "openvino", "threads": 2, "input_dtype": "float32"},
              "batchSize": 8}
    section = archive._section_from_args(args, config)
    assert section == {"backends": "onnxruntime", "threads": 2, "input_dtype": "float32",
                       "input_shape": "1,3,32,32", "precision": "bf16", "task": "classification",
                       "time_budget_s": 0.5, "batch_sizes": "1,8", "cache_dir": "/c",
                       "validation_rounds": 3, "dispatch": "single", "cache": "false",
                       "handler": "mine.py:Mine"}
    settings, boost = resolve({**config, SECTION: section})
    assert settings.handler == "mine.py:Mine"
    assert (boost.backends, boost.precision, boost.time_budget_s, boost.batch_sizes,
            boost.validation_rounds, boost.dispatch, boost.cache, boost.threads) == \
        (("onnxruntime",), "bf16", 0.5, (1, 8), 3, "single", False, 2)


def test_flags_not_given_leave_the_section_alone():
    args = archive.build_parser().parse_args(REQUIRED)
    config = {SECTION: {"handler": "image_classifier", "time_budget_s": 2.0}}
    assert archive._section_from_args(args, config) == config[SECTION]


def test_archive_writes_the_flags_into_model_config(tmp_path):
    pytest.importorskip("model_archiver")
    model = tmp_path / "m.pt"
    model.write_bytes(b"not a model: archiving only copies it")
    rc = archive.archive_main(["--model-name", "m", "--serialized-file", str(model),
                               "--handler", "image_classifier", "--export-path",
                               str(tmp_path / "store"), "--archive-format", "no-archive",
                               "--time_budget_s", "1.5", "--batch_sizes", "1,4", "-q"])
    assert rc == 0
    written = yaml.safe_load((tmp_path / "store" / "m" / "model-config.yaml").read_text())
    assert written[SECTION] == {"time_budget_s": 1.5, "batch_sizes": "1,4",
                                "handler": "image_classifier"}
    assert dict(parse_section(written[SECTION]).boost) == {"time_budget_s": 1.5,
                                                            "batch_sizes": "1,4"}
