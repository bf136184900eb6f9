"""Parameter coercion: papermill's strings, clear errors, the profile choice."""

import pytest

from appsneo_utils.params import coerce_bool, coerce_choice, coerce_float, coerce_int, coerce_optional_str, resolve_profile


@pytest.mark.parametrize("value", [True, "true", "True", "TRUE", " yes ", "1", 1, "on"])
def test_true(value):
    assert coerce_bool("all_data", value) is True


@pytest.mark.parametrize("value", [False, "false", "False", "0", "no", 0, "off"])
def test_false(value):
    assert coerce_bool("all_data", value) is False


@pytest.mark.parametrize("value", ["maybe", "", None, 2, 0.5, "ture"])
def test_garbage_names_parameter_and_choices(value):
    with pytest.raises(ValueError, match=r"all_data must be true or false \(accepted: true, 1, yes"):
        coerce_bool("all_data", value)


def test_numbers():
    assert coerce_int("epochs", "5") == 5 and coerce_int("epochs", 5.0) == 5
    assert coerce_float("lr", "8e-5") == pytest.approx(8e-5)
    with pytest.raises(ValueError, match="epochs must be a whole number, got 2.5"):
        coerce_int("epochs", 2.5)
    with pytest.raises(ValueError, match="at least 1"):
        coerce_int("epochs", 0, minimum=1)
    with pytest.raises(ValueError, match="epochs must be a whole number, got True"):
        coerce_int("epochs", True)
    with pytest.raises(ValueError, match="top_p must be at most 1"):
        coerce_float("top_p", 1.5, maximum=1)


def test_choice_and_optional_string():
    assert coerce_choice("split", "TRAIN", ["train", "test"]) == "train"
    with pytest.raises(ValueError, match="split must be one of train, test; got 'dev'"):
        coerce_choice("split", "dev", ["train", "test"])
    assert coerce_optional_str("model", "None") is None and coerce_optional_str("model", "x") == "x"


def test_profile_auto_falls_back_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = resolve_profile("auto")
    assert profile.name == "smoke" and not profile.full
    assert "profile: smoke" in capsys.readouterr().out
    assert resolve_profile("full", verbose=False).full
    with pytest.raises(ValueError, match="profile must be one of auto, full, smoke"):
        resolve_profile("fast")
