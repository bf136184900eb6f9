"""Coerce and validate notebook parameters, including papermill's strings.

papermill's `-p` converts only True/False/None and numbers: `-p all_data true` injects the
string "true", and `-p all_data false` the string "false", which Python finds truthy.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

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


def coerce_optional_str(name: str, value) -> str | None:
    """None for None/""/"none"/"null", else the string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {value!r}")
    return None if value.strip().lower() in ("", "none", "null") else value


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
