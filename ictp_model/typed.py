"""Typed configuration values: a YAML reader that reads `1e-3` as a number, and a checker that
converts every value of a dataclass's keys to the field's type or names the key and what it takes.

PyYAML follows YAML 1.1, where a float needs a dot (`1e-3` is the string "1e-3"); YAML 1.2 and
every user read it as a number, so the loader here does too. Quoted values stay strings, so
`max_epochs: "2"` is refused rather than guessed.
"""

import dataclasses
import re
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with YAML 1.2 exponent floats (1e-3, 5E+2)."""
    return yaml.load(text, Loader=_Loader)


def describe(hint: Any) -> str:
    """What a type hint accepts, in words."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        names = [describe(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ')}s" if args else "a list"
    if hint is dict or origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def convert(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` says (ints are numbers, nothing else is converted).

    Raises:
        TypeError: the value is not of that type.
    """
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return convert(value, arg)
                except TypeError:
                    pass
        raise TypeError
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return [convert(v, args[0]) for v in value] if args else list(value)
    elif hint is dict or origin is dict:
        if isinstance(value, dict):
            if not args:
                return dict(value)
            return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
    else:
        return value
    raise TypeError


def typed_values(values: dict, cls: type, what: str) -> tuple[dict, list[str]]:
    """The values of dataclass ``cls``'s keys converted to its field types, and one problem per
    key whose value is of the wrong type (keys that are not fields are passed through)."""
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    out, problems = dict(values), []
    for key, value in values.items():
        if key not in fields:
            continue
        try:
            out[key] = convert(value, hints[key])
        except TypeError:
            problems.append(f"{what}{key}: expected {describe(hints[key])}, got {value!r}")
    return out, problems
