"""Calls across languages, seen from Python: the shared msgpack vectors,
a Python function exported by name and called by name (arguments and
results through msgpack, as another language sends and reads them),
Python-only values refused with their type named, and names nobody serves
failing at once."""

from __future__ import annotations

import json
import os

import ember
import pytest
from ember import cross_language
from ember._private import serialization

VECTORS = os.path.join(os.path.dirname(__file__), "..", "vectors", "msgpack.json")


def _vector_builder():
    """``build(description)`` from tests/vectors/make_msgpack_vectors.py (one definition)."""
    import importlib.util

    path = os.path.join(os.path.dirname(VECTORS), "make_msgpack_vectors.py")
    spec = importlib.util.spec_from_file_location("make_msgpack_vectors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def test_python_encodes_and_decodes_the_shared_vectors():
    with open(VECTORS) as f:
        vectors = json.load(f)["vectors"]
    assert len(vectors) >= 30
    build = _vector_builder()
    for v in vectors:
        value = build(v["value"])
        ser = serialization.serialize_msgpack(value)
        assert ser.format == serialization.MSGPACK
        assert ser.to_bytes().hex() == v["hex"], v["name"]
        back = serialization.deserialize(serialization.MSGPACK, b"", bytes.fromhex(v["hex"]))
        assert back == value and type(back) is type(value), v["name"]


@ember.remote
def describe(number, items, table):
    return {"sum": number + sum(items), "keys": sorted(table), "blob": table["blob"], "none": None}


@ember.remote
def make_python_only():
    return {1, 2, 3}  # a set: no msgpack form


def test_an_exported_python_function_is_called_by_its_name(cluster):
    cross_language.export(describe, "tests.describe")
    fn = cross_language.python_function("tests.describe")
    out = ember.get(fn.remote(1.5, [1, 2, 3], {"blob": b"\x00\x01", "k": True}), timeout=60)
    assert out == {"sum": 7.5, "keys": ["blob", "k"], "blob": b"\x00\x01", "none": None}
    # Several returns, and a plain function exported without @ember.remote.
    cross_language.export(lambda a, b: (a + b, a * b), "tests.pair")
    s, p = ember.get(cross_language.python_function("tests.pair").options(num_returns=2).remote(3, 4))
    assert (s, p) == (7, 12)


def test_python_only_values_are_refused_with_their_type(cluster):
    class Opaque:
        pass

    with pytest.raises(TypeError, match="Opaque"):
        cross_language.python_function("tests.describe").remote(Opaque())
    # A result another language could not read is the task's error, naming the type.
    cross_language.export(make_python_only, "tests.python_only")
    with pytest.raises(ember.exceptions.RayTaskError, match="set"):
        ember.get(cross_language.python_function("tests.python_only").remote(), timeout=60)


def test_a_name_nobody_serves_fails_at_once_naming_it(cluster):
    for fn, lang in ((cross_language.go_function("nobody.serves.this"), "GO"),
                     (cross_language.rust_function("nobody.serves.this"), "RUST"),
                     (cross_language.python_function("nobody.exported.this"), "Python")):
        with pytest.raises(ember.exceptions.UnknownFunctionError) as info:
            ember.get(fn.remote(1), timeout=10)
        assert "nobody" in str(info.value) and lang in str(info.value), str(info.value)
    with pytest.raises(ValueError):
        cross_language.go_function("x").options(bogus=1)


@ember.remote
class Shop:
    def __init__(self, stock):
        self.stock = stock

    def sell(self, n):
        self.stock -= n
        return {"left": self.stock}


def test_an_exported_python_actor_class_is_created_and_called_by_name(cluster):
    cross_language.export(Shop, "tests.Shop")
    shop = cross_language.python_actor_class("tests.Shop").remote(10)
    assert ember.get([shop.sell.remote(1), shop.sell.remote(2)], timeout=60) == [{"left": 9}, {"left": 7}]
    # A class nobody exported: its calls fail saying so.
    ghost = cross_language.python_actor_class("tests.Nobody").remote()
    with pytest.raises(ember.exceptions.ActorDiedError, match="tests.Nobody"):
        ember.get(ghost.sell.remote(1), timeout=60)
