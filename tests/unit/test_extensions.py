"""The C extensions read Python objects by name: every name they read is there.

``streams.engine._engine`` interns the attribute names it reads, writes or calls (module.c's NAMES,
exported as ``ATTRIBUTES`` with the object each is read from); both extensions read their constants
from the dict ``configure()`` gets (streams/engine/extensions.py) and the struct fields by name. A
rename on the Python side fails here, not in the middle of a worker's loop."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Event, decoder_constants
from streams.config.settings import load_settings
from streams.engine import extensions
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition
from streams.engine.state import UserState

ROOT = Path(__file__).resolve().parents[2]
ENGINE_C = ROOT / "streams" / "engine" / "c"
DECODE_C = ROOT / "schemas" / "_decode.c"

pytestmark = pytest.mark.skipif(not extensions.BUILT, reason="the C extensions are not built")


def owners() -> dict[str, Any]:
    """One live object of each kind the C code reads attributes from."""
    rules = RulesByApp(load_settings(env={}))
    part = UserPartition(0, StateStore({}), rules, "reroute", native=True)
    return {"UserPartition": part, "Outputs": Outputs(), "PartitionMeta": part.meta, "RulesByApp": rules,
            "RuleSettings": rules("default"), "StateStore": part.store,
            "DeadlineIndex": next(iter(part.deadlines.values()))}


def test_every_attribute_the_engine_reads_exists_where_it_reads_it() -> None:
    objects = owners()
    engine = extensions.engine()
    missing = [f"{owner}.{name}" for name, owner in engine.ATTRIBUTES if not hasattr(objects[owner], name)]
    assert missing == []


def test_every_interned_name_is_in_the_table() -> None:
    """Each ``s_*`` name engine.h declares is interned through NAMES (so ATTRIBUTES lists it), and no C
    file reads an attribute by a literal string instead."""
    header = (ENGINE_C / "engine.h").read_text()
    declared = set(re.findall(r"\*(s_\w+)", header.split("extern PyObject *s_rules", 1)[1].split(";", 1)[0]))
    declared.add("s_rules")
    table = set(re.findall(r"\{&(s_\w+), \"", (ENGINE_C / "module.c").read_text()))
    assert declared == table
    assert len(table) == len(extensions.engine().ATTRIBUTES)
    for source in [*ENGINE_C.glob("*.c"), DECODE_C]:
        text = source.read_text()
        assert not re.search(r"GetAttrString|SetAttrString|CallMethod\(|_PyObject_GetAttrId", text), source.name


def test_every_constant_the_engine_is_configured_with_is_given() -> None:
    module_c = (ENGINE_C / "module.c").read_text()
    names = set(re.findall(r"\bCI\((\w+)\)", module_c))
    names |= set(re.findall(r"\bCO\(\w+, \"(\w+)\"\)", module_c))
    names |= set(re.findall(r"const_\w+\(consts, \"(\w+)\"", module_c))
    names |= set(re.findall(r"PyDict_GetItemString\(consts, \"(\w+)\"\)", module_c))
    names.discard("var")  # the macros' own parameter
    given = extensions._engine_constants()
    assert names and names - given.keys() == set()
    # the struct fields read at slot offsets (OFF(...)) are fields of the types given
    types = {"EventType": given["Event"], "StateType": given["UserState"], "DeadlineType": given["DeadlineIndex"],
             "LastActiveType": given["LastActiveIndex"]}
    fields = re.findall(r"OFF\(\w+, (\w+), \"(\w+)\"\)", module_c)
    assert fields
    for type_name, field in fields:
        assert field in types[type_name].__slots__ or field in getattr(types[type_name], "__struct_fields__", ()), \
            (type_name, field)
    assert given["Event"] is Event and given["UserState"] is UserState


def test_every_constant_the_decoder_is_configured_with_is_given() -> None:
    decode_c = DECODE_C.read_text()
    names = set(re.findall(r"const_\w+\(consts, \"(\w+)\"", decode_c))
    names |= set(re.findall(r"PyDict_GetItemString\(consts, \"(\w+)\"\)", decode_c))
    given = decoder_constants()
    assert names and names - given.keys() == set()
    fields = re.search(r"FIELD_NAMES\[N_FIELDS\] = \{([^}]*)\}", decode_c)
    assert fields is not None
    assert re.findall(r"\"(\w+)\"", fields.group(1)) == list(Event.__struct_fields__)
    limited = {"event_id", "user_id", "type", "app_id", "device_id"}
    assert set(given["limits"]) == limited


def test_native_off_is_python_everywhere() -> None:
    """processing.native_engine = false: no part of the engine takes the C path."""
    assert extensions.engine(False) is None and extensions.decoder(False) is None
    part = UserPartition(0, StateStore({}), RulesByApp(load_settings(env={})), native=False)
    assert part._c is None
