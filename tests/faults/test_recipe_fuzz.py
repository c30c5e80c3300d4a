"""A seeded recipe fuzzer: every shipped recipe, mutated hundreds of ways (deleted keys, wrong types,
huge, negative, infinite and NaN numbers, long and odd Unicode strings, deep nesting, unknown keys,
bad references, unsafe keys, broken bytes), must either validate or raise RecipeError with short
messages: never another exception, never a traceback from `selfsup validate`.

SELFSUP_FUZZ_SEED picks another seed (the default is fixed, so CI runs are reproducible); a failure
names the seed, the recipe and the mutations that led to it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import cli

from selfsup.plugins import PluginManager
from selfsup.recipe import (
    RecipeError,
    apply_overrides,
    check_components,
    decode_recipe,
    parse_recipe,
    parse_toml,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEED = int(os.environ.get("SELFSUP_FUZZ_SEED", "20240611"))
DATA_MUTATIONS_PER_RECIPE = 12  # x 19 shipped recipes (and at least 200 in all, checked below)
TEXT_MUTATIONS_PER_RECIPE = 3
MAX_LINE = 2600  # a problem line: path (<= 300) + message (<= 2000) + decoration

TABLES = ("data", "augmentations", "backbones", "tasks", "evaluators")
ODD_STRINGS = [
    "", " ", "x" * 100_000, "ü∂漢字🙂", "\u202eevil", "e\u0301", "\x00", "\t\n", "../../etc", "/abs/path",
    "~/home", "a.b", "C:\\win", "\ud800", "NaN", "-1", "[]", "{}", "'\"", "\\",
]
ODD_NUMBERS = [0, -1, -(2**63), 2**63 - 1, 2**64, 10**30, 1e308, -1e308, 1e-320, float("inf"), float("-inf"),
               float("nan"), 0.5, -0.0, 2**31, 2**31 - 1, True, False]


# ----------------------------------------------------------------------------- the mutations


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in ``data``, found iteratively."""
    out, stack = [], [data]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            out.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return out


def _tables(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [data] + [node[key] for node, key in _slots(data) if isinstance(node[key], dict)]


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    """``data[name]`` when it is (still) a table, else an empty one."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _deep(rng: random.Random) -> Any:
    value: Any = rng.choice([1, "x", {}])
    for _ in range(rng.choice([33, 200, 5000])):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _odd_value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(ODD_NUMBERS)
    if kind == 1:
        return rng.choice(ODD_STRINGS)
    if kind == 2:
        return [rng.choice(ODD_NUMBERS) for _ in range(rng.randrange(4))]
    if kind == 3:
        return {rng.choice(ODD_STRINGS[:12]) or "k": rng.choice(ODD_NUMBERS)}
    if kind == 4:
        return _deep(rng)
    return [[rng.random()] * 3] * rng.choice([0, 1, 1000])


def mutate(data: dict[str, Any], rng: random.Random, names: list[str]) -> str:
    """Apply one random mutation to ``data`` in place; returns what it did."""
    slots = _slots(data)
    op = rng.randrange(10)
    if op == 0 and slots:  # delete a key or element
        node, key = rng.choice(slots)
        del node[key]
        return f"delete {key!r}"
    if op == 1 and slots:  # wrong type / odd value anywhere
        node, key = rng.choice(slots)
        node[key] = _odd_value(rng)
        return f"set {key!r} to an odd value"
    if op == 2:  # numbers: huge, negative, non-finite
        numeric = [(n, k) for n, k in slots if isinstance(n[k], (int, float)) and not isinstance(n[k], bool)]
        if numeric:
            node, key = rng.choice(numeric)
            node[key] = rng.choice(ODD_NUMBERS)
            return f"number {key!r} -> {node[key]!r}"
    if op == 3:  # strings: long, unicode, path-like
        strings = [(n, k) for n, k in slots if isinstance(n[k], str)]
        if strings:
            node, key = rng.choice(strings)
            node[key] = rng.choice(ODD_STRINGS)
            return f"string {key!r} -> {node[key][:20]!r}"
    if op == 4:  # unknown key in some table
        table = rng.choice(_tables(data))
        key = rng.choice(["unknown", "lr ", "typo_field", "x" * 5000, "ü", "a.b"])
        table[key] = rng.choice([1, "v", [1], {"a": 1}])
        return f"unknown key {key[:20]!r}"
    if op == 5:  # bad references
        tasks = [t for t in _table(data, "tasks").values() if isinstance(t, dict)]
        if tasks:
            task = rng.choice(tasks)
            field = rng.choice(["data", "backbone", "augment"])
            task[field] = rng.choice(["nope", "", ["nope"], {"role": "nope"}, {"": ""}, 3, ["x"] * 50])
            return f"reference {field} broken"
    if op == 6:  # another component type, a near miss, or one of another kind
        specs = [s for t in TABLES for s in _table(data, t).values() if isinstance(s, dict)]
        if specs:
            spec = rng.choice(specs)
            spec["type"] = rng.choice([*names, "mlpp", "simclrr", "", "x" * 3000, 7])
            return f"type -> {str(spec['type'])[:20]!r}"
    if op == 7:  # rename a component key to something unsafe (references left dangling or updated)
        table = _table(data, rng.choice(TABLES))
        if table:
            old = rng.choice(list(table))
            new = rng.choice(["a.b", "../up", "/abs", "", "ü", "k" * 100, "with space", "ok_key", "9x"])
            table[new] = table.pop(old)
            return f"rename key {old!r} -> {new!r}"
    if op == 8:  # deep nesting somewhere
        table = rng.choice(_tables(data))
        table[rng.choice(["options", "deep", "type"])] = _deep(rng)
        return "deep nesting"
    # a --set override, as the command line would apply it
    parts = ["train", "tasks", "data", "x", "lr", "options", "a b", ""]
    key = ".".join(rng.choice(parts) for _ in range(rng.randrange(1, 5)))
    value = rng.choice(["inf", "nan", "-1", "1e999", "[[[[1]]]]", "{a=1}", "", "'s'", "9223372036854775808", "true"])
    apply_overrides(data, [f"{key}={value}"])
    return f"--set {key}={value}"


# ----------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def shipped():
    registry = PluginManager().registry
    recipes = {name: registry.get("recipe", name).factory() for name in registry.names("recipe")}
    return registry, recipes


def validate_data(data: dict[str, Any], name: str, registry) -> None:
    label = f"fuzzed {name}"
    recipe = parse_recipe(data, label, default_name=name)
    check_components(recipe, registry, label, Path.cwd())


def validate_bytes(raw: bytes, name: str, registry) -> None:
    label = f"fuzzed {name}.toml"
    validate_data(parse_toml(decode_recipe(raw, label), label), name, registry)


def check_outcome(run, what: str, failures: list[str]) -> str:
    try:
        run()
    except RecipeError as err:
        text = str(err)
        long = [line for line in text.splitlines() if len(line) > MAX_LINE]
        if long:
            failures.append(f"{what}: a {len(long[0])}-character message line: {long[0][:200]!r}")
        return "refused"
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")
        return "crashed"
    return "valid"


def mutate_text(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.randrange(6)
    at = rng.randrange(len(raw) + 1)
    if op == 0:
        return raw[:at], "truncated"
    if op == 1:
        return raw[:at] + bytes([rng.choice([0x80, 0xC3, 0xFF, 0xFE, 0xED])]) + raw[at:], "invalid UTF-8 byte"
    if op == 2:
        return raw[:at] + rng.choice([b"[", b"{", b"]", b"\"", b"'''", b"=", b"\n[[", b"#"]) + raw[at:], "stray syntax"
    if op == 3:
        return raw + b"\ndeep = " + b"[" * 5000 + b"]" * 5000 + b"\n", "5000-deep array"
    if op == 4:
        return raw[:at] + "ü🙂\u202e".encode() + raw[at:], "unicode inserted"
    return b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"), "BOM and CRLF"


def test_fuzzed_shipped_recipes_validate_or_raise_recipe_error(shipped):
    registry, recipes = shipped
    rng = random.Random(SEED)
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    count = 0
    names = [n for kind in ("data_source", "backbone", "pretext_task", "augmentation", "evaluator")
             for n in registry.names(kind)]
    for name, text in recipes.items():
        original = tomllib.loads(text)
        for i in range(DATA_MUTATIONS_PER_RECIPE):
            data = copy.deepcopy(original)
            done = []
            for _ in range(rng.randint(1, 3)):
                try:
                    done.append(mutate(data, rng, names))
                except RecipeError:
                    done.append("override refused")  # a bad --set is itself a clean refusal
            what = f"seed {SEED}, {name}, data mutation {i}: {'; '.join(done)}"
            outcome = check_outcome(lambda d=data, n=name: validate_data(d, n, registry), what, failures)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            count += 1
        for i in range(TEXT_MUTATIONS_PER_RECIPE):
            raw, done = mutate_text(text.encode(), rng)
            what = f"seed {SEED}, {name}, text mutation {i}: {done}"
            outcome = check_outcome(lambda r=raw, n=name: validate_bytes(r, n, registry), what, failures)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            count += 1
    assert count >= 200, count
    assert not failures, f"{len(failures)} of {count} mutations escaped as exceptions:\n" + "\n".join(failures[:20])
    assert outcomes.get("refused", 0) > count // 2, outcomes  # the mutations do hit validation


def test_every_shipped_recipe_validates_unmutated(shipped):
    registry, recipes = shipped
    for name, text in recipes.items():
        try:
            validate_bytes(text.encode(), name, registry)
        except RecipeError as err:  # only a missing output of another run (nsp/simcse start from mlm's export)
            assert all("not found" in msg for _, msg in err.problems), (name, err.problems)


# ----------------------------------------------------------------------------- through the CLI


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(data: dict[str, Any]) -> str:
    """A recipe as TOML text: one ``key = value`` line per top-level key, tables inline."""
    return "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in data.items())


def test_fuzzed_recipes_through_selfsup_validate(shipped, tmp_path):
    _, recipes = shipped
    rng = random.Random(SEED + 1)
    original = tomllib.loads(recipes["toy-quickstart"])
    assert tomllib.loads(to_toml(original)) == original  # the writer round-trips
    files = []
    for i in range(5):
        data = copy.deepcopy(original)
        done = []
        while len(done) < 2:
            try:
                done.append(mutate(data, rng, ["mlp", "knn"]))
            except RecipeError:
                continue
        files.append((tmp_path / f"m{i}.toml", to_toml(data).encode("utf-8", "surrogatepass"), "; ".join(done)))
    base = to_toml(original).encode()
    files += [
        (tmp_path / "lr.toml", base.replace(b'"lr" = 0.003', b'"lr" = 1e999'), "lr = 1e999"),
        (tmp_path / "bytes.toml", base[:40] + b"\xff\xfe" + base[40:], "invalid UTF-8"),
        (tmp_path / "deep.toml", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n" + base, "5000-deep array"),
        (tmp_path / "long.toml", base + b'unknown = "' + b"y" * 100_000 + b'"\n', "100 KB string"),
        (tmp_path / "key.toml", base.replace(b'"mlp" = {', b'"/abs/mlp" = {', 1), "absolute backbone key"),
    ]
    for path, raw, what in files:
        path.write_bytes(raw)
        res = cli("validate", str(path), env={"SELFSUP_PLUGINS": "toy"}, cwd=tmp_path)
        assert res.returncode in (0, 2), (what, res.returncode, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, (what, res.stderr[-3000:])
        if path.name in ("lr.toml", "bytes.toml", "deep.toml", "long.toml", "key.toml"):
            assert res.returncode == 2 and res.stderr.startswith("error: "), (what, res.stderr[-2000:])
            assert max(map(len, res.stderr.splitlines())) <= MAX_LINE, what
