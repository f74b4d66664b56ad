"""Keys of the TOML file that are no setting, found before the settings are built, each named by its
dotted path with the nearest known key: ``config file vitals.toml: unknown key kafka.bootstrp (did you
mean kafka.bootstrap?)``."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from streams.config.errors import ConfigError

StructType = type[msgspec.Struct]
# tables typed as a plain dict whose keys are a struct's fields (``apps.<id>.rules`` are rule thresholds)
Aliases = Mapping[tuple[StructType, str], StructType]
NO_ALIASES: Aliases = MappingProxyType({})


def _struct_of(annotation: Any) -> StructType | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None


def _table(struct: StructType, name: str, aliases: Aliases) -> tuple[StructType | None, bool]:
    """The struct a table ``name`` of ``struct`` holds, and whether it is keyed by free names first
    (``apps.<app_id>``)."""
    if (struct, name) in aliases:
        return aliases[struct, name], False
    annotation = typing.get_type_hints(struct)[name]
    if typing.get_origin(annotation) is dict:
        return _struct_of(typing.get_args(annotation)[1]), True
    return _struct_of(annotation), False


def unknown_keys(tree: Mapping[str, Any], struct: StructType, aliases: Aliases = NO_ALIASES,
                 prefix: str = "") -> Iterator[tuple[str, StructType, str]]:
    """(dotted key, the struct it was looked up in, the table's prefix) of each key of ``tree`` that
    ``struct`` does not have."""
    fields = set(struct.__struct_fields__)
    for name, value in tree.items():
        if name not in fields:
            yield f"{prefix}{name}", struct, prefix
            continue
        if not isinstance(value, Mapping):
            continue  # a wrong type is msgspec's to report
        inner, keyed = _table(struct, name, aliases)
        if inner is None:
            continue
        if keyed:
            for free, sub in value.items():
                if isinstance(sub, Mapping):
                    yield from unknown_keys(sub, inner, aliases, f"{prefix}{name}.{free}.")
        else:
            yield from unknown_keys(value, inner, aliases, f"{prefix}{name}.")


def leaf_keys(struct: StructType, aliases: Aliases = NO_ALIASES, prefix: str = "") -> Iterator[str]:
    """Every dotted key of ``struct`` (tables keyed by free names left out)."""
    for name in struct.__struct_fields__:
        inner, keyed = _table(struct, name, aliases)
        if inner is None or keyed:
            yield f"{prefix}{name}"
        elif (struct, name) not in aliases:
            yield from leaf_keys(inner, aliases, f"{prefix}{name}.")


def nearest(key: str, struct: StructType, prefix: str, root: StructType, aliases: Aliases = NO_ALIASES) -> str | None:
    """The known key closest to ``key``: a close name in the same table, else the same or a close name
    anywhere (``store`` at the top level: ``processing.store``)."""
    name = key.removeprefix(prefix)
    close = difflib.get_close_matches(name, list(struct.__struct_fields__), n=1, cutoff=0.75)
    if close:
        return prefix + close[0]
    everywhere = list(leaf_keys(root, aliases))
    by_name: dict[str, str] = {}
    for dotted in everywhere:
        by_name.setdefault(dotted.rsplit(".", 1)[-1], dotted)
    close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.75)
    return by_name[close[0]] if close else None


def check_file_keys(tree: Mapping[str, Any], root: StructType, path: str, aliases: Aliases = NO_ALIASES) -> None:
    """ConfigError naming the file and every key of it that is no setting, with the nearest known key."""
    problems = []
    for key, struct, prefix in unknown_keys(tree, root, aliases):
        near = nearest(key, struct, prefix, root, aliases)
        problems.append(f"{key} (did you mean {near}?)" if near else key)
    if problems:
        noun = "key" if len(problems) == 1 else "keys"
        raise ConfigError(f"config file {path}: unknown {noun} {', '.join(problems)}")
