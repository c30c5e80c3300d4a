"""What plugins registered: one :class:`Component` per name and kind, with the plugin that gave it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from selfsup.contract import ContractError, Keys

Kind = Literal["data_source", "augmentation", "pretext_task", "backbone", "evaluator", "head", "feedback", "recipe"]

KINDS: tuple[Kind, ...] = (
    "data_source",
    "augmentation",
    "pretext_task",
    "backbone",
    "evaluator",
    "head",
    "feedback",
    "recipe",
)

#: The hook that registers each kind.
HOOK_OF_KIND: dict[Kind, str] = {
    "data_source": "register_data_sources",
    "augmentation": "register_augmentations",
    "pretext_task": "register_pretext_tasks",
    "backbone": "register_backbones",
    "evaluator": "register_evaluators",
    "head": "register_heads",
    "feedback": "register_feedback",
    "recipe": "register_recipes",
}

#: How each kind reads in messages.
LABEL_OF_KIND: dict[Kind, str] = {
    "data_source": "data source",
    "augmentation": "augmentation",
    "pretext_task": "pretext task",
    "backbone": "backbone",
    "evaluator": "evaluator",
    "head": "head",
    "feedback": "feedback component",
    "recipe": "recipe",
}


#: The recipe table of each kind: the one vocabulary users type (``selfsup describe tasks``).
TABLE_OF_KIND: dict[Kind, str] = {
    "data_source": "data",
    "augmentation": "augmentations",
    "pretext_task": "tasks",
    "backbone": "backbones",
    "evaluator": "evaluators",
    "head": "heads",
    "feedback": "feedback",  # [rounds.feedback]
    "recipe": "recipes",
}

#: The sample-key declarations (``register`` keywords) each kind may make; see :mod:`selfsup.contract`.
DECLARATIONS_OF_KIND: dict[Kind, tuple[str, ...]] = {
    "data_source": ("produces",),
    "augmentation": ("consumes", "produces"),
    "pretext_task": ("consumes", "feeds"),
    "backbone": ("consumes",),
    "evaluator": ("consumes",),
    "head": ("consumes",),
    "feedback": ("consumes", "produces"),  # what it reads of its data; the fields it adds to the samples
    "recipe": (),
}


def kind_named(text: str) -> Kind | None:
    """The kind a user means by ``text``: a recipe table name (``data``, ``tasks``), its singular
    (``task``), or an internal name (``pretext_task``, ``data_source``, plural too); ``None`` if none."""
    word = text.strip().lower().replace("-", "_").replace(" ", "_")
    for kind, table in TABLE_OF_KIND.items():
        if word in (kind, f"{kind}s", table, table.rstrip("s")):
            return kind
    return {"data_sources": "data_source", "datasource": "data_source", "datasources": "data_source",
            "pretext_tasks": "pretext_task", "pretexts": "pretext_task"}.get(word)


class NoOptions(BaseModel):
    """Options model of a component that takes none: any key is an error."""

    model_config = ConfigDict(extra="forbid")


class RegistrationError(Exception):
    """A plugin registered something invalid (duplicate name, bad options model, ...)."""


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that failed to load, or whose hook raised: explains an unknown name in a recipe."""

    plugin: str
    distribution: str | None
    stage: str  # "import", "compatibility" or the hook's name
    message: str
    loaded: bool  # the plugin is registered (its failure is in one hook, or an unknown hook name)


@dataclass(frozen=True)
class Component:
    """One registered component."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type[BaseModel]
    plugin: str
    distribution: str | None
    modality: str | None = None
    summary: str = ""
    produces: Keys | None = None  # sample keys it yields or changes (data sources, augmentations)
    consumes: Keys | None = None  # sample keys it reads (augmentations, tasks, backbones, evaluators)
    feeds: Keys | None = None  # tasks: what they hand their backbones (default: the samples themselves)
    decoder: Callable[..., Any] | None = None  # data sources: (options, context) -> Decoder, for serving

    @property
    def declared(self) -> bool:
        """Whether it declares its sample keys (a component that does not is not contract-checked)."""
        wanted = DECLARATIONS_OF_KIND[self.kind]
        return not wanted or any(getattr(self, name) is not None for name in wanted if name != "feeds")

    def parse_options(self, raw: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        """Validate ``raw`` against this component's options model (raises pydantic's error)."""
        if isinstance(raw, self.options):
            return raw
        return self.options.model_validate(raw or {})

    def build(self, options: dict[str, Any] | BaseModel | None, context: Any) -> Any:
        """Validate options and call the factory."""
        return self.factory(self.parse_options(options), context)


def lazy(path: str) -> Callable[[Any, Any], Any]:
    """A factory that imports ``"package.module:builder"`` only when called, then returns
    ``builder(options, context)``: keeps torch and friends out of plugin loading."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"lazy() takes 'module:attribute', got {path!r}")

    def factory(options: Any, context: Any) -> Any:
        return getattr(import_module(module), attr)(options, context)

    factory.__qualname__ = f"lazy({path!r})"
    factory.lazy_target = path  # type: ignore[attr-defined]  # imported by `selfsup validate`
    return factory


def lazy_target(factory: Any) -> str | None:
    """The ``"package.module:builder"`` a :func:`lazy` factory imports, or None for another factory."""
    target = getattr(factory, "lazy_target", None)
    return target if isinstance(target, str) else None


def package_recipes(register: Any, package: str, recipes: dict[str, str], *, modality: str | None = None,
                    folder: str = "recipes") -> None:
    """Register the TOML recipes a package ships as data files: ``recipes`` maps each name to its
    one-line summary, and ``<package>/<folder>/<name>.toml`` holds the text (read when a recipe is
    used, not at registration). Use it in ``register_recipes``; a listed file that is missing is
    an error, so a packaging mistake shows up at once."""
    from importlib import resources

    root = resources.files(package).joinpath(folder)
    for name, summary in recipes.items():
        path = root.joinpath(f"{name}.toml")
        if not path.is_file():
            raise FileNotFoundError(f"{package} lists a recipe {name!r} but ships no {folder}/{name}.toml")
        register(name, lambda path=path: path.read_text(encoding="utf-8"), modality=modality, summary=summary)


class Register(Protocol):
    """The callback every ``register_*`` hook receives."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] | None = None,
        modality: str | None = None,
        summary: str = "",
        produces: dict[str, str] | None = None,
        consumes: dict[str, str] | None = None,
        feeds: dict[str, str] | None = None,
        decoder: Callable[..., Any] | None = None,
    ) -> None: ...


def _declarations(kind: Kind, name: str, options: type[BaseModel], **raw: Any) -> dict[str, Keys | None]:
    """Parse the sample-key declarations of one ``register`` call (see :mod:`selfsup.contract`)."""
    allowed = DECLARATIONS_OF_KIND[kind]
    out: dict[str, Keys | None] = {}
    for what, value in raw.items():
        if value is None:
            continue
        if what not in allowed:
            can = f"declare only {' and '.join(allowed)}" if allowed else "declare no sample keys"
            raise RegistrationError(f"{LABEL_OF_KIND[kind]} {name!r}: {what}= is not for {LABEL_OF_KIND[kind]}s "
                                    f"(they {can})")
        try:
            out[what] = Keys.parse(value, options=options, allow_removed=kind == "augmentation" and what == "produces")
        except ContractError as exc:
            raise RegistrationError(f"{LABEL_OF_KIND[kind]} {name!r}: {what}: {exc}") from None
    return out


@dataclass
class Registry:
    """All components, by kind then name."""

    components: dict[Kind, dict[str, Component]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    #: Plugins that failed to load or to register (filled by the plugin manager).
    failures: list[LoadFailure] = field(default_factory=list)

    def make_register(self, kind: Kind, plugin: str, distribution: str | None) -> Register:
        """A ``register`` callback that records ``plugin`` as the provider of what it registers."""

        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            options: type[BaseModel] | None = None,
            modality: str | None = None,
            summary: str = "",
            produces: dict[str, str] | None = None,
            consumes: dict[str, str] | None = None,
            feeds: dict[str, str] | None = None,
            decoder: Callable[..., Any] | None = None,
        ) -> None:
            if not isinstance(name, str) or not name.strip():
                raise RegistrationError(f"{LABEL_OF_KIND[kind]} names must be non-empty strings, got {name!r}")
            if not callable(factory):
                raise RegistrationError(f"{LABEL_OF_KIND[kind]} {name!r}: factory must be callable")
            if options is None:
                options = NoOptions
            if not (isinstance(options, type) and issubclass(options, BaseModel)):
                raise RegistrationError(
                    f"{LABEL_OF_KIND[kind]} {name!r}: options must be a pydantic BaseModel subclass"
                )
            declared = _declarations(kind, name, options, produces=produces, consumes=consumes, feeds=feeds)
            if decoder is not None and (kind != "data_source" or not callable(decoder)):
                raise RegistrationError(f"{LABEL_OF_KIND[kind]} {name!r}: decoder= is for data sources, "
                                        f"a callable (options, context) -> Decoder")
            existing = self.components[kind].get(name)
            if existing is not None:
                raise RegistrationError(
                    f"{LABEL_OF_KIND[kind]} {name!r} is registered twice: by plugin "
                    f"{existing.plugin!r} and by plugin {plugin!r}"
                )
            self.components[kind][name] = Component(
                kind=kind,
                name=name,
                factory=factory,
                options=options,
                plugin=plugin,
                distribution=distribution,
                modality=modality,
                summary=summary.strip(),
                decoder=decoder,
                **declared,
            )

        return register

    def get(self, kind: Kind, name: str) -> Component | None:
        return self.components[kind].get(name)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.components[kind])

    def by_plugin(self, plugin: str) -> dict[Kind, list[str]]:
        out: dict[Kind, list[str]] = {}
        for kind, comps in self.components.items():
            names = sorted(n for n, c in comps.items() if c.plugin == plugin)
            if names:
                out[kind] = names
        return out

    def closest(self, kind: Kind, name: str, extra: list[str] | None = None) -> str | None:
        """The registered (or ``extra``) name nearest to ``name``, if any is close."""
        candidates = sorted(set(self.components[kind]) | set(extra or []))
        match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        return match[0] if match else None
