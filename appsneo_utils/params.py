"""Coerce and validate notebook parameters, including papermill's strings.

papermill's `-p` converts only True/False/None and numbers: `-p all_data true` injects the
string "true", and `-p all_data false` the string "false", which Python finds truthy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from dataclasses import dataclass
from typing import ClassVar

TRUE_WORDS = ("true", "1", "yes", "y", "on")
FALSE_WORDS = ("false", "0", "no", "n", "off")
PROFILES = ("auto", "full", "smoke")


def coerce_bool(name: str, value) -> bool:
    """True/False from a bool, 0/1 or a word such as "true", "False", "no"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(
        f"{name} must be true or false (accepted: {', '.join(TRUE_WORDS + FALSE_WORDS)}), got {value!r}"
    )


def coerce_int(name: str, value, *, minimum: int | None = None) -> int:
    """An int from an int or a numeric string; floats must be whole."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError
            number = int(number)
        if not isinstance(number, int):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def coerce_float(name: str, value, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A float from a number or a numeric string, within optional bounds."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number


def coerce_choice(name: str, value, choices) -> str:
    """One of `choices` (case-insensitive)."""
    word = str(value).strip().lower() if value is not None else ""
    for choice in choices:
        if word == str(choice).lower():
            return choice
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def hub_reachable(timeout: float = 2.0) -> tuple[bool, str]:
    """Whether the Hugging Face hub can be reached, and why not (fast: no retry loop)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in TRUE_WORDS:
            return False, f"{var}={os.environ[var]} is set"
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True, f"{host} answered"
    except OSError as exc:
        return False, f"cannot reach {host} ({exc.__class__.__name__})"


def cuda_available() -> tuple[bool, str]:
    """Whether a CUDA GPU is usable, and its name or why not."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    return True, torch.cuda.get_device_name(0)


@dataclass(frozen=True)
class Profile:
    name: str  # "full" (real model and dataset) or "smoke" (embedded default)
    reason: str

    @property
    def full(self) -> bool:
        return self.name == "full"


def resolve_profile(value="auto", *, verbose: bool = True) -> Profile:
    """"full" or "smoke": "auto" picks full only when a CUDA GPU and the hub are both there."""
    choice = coerce_choice("profile", value, PROFILES)
    if choice == "auto":
        gpu, gpu_why = cuda_available()
        hub, hub_why = hub_reachable() if gpu else (False, "not checked")
        if gpu and hub:
            profile = Profile("full", f"auto: GPU {gpu_why} and hub reachable")
        else:
            why = gpu_why if not gpu else hub_why
            profile = Profile("smoke", f"auto: {why}, so the embedded default (tiny model, mini set)")
    else:
        profile = Profile(choice, "forced by the profile parameter")
    if verbose:
        print(f"profile: {profile.name} ({profile.reason})")
    return profile


# --- settings: one mechanism for every notebook and command line ------------------------------
#
# A job's knobs are one dataclass that subclasses `Settings`; each field is made by `setting(...)` with its
# default, a help string and a kind that says how a notebook or command-line value is coerced. A
# profile-dependent default stands beside the field (`smoke=...`, `full=...`); a default that depends on
# other values (a recipe, a folder on disk) comes from the class's `layered_defaults`.
#
# One sentinel: a parameter left at None takes the profile's default (papermill's `-p x None` is None).
# "All" is said in words: a `count` setting is a whole number or "all".

ALL = "all"
KINDS = ("bool", "int", "float", "choice", "str", "count", "list")


def setting(default, help: str, kind: str, *, smoke=dataclasses.MISSING, full=dataclasses.MISSING,
            by_profile: str | None = None, optional: bool = False, **check) -> dataclasses.Field:
    """A settings field: its default (the full profile's), help, kind, and the smoke profile's default.

    kind: bool | int | float | choice (`choices=`) | str | count (a whole number or "all"; `minimum=`) |
    list (comma-separated names from `choices=`, or "all"; resolved to a tuple; without `choices`, whole
    numbers of at least 1, such as the k of pass@k).
    by_profile: for a default computed by the class's `layered_defaults`, the words the notebook cell shows
    after "None: " (e.g. "by recipe and profile (card False, replica True)").
    optional: None is a value of its own after the defaults are layered (say what it means in the help).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    meta = {"help": help, "kind": kind, "optional": optional, "by_profile": by_profile, **check}
    if smoke is not dataclasses.MISSING:
        meta["smoke"] = smoke
    if full is not dataclasses.MISSING:
        meta["full"] = full
    if "=" in help:  # the help becomes a comment in the parameters cell, and papermill reads `=` there
        raise ValueError(f"no '=' in a setting's help string: {help!r}")
    return dataclasses.field(default=default, metadata=meta)


def coerce_count(name: str, value, *, minimum: int = 0):
    """A whole number (at least `minimum`) or the word "all"."""
    if isinstance(value, str) and value.strip().lower() == ALL:
        return ALL
    try:
        return coerce_int(name, value, minimum=minimum)
    except ValueError as exc:
        raise ValueError(f"{exc}; or the word \"all\"") from None


def coerce_list(name: str, value, choices=None) -> tuple:
    """A tuple of names from `choices`, from a comma-separated string, a list, or "all" (every choice);
    without `choices`, a tuple of whole numbers of at least 1."""
    if choices is None:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not [i for i in items if str(i).strip()]:
            raise ValueError(f"{name} must be comma-separated whole numbers, got {value!r}")
        return tuple(coerce_int(name, item, minimum=1) for item in items if str(item).strip())
    if isinstance(value, str):
        if value.strip().lower() == ALL:
            return tuple(choices)
        items = [item for item in (part.strip() for part in value.split(",")) if item]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"{name} must be a comma-separated list of {', '.join(map(str, choices))}, or all; "
                         f"got {value!r}")
    if not items:
        raise ValueError(f"{name} must name at least one of {', '.join(map(str, choices))}, or all")
    return tuple(coerce_choice(name, item, choices) for item in items)


def upto(value):
    """A count setting as a slice bound: None for "all", else the number."""
    return None if value == ALL else value


def coerce_field(f: dataclasses.Field, value):
    """One field's value, coerced by its kind; a bad value raises ValueError naming the field."""
    meta, name = f.metadata, f.name
    if meta.get("optional") and isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        value = None  # a command line's --problem None: papermill's -p already makes it None
    if value is None:
        if meta.get("optional"):
            return None
        raise ValueError(f"{name} must not be None (None is only the profile-default sentinel of a parameter)")
    kind = meta["kind"]
    if kind == "bool":
        return coerce_bool(name, value)
    if kind == "int":
        return coerce_int(name, value, minimum=meta.get("minimum"))
    if kind == "float":
        return coerce_float(name, value, minimum=meta.get("minimum"), maximum=meta.get("maximum"))
    if kind == "choice":
        return coerce_choice(name, value, meta["choices"])
    if kind == "count":
        return coerce_count(name, value, minimum=meta.get("minimum", 0))
    if kind == "list":
        return coerce_list(name, value, meta.get("choices"))
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return str(value)


@dataclasses.dataclass
class Settings:
    """Base of every job's settings: `profile` first, every field coerced on construction.

    `from_params` turns notebook or command-line values (papermill's strings included) into settings;
    `from_notebook(globals())` reads exactly the fields from a notebook's namespace; `parse_args` builds
    the command line from the same fields.
    """

    profile: str = setting("auto", "auto | full | smoke (auto: full on a GPU with the hub, else smoke: the "
                           "embedded default, tiny model and mini set)", "choice", choices=PROFILES)
    # False for a job whose settings do not depend on the profile (the judge's command line): no --profile
    # flag, no GPU or hub check.
    PROFILED: ClassVar[bool] = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce_field(f, getattr(self, f.name)))

    @classmethod
    def parameter_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def below_profile(cls, values: dict) -> dict:
        """Defaults that a field's profile value overrides, such as a recipe's (override in a subclass)."""
        return {}

    @classmethod
    def layered_defaults(cls, profile: Profile, values: dict) -> dict:
        """Defaults that depend on more than the profile (override in a subclass); `values` are the ones passed."""
        return {}

    @classmethod
    def defaults_for(cls, profile: Profile, values: dict | None = None) -> dict:
        """Every field's default under `profile`: field default < below_profile < the field's profile value
        < layered_defaults."""
        values = dict(values or {})
        base = {f.name: f.default for f in dataclasses.fields(cls)}
        base.update(cls.below_profile(values))
        base.update({f.name: f.metadata[profile.name] for f in dataclasses.fields(cls) if profile.name in f.metadata})
        base.update(cls.layered_defaults(profile, values))
        base["profile"] = profile.name
        return base

    @classmethod
    def from_params(cls, values: dict | None = None, /, **params):
        """Settings from notebook or command-line values: None takes the profile's default; an unknown
        name or a bad value raises ValueError naming it. `profile` is resolved first ("auto" looks for a
        GPU and the hub)."""
        values = {**(values or {}), **params}
        unknown = set(values) - set(cls.parameter_names())
        if unknown:
            raise ValueError(f"unknown settings for {cls.__name__}: {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(cls.parameter_names())}")
        profile = cls._profile(values.pop("profile", None), verbose=False)
        base = cls.defaults_for(profile, values)
        resolved = {name: base[name] if values.get(name) is None else values[name] for name in base}
        resolved["profile"] = profile.name
        return cls(**resolved)

    @classmethod
    def from_notebook(cls, namespace: dict, *, verbose: bool = True):
        """Settings from a notebook's parameters cell (its globals); prints the profile choice."""
        missing = [name for name in cls.parameter_names() if name not in namespace]
        if missing:
            raise ValueError(f"the parameters cell lacks {', '.join(missing)}: run it first, or regenerate it "
                             f"with `python -m appsneo_utils.cells --write`")
        values = {name: namespace[name] for name in cls.parameter_names()}
        values["profile"] = cls._profile(values["profile"], verbose=verbose)
        return cls.from_params(values)

    @classmethod
    def _profile(cls, value, *, verbose: bool) -> Profile:
        """The profile `value` names (None: auto); a job without profiles is always "full"."""
        if not cls.PROFILED:
            return Profile("full", "this job has no profile")
        if isinstance(value, Profile):
            return value
        return resolve_profile("auto" if value is None else value, verbose=verbose)

    @classmethod
    def parse_args(cls, argv=None, *, prog: str, description: str, extra=None):
        """(settings, extra arguments) from a command line with one `--name` flag per field.

        `extra(parser)` may add flags that are not settings (an output path, a progress switch); they come
        back as a dict. An unset flag takes the profile's default, as a notebook's None does. A name with
        an underscore is also accepted with dashes (`--memory_mb` or `--memory-mb`). A bad value exits
        with status 2 and the message, as argparse does.
        """
        parser = argparse.ArgumentParser(prog=prog, description=description)
        names = [name for name in cls.parameter_names() if cls.PROFILED or name != "profile"]
        for f in dataclasses.fields(cls):
            if f.name in names:
                flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
                words = default_words(f)
                parser.add_argument(*flags, dest=f.name, default=None, metavar=f.metadata["kind"].upper(),
                                    help=f"{f.metadata['help']}; {words}" if words else f.metadata["help"])
        if extra:
            extra(parser)
        args = vars(parser.parse_args(argv))
        try:
            settings = cls.from_params({k: v for k, v in args.items() if k in names})
        except ValueError as exc:
            parser.error(str(exc))
        return settings, {k: v for k, v in args.items() if k not in names}

    def changed(self, **values):
        """A copy with `values` replaced, coerced like the rest."""
        return dataclasses.replace(self, **values)


def _literal(value) -> str:
    if isinstance(value, tuple):
        return repr(",".join(map(str, value)))
    return repr(value)


def default_words(f: dataclasses.Field) -> str:
    """How a field's default reads in a cell comment and in --help."""
    meta = f.metadata
    if meta.get("by_profile"):
        return f"None: {meta['by_profile']}"
    if meta.get("optional") and f.default is None:
        return ""  # the help says what None means
    if "smoke" in meta or "full" in meta:
        full = meta.get("full", f.default)
        return f"None: by profile (full {_literal(full)}; smoke {_literal(meta.get('smoke', f.default))})"
    return f"default {_literal(f.default)}"


def cell_value(f: dataclasses.Field):
    """What the parameters cell assigns: None where the profile or other values decide, else the default."""
    meta = f.metadata
    if meta.get("by_profile") or "smoke" in meta or "full" in meta:
        return None
    return f.default


KIND_WORDS = {"bool": "bool", "int": "int", "float": "float", "choice": "str", "str": "str",
              "count": "int or 'all'", "list": "str, comma-separated"}


def parameters_cell(cls) -> str:
    """The source of a notebook's parameters cell for `cls`: one line per field, its help as a comment."""
    lines = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        value = cell_value(f)
        words = f"; {default_words(f)}" if meta.get("by_profile") or "smoke" in meta or "full" in meta else ""
        kind = KIND_WORDS[meta["kind"]]
        lines.append(f"{f.name} = {_literal(value)}  # {kind}: {f.metadata['help']}{words}")
    return "\n".join(lines)
