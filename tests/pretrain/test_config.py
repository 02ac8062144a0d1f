"""Configuration: every key validated, --set overrides, the model section, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.pretrain.config import config_to_dict, load_config, save_config

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pretrain.yaml"
    path.write_text(text)
    return path


def test_file_and_sets_are_applied(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "model:\n  preset: tiny\n  d_model: 48\ndata:\n  stores: [a.h5]\noptim:\n  lr: 3e-4\n",
    )
    config = load_config(path, ["optim.lr=1e-3", "model.n_layers=3", "train.max_minutes=2"])
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.train.max_minutes == 2.0
    model = config.model_config()
    assert (model.d_model, model.n_layers) == (48, 3)
    assert config.data.stores == ["a.h5"]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  stores: [a.h5]\noptim:\n  lrate: 0.1\n")
    with pytest.raises(PipelineError, match=r"pretrain\.yaml: unknown key 'optim\.lrate'"):
        load_config(path)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("trian.context=5", r"unknown key 'trian\.context'"),
        ("model.dmodel=5", r"unknown key 'model\.dmodel'"),
        ("train=5", r"'train' is a section"),
        ("seed.x=1", r"unknown key 'seed\.x'"),
    ],
)
def test_unknown_set_key(item: str, message: str) -> None:
    with pytest.raises(PipelineError, match=rf"--set {item}: {message}"):
        load_config(None, [item], ["a.h5"])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.context=long", "train.context must be an integer, got 'long'"),
        ("train.context=1.5", "train.context must be an integer"),
        ("train.bf16=1", "train.bf16 must be true or false"),
        ("optim.lr=fast", "optim.lr must be a number"),
        ("data.stores=a.h5", "data.stores must be a list"),
        ("model.d_model=wide", "model.d_model must be an integer"),
        ("model.variant=5", "model.variant must be a string"),
    ],
)
def test_wrong_type_is_clear(item: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        load_config(None, [item], ["a.h5"])


def test_wrong_type_in_file_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  stores: [a.h5]\ntrain:\n  batch_size: many\n")
    with pytest.raises(PipelineError, match=r"pretrain\.yaml: train\.batch_size must be"):
        load_config(path)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model.variant=xyz", "variant must be one of"),
        ("model.preset=huge", "unknown preset"),
        ("train.batch_size=6", r"multiple of train\.grad_accum"),
        ("train.seqlen_warmup_start=48", "power of two"),
        ("data.val_fraction=1.0", r"data\.val_fraction"),
        ("eval.markov_max_order=13", "markov_max_order"),
        ("eval.markov_smoothing=witten_bell", "markov_smoothing"),
        ("data.weights=[1.0,2.0]", "2 entries for 1 stores"),
        ("data.plant_repeats=1.5", r"data\.plant_repeats must be in \[0, 1\]"),
        ("data.repeat_distance=[300,500]", r"max \+ repeat_segment < the shortest training"),
        ("data.repeat_distance=[50,500]", r"repeat_segment \(100\) <= min"),
    ],
)
def test_invalid_values(item: str, message: str) -> None:
    sets = ["train.grad_accum=4"] if "batch_size" in item else []
    sets += ["data.plant_repeats=0.5"] if "repeat_distance" in item else []
    with pytest.raises(PipelineError, match=message):
        load_config(None, [*sets, item], ["a.h5"])


def test_no_store_is_an_error() -> None:
    with pytest.raises(PipelineError, match=r"data\.stores is empty"):
        load_config(None, [])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(PipelineError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(PipelineError, match="--set nokey: expected KEY=VALUE"):
        load_config(None, ["nokey"], ["a.h5"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["model.d_model=40", "optim.lr=2e-3"], ["x.h5", "y.h5"])
    save_config(config, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["d_model"] == 40 and saved["model"]["preset"] == "tiny"
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(config)


@pytest.mark.parametrize("name", ["tiny_cpu", "small_gpu", "base_gpu"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(REPO / "config" / "pretrain" / f"{name}.yaml")
    assert config.model.preset == name.split("_")[0]
