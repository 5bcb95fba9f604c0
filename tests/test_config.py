import pytest

from qc_pipeline.config import PipelineConfig, load_config
from qc_pipeline.errors import ConfigError


def test_default_yaml_matches_builtin_defaults(tmp_path):
    from tests.conftest import REPO

    assert load_config(REPO / "qc_pipeline" / "configs" / "default.yaml") == PipelineConfig()


@pytest.mark.parametrize("yaml_text, key, words", [
    ("asr:\n  beam_sze: 3\n", "asr.beam_sze", "did you mean 'beam_size'"),
    ("asr:\n  device: gpu\n", "asr.device", "one of auto, cpu, cuda"),
    ("vad:\n  threshold: 1.5\n", "vad.threshold", "<= 1.0"),
    ("run:\n  workers: two\n", "run.workers", "integer"),
    ("audio: [1, 2]\n", "audio", "mapping"),
    ("asr:\n  credit_phrases: 字幕\n", "asr.credit_phrases", "list of strings"),
    ("nonsense: 1\n", "nonsense", "unknown key"),
])
def test_errors_name_the_key(tmp_path, yaml_text, key, words):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == key
    assert words in str(err.value)
    assert str(cfg) in str(err.value)


def test_invalid_yaml_is_a_config_error(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("asr: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(cfg)


def test_overrides_and_fingerprint():
    base = load_config()
    cfg = load_config(overrides=("asr.language=en", "run.workers=2", "asr.hotwords="))
    assert (cfg.asr.language, cfg.run.workers, cfg.asr.hotwords) == ("en", 2, "")
    assert cfg.fingerprint() != base.fingerprint()
    assert load_config().fingerprint() == base.fingerprint()  # deterministic


def test_loading_does_not_mutate_defaults():
    load_config(overrides=("asr.credit_phrases=[x]",))
    assert "字幕由" in PipelineConfig().asr.credit_phrases


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("asr:\n  beam_sze: 3\n  device: gpu\nvad:\n  threshold: 1.5\nrun:\n  input_timezone: Mars/Olympus\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, overrides=("run.workers=two",))
    assert err.value.keys == ["asr.beam_sze", "asr.device", "vad.threshold", "run.input_timezone", "run.workers"]
    text = str(err.value)
    assert text.startswith("5 problems:")
    for words in ("did you mean 'beam_size'", "one of auto, cpu, cuda", "<= 1.0", "unknown time zone 'Mars/Olympus'",
                  "expected an integer"):
        assert words in text
