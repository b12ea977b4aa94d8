from pathlib import Path

import pytest
import yaml

from rsseg.config import Config, load_config
from rsseg.errors import RsSegError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_paths_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg.model.name == "unet"
    assert cfg.data.root == (tmp_path / "data/synthetic").resolve()
    assert cfg.data.root.is_absolute() and cfg.output.dir.is_absolute()


def test_unknown_key_names_path_and_suggests(tmp_path):
    path = write(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(RsSegError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "unknown key 'train.epoch'" in msg
    assert "did you mean 'train.epochs'" in msg


def test_unknown_section_suggests(tmp_path):
    with pytest.raises(RsSegError, match="did you mean 'optim'"):
        load_config(write(tmp_path, "optimm:\n  lr: 0.1\n"))


def test_wrong_type_names_file_key_and_expected_type(tmp_path):
    path = write(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(RsSegError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg and "train.epochs" in msg
    assert "expected int" in msg and "'many'" in msg


def test_literal_choice_error_lists_choices(tmp_path):
    with pytest.raises(RsSegError, match="optim.name.*'sgd' \\| 'adam' \\| 'adamw'"):
        load_config(write(tmp_path, "optim:\n  name: rmsprop\n"))


def test_missing_file():
    with pytest.raises(RsSegError, match="config file not found: .*nope.yaml"):
        load_config(Path("nope.yaml"))


def test_invalid_yaml(tmp_path):
    with pytest.raises(RsSegError, match="is not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(RsSegError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_parse_yaml_values_and_are_repeatable(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 5\n")
    cfg = load_config(path, ["train.epochs=3", "data.bands=[1, 2, 3]", "optim.lr=0.01", "output.name=x"])
    assert cfg.train.epochs == 3
    assert cfg.data.bands == [1, 2, 3]
    assert cfg.optim.lr == 0.01
    assert cfg.output.name == "x"


def test_override_typo_is_rejected(tmp_path):
    with pytest.raises(RsSegError, match="did you mean 'train.epochs'"):
        load_config(None, ["train.epohcs=3"])


def test_malformed_override():
    with pytest.raises(RsSegError, match="key.path=value"):
        load_config(None, ["train.epochs"])


def test_cross_field_validation():
    with pytest.raises(RsSegError, match="window - keep"):
        load_config(None, ["infer.window=256", "infer.keep=223"])
    with pytest.raises(RsSegError, match="both `mean` and `std`"):
        load_config(None, ["data.mean=[1, 2, 3]"])


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=7"])
    again = Config.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_every_option_is_documented():
    def walk(model):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            sub = info.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub)

    walk(Config)


def test_unknown_key_inside_a_list_of_sections_lists_valid_keys():
    with pytest.raises(RsSegError, match=r"unknown key 'loss.terms.0.wieght'; did you mean 'loss.terms.0.weight'"):
        load_config(None, ["loss.terms=[{name: ce, wieght: 1}]"])


def test_yaml_spellings_of_precision_and_switches_are_taken(tmp_path):
    """``precision: 32`` is a YAML number and ``channels_last: off`` a YAML boolean; both are
    read as the choices they spell, and other numbers are still refused."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  precision: 32\n  channels_last: off\n")
    cfg = load_config(path)
    assert (cfg.train.precision, cfg.train.channels_last) == ("32", "off")
    cfg = load_config(None, ["train.channels_last=on", "train.precision=bf16"])
    assert (cfg.train.precision, cfg.train.channels_last) == ("bf16", "on")
    with pytest.raises(RsSegError, match="precision"):
        load_config(None, ["train.precision=16"])
