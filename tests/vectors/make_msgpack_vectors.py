"""Writes tests/vectors/msgpack.json: the msgpack encoding every SDK must
produce for each value (and decode back). Run it to regenerate after
adding a case; the Python, Go and Rust tests check the file.

A value is described with its type, so every language can build it:
  {"type": "nil"} | {"type": "bool", "value": b} | {"type": "int", "value": n}
  {"type": "float", "value": x} (always float 64) | {"type": "str", "value": s}
  {"type": "bytes", "hex": h} | {"type": "list", "items": [v, ...]}
  {"type": "map", "entries": [[k, v], ...]} (keys are values too; in order)
"""

from __future__ import annotations

import json
import os

import msgpack

CASES = [
    ("nil", {"type": "nil"}),
    ("true", {"type": "bool", "value": True}),
    ("false", {"type": "bool", "value": False}),
    ("int zero", {"type": "int", "value": 0}),
    ("int positive fixint", {"type": "int", "value": 127}),
    ("int uint8", {"type": "int", "value": 128}),
    ("int uint16", {"type": "int", "value": 65535}),
    ("int uint32", {"type": "int", "value": 4294967295}),
    ("int uint64", {"type": "int", "value": 18446744073709551615}),
    ("int negative fixint", {"type": "int", "value": -32}),
    ("int int8", {"type": "int", "value": -33}),
    ("int int16", {"type": "int", "value": -32768}),
    ("int int32", {"type": "int", "value": -2147483648}),
    ("int int64", {"type": "int", "value": -9223372036854775808}),
    ("float", {"type": "float", "value": 1.5}),
    ("float negative", {"type": "float", "value": -0.1}),
    ("float whole", {"type": "float", "value": 3.0}),
    ("str empty", {"type": "str", "value": ""}),
    ("str ascii", {"type": "str", "value": "hello"}),
    ("str utf-8", {"type": "str", "value": "héllo wörld ✓"}),
    ("str 40 bytes (str8)", {"type": "str", "value": "x" * 40}),
    ("str 300 bytes (str16)", {"type": "str", "value": "y" * 300}),
    ("bytes", {"type": "bytes", "hex": "00ff10"}),
    ("bytes empty", {"type": "bytes", "hex": ""}),
    ("bytes 300 (bin16)", {"type": "bytes", "hex": "ab" * 300}),
    ("list empty", {"type": "list", "items": []}),
    ("list mixed", {"type": "list", "items": [{"type": "int", "value": 1}, {"type": "str", "value": "two"},
                                              {"type": "float", "value": 3.5}, {"type": "nil"}]}),
    ("list 20 ints (array16)", {"type": "list", "items": [{"type": "int", "value": i} for i in range(20)]}),
    ("map empty", {"type": "map", "entries": []}),
    ("map str keys", {"type": "map", "entries": [[{"type": "str", "value": "a"}, {"type": "int", "value": 1}],
                                                 [{"type": "str", "value": "b"}, {"type": "bool", "value": True}]]}),
    ("map nested", {"type": "map", "entries": [
        [{"type": "str", "value": "name"}, {"type": "str", "value": "policy"}],
        [{"type": "str", "value": "weights"}, {"type": "list", "items": [{"type": "float", "value": 0.25},
                                                                         {"type": "float", "value": -1.0}]}],
        [{"type": "str", "value": "meta"}, {"type": "map", "entries": [
            [{"type": "str", "value": "step"}, {"type": "int", "value": 42}],
            [{"type": "str", "value": "blob"}, {"type": "bytes", "hex": "0102"}]]}]]}),
]


def build(desc):
    t = desc["type"]
    if t == "nil":
        return None
    if t in ("bool", "int", "float", "str"):
        return desc["value"]
    if t == "bytes":
        return bytes.fromhex(desc["hex"])
    if t == "list":
        return [build(v) for v in desc["items"]]
    if t == "map":
        return {build(k): build(v) for k, v in desc["entries"]}
    raise ValueError(t)


def encode(value) -> bytes:
    """The canonical encoding: smallest int forms, floats as float 64, str
    as str (not bin), bytes as bin, maps in the given order."""
    return msgpack.packb(value, use_bin_type=True, use_single_float=False)


def main() -> None:
    vectors = [{"name": name, "value": desc, "hex": encode(build(desc)).hex()} for name, desc in CASES]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "msgpack.json")
    with open(path, "w") as f:
        json.dump({"format": "msgpack", "vectors": vectors}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
