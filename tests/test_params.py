"""Parameter coercion: papermill's strings, clear errors, the profile choice."""

import pytest

from appsneo_utils.params import coerce_bool, coerce_choice, coerce_float, coerce_int, resolve_profile


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


def test_choice():
    assert coerce_choice("split", "TRAIN", ["train", "test"]) == "train"
    with pytest.raises(ValueError, match="split must be one of train, test; got 'dev'"):
        coerce_choice("split", "dev", ["train", "test"])


def test_profile_auto_falls_back_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = resolve_profile("auto")
    assert profile.name == "smoke" and not profile.full
    assert "profile: smoke" in capsys.readouterr().out
    assert resolve_profile("full", verbose=False).full
    with pytest.raises(ValueError, match="profile must be one of auto, full, smoke"):
        resolve_profile("fast")


# --- the settings mechanism -------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from appsneo_utils.params import ALL, Settings, parameters_cell, setting, upto  # noqa: E402


@dataclass
class Toy(Settings):
    limit: int | str = setting(ALL, "problems at most", "count", smoke=4)
    n_samples: int = setting(10, "samples per problem", "int", smoke=2, minimum=1)
    temperature: float = setting(0.8, "sampling temperature", "float", minimum=0.0)
    greedy: bool = setting(False, "greedy decoding", "bool")
    ks: tuple = setting("1,5,10", "k of pass@k", "list")
    judges: tuple = setting("apps,strict", "judges, headline first", "list", choices=("apps", "strict"))
    out: str | None = setting(None, "run folder; None: derived from the settings", "str", optional=True)


def test_none_takes_the_profiles_default_and_papermill_strings_are_coerced():
    smoke = Toy.from_params(profile="smoke", temperature="0.2", greedy="true", ks="1, 2")
    assert (smoke.profile, smoke.limit, smoke.n_samples) == ("smoke", 4, 2)
    assert smoke.temperature == 0.2 and smoke.greedy is True and smoke.ks == (1, 2)
    full = Toy.from_params(profile="full", limit=None, n_samples="3")
    assert (full.limit, full.n_samples, full.judges, full.out) == (ALL, 3, ("apps", "strict"), None)
    assert upto(full.limit) is None and upto(smoke.limit) == 4
    assert Toy.from_params(profile="smoke", out="None").out is None  # a command line's --out None


def test_all_is_a_word_and_bad_values_name_the_setting():
    assert Toy.from_params(profile="smoke", limit="all").limit == ALL
    with pytest.raises(ValueError, match=r'limit must be a whole number, got \'some\'; or the word "all"'):
        Toy.from_params(profile="smoke", limit="some")
    with pytest.raises(ValueError, match="judges must be one of apps, strict; got 'lenient'"):
        Toy.from_params(profile="smoke", judges="apps,lenient")
    with pytest.raises(ValueError, match="unknown settings for Toy: tempreature"):
        Toy.from_params(profile="smoke", tempreature=0.5)
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        Toy(n_samples=0)


def test_notebook_namespace_and_command_line_give_the_same_settings():
    namespace = {"profile": "smoke", "limit": None, "n_samples": "3", "temperature": 0.8, "greedy": False,
                 "ks": "1,5,10", "judges": "apps,strict", "out": None, "unrelated": object()}
    from_cell = Toy.from_notebook(namespace, verbose=False)
    from_cli, extra = Toy.parse_args(["--profile", "smoke", "--n_samples", "3"], prog="toy", description="toy",
                                     extra=lambda p: p.add_argument("--quiet", action="store_true"))
    assert from_cell == from_cli and extra == {"quiet": False}
    with pytest.raises(ValueError, match="the parameters cell lacks greedy"):
        Toy.from_notebook({k: v for k, v in namespace.items() if k != "greedy"}, verbose=False)


def test_parameters_cell_lists_every_field_with_its_help_and_profile_defaults():
    cell = parameters_cell(Toy).splitlines()
    assert [line.split(" = ")[0] for line in cell] == Toy.parameter_names()
    assert cell[0].startswith("profile = 'auto'  # str: auto | full | smoke")
    assert cell[1] == "limit = None  # int or 'all': problems at most; None: by profile (full 'all'; smoke 4)"
    assert cell[3] == "temperature = 0.8  # float: sampling temperature"
    namespace = {}
    exec("\n".join(cell), namespace)  # the cell is valid Python and papermill can parse its comments
    assert Toy.from_notebook(namespace, verbose=False) == Toy.from_params(profile="auto")


def test_help_strings_may_not_hold_an_equals_sign():
    with pytest.raises(ValueError, match="no '=' in a setting's help"):
        setting(1, "x = 1", "int")
