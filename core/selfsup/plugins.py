"""Finding, loading and calling plugins.

Plugins come from three places, in this order:

1. the core's own built-ins (entry point ``core`` of the ``selfsup`` distribution), always loaded;
2. the ``selfsup`` entry-point group of installed distributions, restricted by ``SELFSUP_PLUGINS``
   (a comma list of entry-point or distribution names; set but empty loads none);
3. ``*.py`` files in each ``--plugins-dir`` / ``SELFSUP_PLUGINS_DIR`` directory (one file, one plugin).

A plugin that fails to import or whose hook raises is recorded in :attr:`PluginManager.errors`
(shown by ``selfsup plugins``) and reported as a warning; every other plugin keeps working.
``SELFSUP_TRACE_PLUGINS=1`` logs every hook call to stderr.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from selfsup import hookspecs
from selfsup.registry import HOOK_OF_KIND, KINDS, Kind, Registry

ENTRY_POINT_GROUP = "selfsup"
CORE_PLUGIN = "core"


class PluginWarning(UserWarning):
    """A plugin failed to load or one of its hooks raised."""


@dataclass
class PluginError:
    plugin: str
    stage: str  # "import", "<hook name>"
    message: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "stage": self.stage, "message": self.message}


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    source: str  # "builtin", "entry point", "plugins-dir", "registered"
    module: str | None = None
    hooks: list[str] = field(default_factory=list)


def _trace_enabled() -> bool:
    return os.environ.get("SELFSUP_TRACE_PLUGINS", "").strip() not in ("", "0", "false", "no")


def _trace(message: str) -> None:
    if _trace_enabled():
        print(f"[selfsup trace] {message}", file=sys.stderr, flush=True)


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("SELFSUP_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginManager:
    """The selfsup plugin manager: loads plugins, fills a :class:`Registry`, fires events."""

    def __init__(self, *, load_entry_points: bool = True, plugins_dirs: Iterable[str | Path] = ()):
        self.pm = pluggy.PluginManager("selfsup")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.errors: list[PluginError] = []
        self._registry: Registry | None = None
        if load_entry_points:
            self._load_entry_points()
        env_dirs = [d for d in os.environ.get("SELFSUP_PLUGINS_DIR", "").split(os.pathsep) if d]
        for directory in [*env_dirs, *plugins_dirs]:
            self.load_directory(directory)

    # ---------------------------------------------------------------- loading

    def _load_entry_points(self) -> None:
        allowed = _allowed_plugins()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            is_core = ep.name == CORE_PLUGIN and dist == "selfsup"
            if ep.name in self.infos:
                continue  # the same distribution visible twice on sys.path
            if not is_core and allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            version = ep.dist.version if ep.dist is not None else None
            self._try_register(
                ep.name,
                ep.load,
                PluginInfo(ep.name, dist, version, "builtin" if is_core else "entry point", ep.value),
            )

    def load_directory(self, directory: str | Path) -> None:
        """Load every ``*.py`` file in ``directory`` as a one-file plugin named after the file."""
        path = Path(directory)
        if not path.is_dir():
            self._error(str(path), "import", f"plugins directory {str(path)!r} does not exist")
            return
        for file in sorted(path.glob("*.py")):
            name = file.stem
            if name.startswith("_"):
                continue

            def load(file: Path = file, name: str = name) -> ModuleType:
                spec = importlib.util.spec_from_file_location(f"selfsup_local_plugins.{name}", file)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
                return module

            self._try_register(name, load, PluginInfo(name, None, None, "plugins-dir", str(file)))

    def register(self, plugin: Any, name: str, *, distribution: str | None = None) -> None:
        """Register an already imported plugin object or module (used by tests and embedders)."""
        self._try_register(name, lambda: plugin, PluginInfo(name, distribution, None, "registered"))

    def _try_register(self, name: str, load: Any, info: PluginInfo) -> None:
        if name in self.infos:
            first = self.infos[name]
            if (first.source, first.module) != (info.source, info.module):
                where = info.module or info.distribution or info.source
                self._error(name, "import", f"a plugin named {name!r} is already loaded ({first.source}: "
                            f"{first.module or first.distribution}); {where} was not loaded")
            return  # the same distribution or file seen twice
        _trace(f"loading plugin {name!r} ({info.source}: {info.module or info.distribution})")
        try:
            plugin = load()
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must never be fatal
            self._error(name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        callers = self.pm.get_hookcallers(plugin) or []
        for caller in callers:
            if caller.spec is None:  # a misspelled hook would otherwise never be called
                import difflib

                known = [n for n in dir(hookspecs) if n.startswith(("register_", "on_"))]
                near = difflib.get_close_matches(caller.name, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                self._error(name, "import", f"implements unknown hook {caller.name!r}{hint}")
        info.hooks = sorted(caller.name for caller in callers if caller.spec is not None)
        self.infos[name] = info
        self._registry = None

    def _error(self, plugin: str, stage: str, message: str, detail: str = "") -> None:
        self.errors.append(PluginError(plugin, stage, message, detail))
        where = "while loading" if stage == "import" else f"in hook {stage}"
        warnings.warn(f"selfsup plugin {plugin!r} failed {where}: {message}", PluginWarning, stacklevel=3)

    # ---------------------------------------------------------------- calling hooks

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook_name`` on its own, isolating failures."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            self._call_impl(hook_name, impl, kwargs)

    def _call_impl(self, hook_name: str, impl: Any, kwargs: dict[str, Any]) -> None:
        args = {k: v for k, v in kwargs.items() if k in impl.argnames}
        _trace(f"{hook_name} -> {impl.plugin_name}")
        start = time.perf_counter()
        try:
            impl.function(**args)
        except Exception as exc:  # noqa: BLE001
            self._error(impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            _trace(f"{hook_name} <- {impl.plugin_name} ({(time.perf_counter() - start) * 1e3:.1f} ms)")

    @property
    def registry(self) -> Registry:
        """Every registered component; the registration hooks run the first time this is read."""
        if self._registry is None:
            registry = Registry()
            for kind in KINDS:
                self._collect(registry, kind)
            self._registry = registry
        return self._registry

    def _collect(self, registry: Registry, kind: Kind) -> None:
        hook_name = HOOK_OF_KIND[kind]
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # registration order
            info = self.infos.get(impl.plugin_name)
            register = registry.make_register(kind, impl.plugin_name, info.distribution if info else None)
            self._call_impl(hook_name, impl, {"register": register})

    def add_commands(self, cli: Any) -> None:
        self.call_each("register_commands", cli=cli)

    def fire(self, event: str, **kwargs: Any) -> None:
        """Send a lifecycle event (``on_*``) to every plugin that listens."""
        self.call_each(event, **kwargs)

    def describe(self) -> list[dict[str, Any]]:
        """Name, version, hooks, components and errors of every plugin, for ``selfsup plugins``."""
        registry = self.registry
        rows = []
        for name, info in self.infos.items():
            rows.append(
                {
                    "name": name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "source": info.source,
                    "module": info.module,
                    "hooks": info.hooks,
                    "components": registry.by_plugin(name),
                    "errors": [e.as_dict() for e in self.errors if e.plugin == name],
                }
            )
        loaded = set(self.infos)
        for err in self.errors:
            if err.plugin not in loaded:
                rows.append(
                    {
                        "name": err.plugin,
                        "distribution": None,
                        "version": None,
                        "source": "failed",
                        "module": None,
                        "hooks": [],
                        "components": {},
                        "errors": [err.as_dict()],
                    }
                )
                loaded.add(err.plugin)
        return rows


_default: PluginManager | None = None


def get_plugin_manager(plugins_dirs: Iterable[str | Path] = ()) -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _default
    if _default is None:
        _default = PluginManager(plugins_dirs=plugins_dirs)
    else:
        for directory in plugins_dirs:
            _default.load_directory(directory)
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests use this after changing the environment)."""
    global _default
    _default = None
