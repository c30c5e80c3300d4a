"""The data contract between components: the sample keys each one produces and consumes.

Every component states, in its ``register`` call, which keys of the sample dicts it yields or
reads, with their dtype and shape::

    register("digits", build, options=DigitsOptions,
             produces={"image": "float32[1,{size|8},{size|8}]", "label": "int64[]"})
    register("multi_view", build, options=MultiViewOptions,
             consumes={"{key}": "float32[C,H,W]"}, produces={"views": "float32[{views},C,{size},{size}]"})
    register("small_cnn", build, options=SmallCNNOptions, consumes={"image": "float32[{in_channels},H,W]"})
    register("simclr", build, options=SimCLROptions,
             consumes={"views": "float32[2,C,H,W]"}, feeds={"image": "float32[C,H,W]"})

Recipe validation (:func:`check_contract`) follows the keys from each task's data source through
its augmentations to the task and its backbones (and from each evaluator's data to the evaluator
and its backbones) and reports what does not fit, before anything is built. The conformance suites
(:mod:`selfsup.testing`) check the declarations against the samples the components really give.

Spec language
-------------
A declaration is a dict ``{key: type}``.

**Keys** (the dict's keys):

* ``image``: a sample key, always there (produced) or required (consumed).
* ``label?``: optional. Consumed: read when present. Produced: present for some data or options only
  (``image_folder`` has labels only with class sub-folders); validation then cannot tell, so it
  accepts it where the key is required.
* ``sentence_starts if sentences``: present exactly when the option ``sentences`` is set (not
  ``None``, ``False`` or empty; ``0`` is set); ``... if not window``: exactly when it is not set.
* ``{key}``: the key named by the (string) option ``key``; ``{out_key|key}``: option ``out_key``, or
  option ``key`` when ``out_key`` is ``None``. An entry whose key option is ``None`` is left out.

**Types** (the dict's values): ``dtype`` (any shape) or ``dtype[dims]`` (a tensor of that shape;
``dtype[]`` is 0-dim: a 0-dim tensor or a Python number).

* dtypes: ``float64 float32 float16 bfloat16 int64 int32 int16 uint8 bool str any``, and the
  families ``float`` (any floating dtype) and ``int`` (any integer dtype). Python numbers match
  their family (an ``int`` label is ``int64[]``), ``str`` is a Python string (no shape), ``any``
  is any value.
* dims, comma-separated: ``8`` a fixed size; ``C``, ``H``, ``W``, ``T``, ``S``, ... a named size:
  every use of one name within one component is the same size, and names unify where keys flow
  from one component to the next (``C`` bound to 1 by the data source must be 1 in the backbone);
  ``_`` any size; ``*`` (first only) any number of leading dims; ``{size}`` an integer option's
  value, ``{size|8}`` with 8 when the option is ``None``, ``{window+1}``/``{n-1}`` with an offset
  (an option that is ``None`` with no default is ``_``); ``{digits.size}`` reads a key of a table
  option (as do keys and conditions).
* ``-`` (an augmentation's ``produces`` only): the augmentation removes the key.

**What each kind declares**

* data sources: ``produces``. The core adds ``index: int64[]`` to samples of map-style sources
  (unless the source declares it), so the flow starts with ``index?``.
* augmentations: ``consumes`` (checked against the keys at that point of the pipeline) and
  ``produces``. Keys not in ``produces`` pass through unchanged (an in-place edit that keeps dtype
  and shape declares nothing); a produced key replaces or adds a key, its named dims bound by what
  the augmentation consumed (``views`` carries the image's ``C``); ``key?`` changes a key where it is
  present and never adds it (fields that follow an edit); ``-`` removes a key.
* pretext tasks: ``consumes``: the sample keys ``forward`` and ``collate`` read (keys a collate
  makes, such as ``attention_mask``, are not sample keys). Optional ``feeds``: what the task hands
  its backbone(s), written as the keys the backbone's ``embed`` reads (a task that calls
  ``backbone(x)`` on a tensor describes ``x`` under that key). Without ``feeds`` the backbone
  reads the task's samples, so its ``consumes`` are checked against them.
* backbones: ``consumes``: what ``embed`` (and ``forward`` on a batch) reads.
* evaluators: ``consumes``; their backbones' ``consumes`` are checked against the evaluator's data.
* feedback components (``[rounds.feedback]``): ``consumes`` (checked, with their backbone's, against
  their data) and ``produces``: the fields they add to the samples of their data, which the tasks on
  that data see as optional keys (round 0 trains before the first feedback).

A component that declares nothing is *undeclared*: nothing is checked across it (the flow after
an undeclared data source or augmentation is unknown), and ``selfsup describe`` warns. This module
imports no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

#: Concrete dtype names.
DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "uint8", "bool", "str", "any")
#: Dtype families: a family matches each of its members.
FAMILIES = {
    "float": frozenset({"float64", "float32", "float16", "bfloat16"}),
    "int": frozenset({"int64", "int32", "int16", "uint8"}),
}
#: The type of a key an augmentation removes.
REMOVED = "-"
#: The key the core adds to samples of map-style sources.
INDEX_KEY = "index"
#: A dim of any size.
ANY = "_"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = rf"{_NAME}(?:\.{_NAME})*"  # an option, or a key inside a table option: digits.size
_REF = re.compile(rf"^\{{\s*({_PATH})\s*(?:\|\s*({_PATH}|\d+)\s*)?(?:([+-])\s*(\d+)\s*)?\}}$")
_KEY = re.compile(
    rf"^(?P<key>[A-Za-z_][A-Za-z0-9_.-]*|\{{[^}}]*\}})\s*(?P<optional>\?)?"
    rf"(?:\s+if\s+(?P<negate>not\s+)?(?P<condition>{_PATH}))?$"
)
_TYPE = re.compile(r"^(?P<dtype>[a-z][a-z0-9]*)\s*(?:\[(?P<dims>[^\]]*)\])?$")


class ContractError(ValueError):
    """A declaration does not follow the spec language (raised when a component registers)."""


# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Ref:
    """``{option}``, ``{option|fallback}`` (an option name or an int), ``{option+k}``/``{option-k}``."""

    option: str
    fallback: str | int | None = None
    offset: int = 0

    @classmethod
    def parse(cls, text: str) -> Ref:
        m = _REF.match(text.strip())
        if m is None:
            raise ContractError(f"{text!r} is not an option reference like '{{size}}', '{{size|8}}' or '{{window+1}}'")
        name, fallback, sign, amount = m.groups()
        if fallback is not None and fallback.isdigit():
            fallback = int(fallback)
        offset = 0 if amount is None else int(amount) * (-1 if sign == "-" else 1)
        return cls(name, fallback, offset)

    def options(self) -> list[str]:
        """The top-level options it reads (``digits`` for ``{digits.size}``)."""
        names = [self.option] + ([self.fallback] if isinstance(self.fallback, str) else [])
        return [n.split(".")[0] for n in names]

    def resolve(self, options: Any) -> Any:
        value = option_value(options, self.option)
        if value is None and self.fallback is not None:
            value = self.fallback if isinstance(self.fallback, int) else option_value(options, self.fallback)
        if self.offset and _is_int(value):
            value += self.offset
        return value

    def __str__(self) -> str:
        text = self.option
        if self.fallback is not None:
            text += f"|{self.fallback}"
        if self.offset:
            text += f"{self.offset:+d}"
        return "{" + text + "}"


Dim = int | str | Ref  # a size, a name ("_" = any), or an option's value


@dataclass(frozen=True)
class TypeSpec:
    """``dtype[dims]``; ``dims`` is ``None`` for any shape; ``leading`` is a ``*`` before the dims."""

    dtype: str
    dims: tuple[Dim, ...] | None = None
    leading: bool = False

    @classmethod
    def parse(cls, text: str) -> TypeSpec:
        m = _TYPE.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ContractError(f"{text!r} is not a type like 'float32[C,H,W]', 'int64[]' or 'str'")
        dtype, dims_text = m.group("dtype"), m.group("dims")
        if dtype not in DTYPES and dtype not in FAMILIES:
            raise ContractError(f"unknown dtype {dtype!r} in {text!r}; known: {', '.join([*DTYPES, *FAMILIES])}")
        if dims_text is None:
            return cls(dtype)
        if dtype == "str":
            raise ContractError(f"{text!r}: a str has no shape")
        dims: list[Dim] = []
        leading = False
        parts = [p.strip() for p in dims_text.split(",")] if dims_text.strip() else []
        for i, part in enumerate(parts):
            if part == "*":
                if i:
                    raise ContractError(f"{text!r}: '*' (any leading dims) may only come first")
                leading = True
            elif part.isdigit():
                dims.append(int(part))
            elif part.startswith("{"):
                dims.append(Ref.parse(part))
            elif re.fullmatch(_NAME, part):
                dims.append(part)
            else:
                raise ContractError(f"{text!r}: dim {part!r} is not a size, a name, '_', '*' or an option "
                                    "like '{size}'")
        return cls(dtype, tuple(dims), leading)

    def refs(self) -> list[Ref]:
        return [d for d in self.dims or () if isinstance(d, Ref)]

    def resolve(self, options: Any) -> TypeSpec:
        """Option references replaced by their values (``_`` where the value is not an int)."""
        if not self.refs():
            return self
        dims: list[Dim] = []
        for d in self.dims or ():
            value = d.resolve(options) if isinstance(d, Ref) else d
            dims.append(value if _is_int(value) or not isinstance(d, Ref) else ANY)
        return TypeSpec(self.dtype, tuple(dims), self.leading)

    def __str__(self) -> str:
        if self.dims is None:
            return self.dtype
        return f"{self.dtype}[{','.join((['*'] if self.leading else []) + [str(d) for d in self.dims])}]"


@dataclass(frozen=True)
class KeySpec:
    """One declared key: its name (or the option naming it), its type (``None``: removed), whether
    it is optional, and the option that makes it present (``condition``, ``negate``)."""

    key: str | Ref
    type: TypeSpec | None
    optional: bool = False
    condition: str | None = None
    negate: bool = False

    @classmethod
    def parse(cls, key: str, value: str | None, *, allow_removed: bool = False) -> KeySpec:
        if not isinstance(key, str):
            raise ContractError(f"key {key!r} is not a string")
        m = _KEY.match(key.strip())
        if m is None:
            raise ContractError(f"{key!r} is not a key like 'image', 'label?', '{{key}}' or 'document_ids if window'")
        name: str | Ref = m.group("key")
        if name.startswith("{"):
            name = Ref.parse(name)
            if name.offset:
                raise ContractError(f"{key!r}: a key option takes no offset")
        if value is None or value == REMOVED:
            if not allow_removed:
                raise ContractError(f"{key!r}: '-' (removed) is only for an augmentation's produces")
            spec = None
        else:
            spec = TypeSpec.parse(value)
        return cls(name, spec, bool(m.group("optional")), m.group("condition"), bool(m.group("negate")))

    def options(self) -> list[str]:
        names = self.key.options() if isinstance(self.key, Ref) else []
        names += [self.condition.split(".")[0]] if self.condition else []
        return names + [o for r in (self.type.refs() if self.type else []) for o in r.options()]

    def text(self) -> str:
        """The key as declared (``label?``, ``{key}``, ``document_ids if window``)."""
        text = str(self.key) + ("?" if self.optional else "")
        if self.condition:
            text += f" if {'not ' if self.negate else ''}{self.condition}"
        return text


@dataclass(frozen=True)
class ResolvedKey:
    """A declared key for given options: its name, type (``None``: removed) and optionality."""

    key: str
    type: TypeSpec | None
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.key}{'?' if self.optional else ''}: {self.type if self.type is not None else REMOVED}"


@dataclass(frozen=True)
class Keys:
    """A parsed declaration (``produces``, ``consumes`` or ``feeds``)."""

    entries: tuple[KeySpec, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, str | None], *, options: type | None = None, allow_removed: bool = False) -> Keys:
        """Parse ``{key: type}``; every option referenced must be a field of ``options`` (a pydantic
        model) when it is given. Raises :class:`ContractError`."""
        if not isinstance(raw, Mapping):
            raise ContractError(f"expected a dict of key -> type, got {type(raw).__name__}")
        fields = set(getattr(options, "model_fields", {}) or {}) if options is not None else None
        entries, seen = [], set()
        for key, value in raw.items():
            entry = KeySpec.parse(key, value, allow_removed=allow_removed)
            name = str(entry.key)
            if name in seen and entry.condition is None:
                raise ContractError(f"key {name!r} is declared twice")
            seen.add(name)
            if fields is not None:
                for option in entry.options():
                    if option not in fields:
                        raise ContractError(f"{key!r}: {value!r} refers to option {option!r}, which the options model "
                                            f"{getattr(options, '__name__', '')} does not have")
            entries.append(entry)
        return cls(tuple(entries))

    def as_dict(self) -> dict[str, str]:
        """The declaration as written (normalised): ``{"label?": "int64[]"}``."""
        return {e.text(): str(e.type) if e.type is not None else REMOVED for e in self.entries}

    def resolve(self, options: Any) -> list[ResolvedKey]:
        """The keys for these options: option-named keys and conditions evaluated, refs replaced."""
        out = []
        for e in self.entries:
            if e.condition is not None and _truthy(option_value(options, e.condition)) == e.negate:
                continue
            name = e.key.resolve(options) if isinstance(e.key, Ref) else e.key
            if name is None:
                continue
            out.append(ResolvedKey(str(name), e.type.resolve(options) if e.type is not None else None, e.optional))
        return out

    def __bool__(self) -> bool:
        return bool(self.entries)


def option_value(options: Any, path: str) -> Any:
    """The value of option ``path`` (``size``, or ``digits.size`` inside a table option); ``None`` if unset."""
    value = options
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return None
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _truthy(value: Any) -> bool:
    """Whether an option is *set*: not ``None``, ``False`` or empty (``0`` is set: a column number)."""
    if value is None or value is False:
        return False
    return not (isinstance(value, (str, list, tuple, dict, set)) and len(value) == 0)


# ------------------------------------------------------------------------------------------ unification


@dataclass(frozen=True)
class Var:
    """A named dim of one component in one check."""

    scope: int
    name: str


Term = int | Var | str  # a size, a variable, or ANY


class Unifier:
    """Union-find over named dims and sizes: ``unify`` fails only when two different sizes meet."""

    def __init__(self) -> None:
        self.parent: dict[Var, Term] = {}

    def find(self, term: Term) -> Term:
        while isinstance(term, Var) and term in self.parent:
            term = self.parent[term]
        return term

    def unify(self, a: Term, b: Term) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == ANY or rb == ANY or ra == rb:
            return True
        if isinstance(ra, int) and isinstance(rb, int):
            return False
        if isinstance(ra, Var):
            self.parent[ra] = rb
        else:
            self.parent[rb] = ra  # type: ignore[index]
        return True

    def show(self, term: Term) -> str:
        t = self.find(term)
        return t.name if isinstance(t, Var) else str(t)


@dataclass(frozen=True)
class Item:
    """A key as it flows: dtype, dims as terms (``None``: any shape), and whether it may be absent."""

    dtype: str
    dims: tuple[Term, ...] | None
    leading: bool = False
    optional: bool = False

    def shape(self, u: Unifier) -> str:
        return "[" + ",".join((["*"] if self.leading else []) + [u.show(d) for d in self.dims or ()]) + "]"

    def text(self, u: Unifier) -> str:
        return self.dtype if self.dims is None else self.dtype + self.shape(u)


def _terms(spec: TypeSpec, scope: int) -> tuple[Term, ...] | None:
    if spec.dims is None:
        return None
    return tuple(d if isinstance(d, int) else ANY if d == ANY or isinstance(d, Ref) else Var(scope, d)
                 for d in spec.dims)


def _item(spec: TypeSpec, scope: int, optional: bool = False) -> Item:
    return Item(spec.dtype, _terms(spec, scope), spec.leading, optional)


def dtype_fits(have: str, want: str) -> bool:
    """Whether a value of dtype ``have`` satisfies ``want`` (families match their members both ways:
    a generic producer cannot be shown wrong)."""
    if "any" in (have, want) or have == want:
        return True
    return (want in FAMILIES and have in FAMILIES[want]) or (have in FAMILIES and want in FAMILIES[have])


def _fit(u: Unifier, have: Item, want: Item) -> str | None:
    """Unify ``have`` with ``want``; the reason when they do not fit (bindings then undone)."""
    if not dtype_fits(have.dtype, want.dtype):
        return f"dtype {have.dtype}, not {want.dtype}"
    if have.dims is None or want.dims is None:
        return None
    hd, wd = list(have.dims), list(want.dims)
    if not have.leading and not want.leading and len(hd) != len(wd):
        return f"{len(hd)} dims, not {len(wd)}"
    if not have.leading and want.leading and len(hd) < len(wd):
        return f"{len(hd)} dims, not at least {len(wd)}"
    if have.leading and not want.leading and len(hd) > len(wd):
        return f"at least {len(hd)} dims, not {len(wd)}"
    saved = dict(u.parent)
    shown = want.shape(u)
    for h, w in zip(reversed(hd), reversed(wd)):
        if not u.unify(h, w):
            u.parent = saved
            return f"shape {have.shape(u)} does not fit {shown}"
    return None


# ------------------------------------------------------------------------------------------ value checks


def value_type(value: Any) -> tuple[str, tuple[int, ...] | None]:
    """``(dtype, shape)`` of a sample value, by duck typing (tensors and arrays have ``dtype`` and
    ``shape``); Python numbers give their family and ``()``, strings ``("str", None)``."""
    if isinstance(value, bool):
        return "bool", ()
    if isinstance(value, int):
        return "int", ()
    if isinstance(value, float):
        return "float", ()
    if isinstance(value, str):
        return "str", None
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is not None and shape is not None:
        name = getattr(dtype, "name", None) or str(dtype).rpartition(".")[2]
        return ("bool" if name == "bool_" else name), tuple(int(s) for s in shape)
    return type(value).__name__, None


def _value_item(value: Any) -> Item:
    dtype, shape = value_type(value)
    return Item(dtype, shape)


def _value_fits(u: Unifier, value: Any, spec: TypeSpec, scope: int) -> str | None:
    have = _value_item(value)
    if spec.dtype not in ("any", "str") and have.dims is None:
        return f"a {have.dtype}, not a {spec}"
    if spec.dtype == "str" and have.dtype != "str":
        return f"{have.text(u)}, not a str"
    return _fit(u, have, _item(spec, scope))


def check_sample(keys: Keys, options: Any, sample: Mapping[str, Any], *, exhaustive: bool = False,
                 ignore: Iterable[str] = (INDEX_KEY,)) -> list[str]:
    """Problems of ``sample`` against a declaration (resolved with ``options``): a required key
    missing, a dtype or shape that does not fit (named dims unify within the sample); with
    ``exhaustive``, also keys present but not declared (except ``ignore``)."""
    u, problems = Unifier(), []
    declared = keys.resolve(options)
    for entry in declared:
        if entry.type is None:
            continue
        if entry.key not in sample:
            if not entry.optional:
                problems.append(f"missing {entry.key!r} (declared '{entry}'); the sample has {_listing(sample)}")
            continue
        reason = _value_fits(u, sample[entry.key], entry.type, 0)
        if reason:
            problems.append(f"{entry.key!r} is {_value_item(sample[entry.key]).text(u)}, declared '{entry}' ({reason})")
    if exhaustive:
        names = {e.key for e in declared} | set(ignore)
        problems += [f"{k!r} ({_value_item(v).text(u)}) is not declared" for k, v in sample.items() if k not in names]
    return problems


def check_augmentation(consumes: Keys | None, produces: Keys | None, options: Any,
                       before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Problems of one augmentation call against its declaration: consumed keys must fit ``before``;
    in ``after``, produced keys are present and fit (named dims shared with the consumed ones),
    removed keys are gone, and every other key is either new-and-declared or unchanged in dtype and
    shape."""
    u, problems = Unifier(), []
    for entry in (consumes or Keys()).resolve(options):
        if entry.key in before and entry.type is not None:
            reason = _value_fits(u, before[entry.key], entry.type, 0)
            if reason:
                problems.append(f"input {entry.key!r} is {_value_item(before[entry.key]).text(u)}, "
                                f"declared consumed '{entry}' ({reason})")
        elif not entry.optional:
            problems.append(f"input sample has no {entry.key!r} (declared consumed '{entry}'): give the suite data "
                            "that has it")
    produced = {e.key: e for e in (produces or Keys()).resolve(options)}
    for key, entry in produced.items():
        if entry.type is None:
            if key in after:
                problems.append(f"{key!r} is declared removed ('-') but the output has it")
        elif key not in after:
            if not entry.optional:
                problems.append(f"output has no {key!r} (declared produced '{entry}'); it has {_listing(after)}")
        else:
            reason = _value_fits(u, after[key], entry.type, 0)
            if reason:
                problems.append(f"output {key!r} is {_value_item(after[key]).text(u)}, declared produced '{entry}' "
                                f"({reason})")
    for key, value in after.items():
        if key in produced:
            continue
        if key not in before:
            problems.append(f"output key {key!r} ({_value_item(value).text(u)}) is not declared in produces")
            continue
        old, new = value_type(before[key]), value_type(value)
        if old != new:
            problems.append(f"{key!r} changed from {_value_item(before[key]).text(u)} to {_value_item(value).text(u)} "
                            f"but produces does not declare it")
    problems += [f"{key!r} was removed but produces does not declare it ('{key}': '-')"
                 for key in before if key not in after and key not in produced]
    return problems


def consumed_names(keys: Keys, options: Any) -> set[str]:
    """The sample keys a declaration reads (for building a batch of exactly those keys)."""
    return {e.key for e in keys.resolve(options)}


def _listing(sample: Mapping[str, Any]) -> str:
    return ", ".join(sample) if sample else "no keys"


# ------------------------------------------------------------------------------------------ recipes


@dataclass
class _Flow:
    """The keys flowing to a consumer, and how to name where they come from."""

    items: dict[str, Item]
    source: str  # "data 'train' (digits) through augmentations []"
    verb: str = "yields"
    implicit: set[str] = field(default_factory=set)  # keys the core adds (not listed in messages)

    def listing(self) -> str:
        keys = [f"{k}{'?' if v.optional else ''}" for k, v in self.items.items() if k not in self.implicit]
        return ", ".join(keys) if keys else "no keys"


def _fallback_options(model: Any, raw: Mapping[str, Any]) -> Any:
    """Options for resolving references when ``raw`` cannot be validated: defaults, then ``raw``."""
    values: dict[str, Any] = {}
    for name, info in getattr(model, "model_fields", {}).items():
        try:
            values[name] = info.get_default(call_default_factory=True)
        except Exception:  # noqa: BLE001 - a default factory we cannot call: leave it unknown
            values[name] = None
    values.update(raw)
    return SimpleNamespace(**values)


class _Checker:
    def __init__(self, recipe: Any, registry: Any, options: Mapping[str, Any] | None):
        self.recipe, self.registry, self.options = recipe, registry, options
        self.u = Unifier()
        self.scopes = 0
        self.problems: list[tuple[str, str]] = []

    def scope(self) -> int:
        self.scopes += 1
        return self.scopes

    def component(self, kind: str, path: str, spec: Any) -> tuple[Any, Any] | None:
        """``(component, options)`` of a recipe entry, or ``None`` when its name or options did not resolve."""
        comp = self.registry.get(kind, spec.type)
        if comp is None:
            return None
        if self.options is not None:
            opts = self.options.get(path)
            return None if opts is None else (comp, opts)
        try:
            return comp, comp.options.model_validate(spec.options)
        except Exception:  # noqa: BLE001 - not validated here (paths need the recipe's directory)
            return comp, _fallback_options(comp.options, spec.options)

    def fields(self, data_key: str) -> dict[str, Item]:
        """The keys ``[rounds.feedback]`` adds to the samples of ``data_key`` (its ``produces``), as
        optional keys: round 0 trains before the first feedback."""
        rounds = getattr(self.recipe, "rounds", None)
        if rounds is None or rounds.feedback.data != data_key:
            return {}
        found = self.component("feedback", "rounds.feedback", rounds.feedback)
        if found is None or found[0].produces is None:
            return {}
        scope = self.scope()
        return {e.key: _item(e.type, scope, optional=True) for e in found[0].produces.resolve(found[1])
                if e.type is not None}

    def flow(self, data_key: str | None, augment: list[str], path: str, role: str = "data",
             with_fields: bool = False) -> _Flow | None:
        """The keys after ``data_key`` and ``augment``; augmentation problems reported at ``path``.
        ``None`` when the flow is unknown (an undeclared or unresolved component). ``with_fields``:
        with the keys a ``[rounds.feedback]`` adds to that data (what tasks see)."""
        r = self.recipe
        if data_key is None or data_key not in r.data:
            return None
        found = self.component("data_source", f"data.{data_key}", r.data[data_key])
        for _ in range(8):  # a source that wraps another (subset) yields the inner source's keys
            if found is None:
                break
            inner = getattr(found[1], "data", None)
            if not (getattr(found[1], "wraps_data", False) and isinstance(inner, dict) and "type" in inner):
                break
            comp = self.registry.get("data_source", inner["type"])
            if comp is None:
                return None
            try:
                found = comp, comp.options.model_validate(inner.get("options") or {})
            except Exception:  # noqa: BLE001 - reported when the wrapping source is built
                found = comp, _fallback_options(comp.options, inner.get("options") or {})
        if found is None or found[0].produces is None:
            return None
        comp, opts = found
        scope = self.scope()
        items: dict[str, Item] = {}
        implicit: set[str] = set()
        for e in comp.produces.resolve(opts):
            if e.type is not None:
                items[e.key] = _item(e.type, scope, e.optional)
        if INDEX_KEY not in items:
            items[INDEX_KEY] = Item("int64", (), optional=True)
            implicit.add(INDEX_KEY)
        if with_fields:
            items.update(self.fields(data_key))
        done: list[str] = []

        def source() -> str:
            return f"{role} {data_key!r} ({comp.name}) through augmentations {done!r}"

        for i, aug_key in enumerate(augment):
            if aug_key not in r.augmentations:
                return None
            found_aug = self.component("augmentation", f"augmentations.{aug_key}", r.augmentations[aug_key])
            if found_aug is None:
                return None
            aug, aug_opts = found_aug
            if aug.consumes is None and aug.produces is None:
                return None
            aug_scope = self.scope()
            who = f"augmentation {aug_key!r} ({aug.name})"
            current = _Flow(items, source(), implicit=implicit)
            self.consume(f"{path}.augment[{i}]", who, aug.consumes, aug_opts, aug_scope, current)
            for e in (aug.produces or Keys()).resolve(aug_opts):
                if e.type is None:
                    items.pop(e.key, None)
                elif not e.optional:
                    items[e.key] = _item(e.type, aug_scope)
                    implicit.discard(e.key)
                elif e.key in items:  # "key?": changed where present, never added
                    items[e.key] = _item(e.type, aug_scope, items[e.key].optional)
            done.append(aug_key)
        return _Flow(items, source(), implicit=implicit)

    def consume(self, path: str, who: str, keys: Keys | None, opts: Any, scope: int, flow: _Flow) -> None:
        if keys is None:
            return
        for e in keys.resolve(opts):
            if e.type is None:
                continue
            want = _item(e.type, scope)
            have = flow.items.get(e.key)
            if have is None:
                if not e.optional:
                    message = f"{who} reads '{e.key}: {e.type}' but {flow.source} {flow.verb} {flow.listing()}"
                    self.problems.append((path, message))
                continue
            reason = _fit(self.u, have, want)
            if reason:
                message = (f"{who} reads '{e.key}: {want.text(self.u)}' but {flow.source} {flow.verb} "
                           f"'{e.key}: {have.text(self.u)}' ({reason})")
                self.problems.append((path, message))

    def backbones(self, ref: Any) -> list[tuple[str, Any, Any]]:
        """``[(recipe key, component, options)]`` of a ``backbone`` field (str or {role: key})."""
        r = self.recipe
        if ref is None:
            keys = list(r.backbones) if len(r.backbones) == 1 else []
        else:
            keys = [ref] if isinstance(ref, str) else list(ref.values())
        out = []
        for key in keys:
            if key in r.backbones:
                found = self.component("backbone", f"backbones.{key}", r.backbones[key])
                if found is not None:
                    out.append((key, *found))
        return out

    def task(self, name: str, spec: Any) -> None:
        path = f"tasks.{name}"
        flow = self.flow(spec.data, list(spec.augment), path, with_fields=True)
        if flow is None:
            return
        found = self.component("pretext_task", path, spec)
        if found is None:
            return
        task, opts = found
        scope = self.scope()
        self.consume(path, f"pretext task {name!r} ({task.name})", task.consumes, opts, scope, flow)
        if task.feeds is not None:
            items = {e.key: _item(e.type, scope, e.optional) for e in task.feeds.resolve(opts) if e.type is not None}
            flow = _Flow(items, f"pretext task {name!r} ({task.name})", verb="feeds it")
        for key, comp, b_opts in self.backbones(spec.backbone):
            self.consume(path, f"backbone {key!r} ({comp.name})", comp.consumes, b_opts, self.scope(), flow)

    def evaluator(self, name: str, spec: Any) -> None:
        path = f"evaluators.{name}"
        found = self.component("evaluator", path, spec)
        sources = [("data", spec.data)]
        if spec.fit_data not in (None, spec.data):
            sources.append(("fit_data", spec.fit_data))
        for role, data_key in sources:
            flow = self.flow(data_key, list(spec.augment), path, role=role)
            if flow is None:
                continue
            if found is not None:
                ev, opts = found
                self.consume(path, f"evaluator {name!r} ({ev.name})", ev.consumes, opts, self.scope(), flow)
            for key, comp, b_opts in self.backbones(spec.backbone):
                self.consume(path, f"backbone {key!r} ({comp.name})", comp.consumes, b_opts, self.scope(), flow)


    def feedback(self, spec: Any) -> None:
        """``[rounds.feedback]``: its data through its augmentations must give what it and its backbone read."""
        path = "rounds.feedback"
        flow = self.flow(spec.data, list(spec.augment), path)
        if flow is None:
            return
        found = self.component("feedback", path, spec)
        if found is not None:
            comp, opts = found
            self.consume(path, f"feedback {comp.name!r}", comp.consumes, opts, self.scope(), flow)
        for key, comp, b_opts in self.backbones(spec.backbone):
            self.consume(path, f"backbone {key!r} ({comp.name})", comp.consumes, b_opts, self.scope(), flow)


def check_contract(recipe: Any, registry: Any, options: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(recipe field path, message)`` for every place where keys do not flow as declared: for each
    task, its data through its augmentations must give what each augmentation, the task and its
    backbones read (or, with ``feeds``, the backbones read what the task feeds them); for each
    evaluator, its data and fit data through its augmentations must give what it and its
    backbones read. ``options`` are the parsed options by recipe path (``"tasks.simclr"``, as
    :func:`selfsup.recipe.check_components` returns them); without it they are parsed here.
    Unknown names, unresolved references, options that failed to validate and undeclared
    components are skipped (reported elsewhere, or not checkable)."""
    checker = _Checker(recipe, registry, options)
    for name, spec in recipe.tasks.items():
        checker.task(name, spec)
    for name, spec in recipe.evaluators.items():
        checker.evaluator(name, spec)
    if getattr(recipe, "rounds", None) is not None:
        checker.feedback(recipe.rounds.feedback)
    seen: set[tuple[str, str]] = set()
    return [p for p in checker.problems if not (p in seen or seen.add(p))]
