"""Finding, loading and calling plugins.

Plugins come from three places, in this order:

1. the core's own built-ins (entry point ``core`` of the ``selfsup`` distribution), always loaded;
2. the ``selfsup`` entry-point group of installed distributions, restricted by ``SELFSUP_PLUGINS``
   (a comma list of entry-point or distribution names; set but empty loads none);
3. ``*.py`` files in each ``--plugins-dir`` / ``SELFSUP_PLUGINS_DIR`` directory (one file, one plugin).
   A directory that other users can write to (world-writable, or owned by another non-root user,
   or holding such a file) is refused, its files not imported, unless it is trusted
   (``--trust``, ``SELFSUP_TRUST_PLUGINS_DIR=1``, ``trust_dirs=True``): see :func:`untrusted_reason`.

A plugin that fails to import or whose hook raises is recorded in :attr:`PluginManager.errors`
(shown by ``selfsup plugins``; ``--verbose`` adds the traceback) and reported as a warning; every
other plugin keeps working. The registry keeps them too (:attr:`Registry.failures`), so a recipe
naming a component of a broken plugin is told why. ``SELFSUP_TRACE_PLUGINS=1`` logs every hook call.

selfsup calls each hook implementation on its own, in load order (to isolate failures), so the
pluggy markers that order or wrap implementations (``tryfirst``, ``trylast``, ``wrapper``,
``hookwrapper``) cannot be honoured: a plugin using them is rejected when it registers.

Plugins declare the core versions they support: a distribution by its own requirement on
``selfsup`` (``dependencies = ["selfsup>=0.1,<0.2"]``), a module (a plugins-directory file, or to
override the metadata) by ``SELFSUP_REQUIRES = ">=0.1,<0.2"``. A plugin whose range excludes the
running core is not registered; the error (stage ``compatibility``) says how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
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

from selfsup import __version__, hookspecs
from selfsup.registry import HOOK_OF_KIND, KINDS, Kind, LoadFailure, Registry

ENTRY_POINT_GROUP = "selfsup"
CORE_PLUGIN = "core"
#: The module attribute that declares (or overrides) the core versions a plugin supports.
REQUIRES_ATTRIBUTE = "SELFSUP_REQUIRES"
#: Set to 1 to load plugins directories that other users can write to (the CLI's ``--trust``).
TRUST_ENV = "SELFSUP_TRUST_PLUGINS_DIR"
#: pluggy hookimpl options that order or wrap implementations: selfsup calls each on its own, so they are refused.
ORDERING_OPTIONS = ("tryfirst", "trylast", "wrapper", "hookwrapper")


class PluginWarning(UserWarning):
    """A plugin failed to load or one of its hooks raised."""


@dataclass
class PluginError:
    plugin: str
    stage: str  # "import", "compatibility", "<hook name>"
    message: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "stage": self.stage, "message": self.message}


@dataclass
class HookResult:
    """What one plugin's implementation returned (:meth:`PluginManager.collect`): its ``value``, or the
    ``error`` (``"ExcType: message"``) it raised."""

    plugin: str
    value: Any = None
    error: str | None = None


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    source: str  # "builtin", "entry point", "plugins-dir", "registered"
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    requires: str | None = None  # the core versions it supports, e.g. ">=0.1,<0.2"; None: any


class IncompatiblePlugin(Exception):
    """A plugin's declared range of core versions excludes the running core (or cannot be read)."""


_LOWER_BOUNDS = (">=", ">", "~=", "==", "===")


def _format_range(spec: Any) -> str:
    """A ``SpecifierSet`` as text, lower bounds first: ``>=0.1,<0.2``."""
    return ",".join(sorted((str(s) for s in spec), key=lambda s: (not s.startswith(_LOWER_BOUNDS[:3]), s)))


def parse_range(raw: object, where: str = REQUIRES_ATTRIBUTE) -> str:
    """Check and normalise a declared range of core versions: ``">= 0.1, <0.2"`` (or
    ``"selfsup>=0.1,<0.2"``) gives ``">=0.1,<0.2"``; anything else raises :class:`IncompatiblePlugin`."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    problem = "it is not a string"
    if isinstance(raw, str):
        try:
            if raw.strip()[:1].isalpha():  # a whole requirement
                req = Requirement(raw)
                if req.name.lower() == "selfsup":
                    return _format_range(req.specifier)
                problem = f"it names {req.name!r}, not selfsup"
            else:
                return _format_range(SpecifierSet(raw))
        except (InvalidSpecifier, InvalidRequirement) as exc:
            problem = str(exc).splitlines()[0]
    raise IncompatiblePlugin(f"{where} = {raw!r} is not a range of selfsup versions like '>=0.1,<0.2' ({problem})")


def metadata_range(dist: metadata.Distribution | None) -> str | None:
    """The ``selfsup`` versions that ``dist``'s metadata requires (``Requires-Dist: selfsup<0.2,>=0.1``
    gives ``">=0.1,<0.2"``): ``""`` for selfsup without a range, ``None`` when selfsup is not required."""
    from packaging.requirements import InvalidRequirement, Requirement

    found: list[str] = []
    for line in (dist.requires or []) if dist is not None else []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            if re.split(r"[\s<>=!~;\[(]", line.strip(), maxsplit=1)[0].lower() == "selfsup":
                parse_range(line, "its requirement")  # raises, naming the line
            continue
        if req.name.lower() != "selfsup":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # the requirement of an optional extra
        found.append(str(req.specifier))
    return parse_range(",".join(f for f in found if f)) if found else None


def check_compatible(name: str, requires: str | None, *, distribution: str | None = None,
                     core: str = __version__) -> None:
    """Raise :class:`IncompatiblePlugin`, naming the plugin, its range, ``core`` and the fix,
    when the range ``requires`` excludes ``core``; ``None`` or ``""`` allows any core."""
    if not requires:
        return
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    spec, version = SpecifierSet(parse_range(requires)), Version(core)
    if spec.contains(version, prereleases=True):
        return

    def above(bound: str) -> bool:
        try:
            return Version(bound.rstrip(".*")) > version
        except InvalidVersion:
            return False

    core_too_old = any(s.operator in _LOWER_BOUNDS and above(s.version) for s in spec)
    get_core = f"pip install 'selfsup{_format_range(spec)}'"
    if distribution:
        get_plugin = f"upgrade the plugin (pip install -U {distribution})"
    else:
        get_plugin = f"update the plugin and its {REQUIRES_ATTRIBUTE}"
    fix = f"{get_core}, or {get_plugin}" if core_too_old else f"{get_plugin}, or {get_core}"
    raise IncompatiblePlugin(f"plugin {name!r} supports selfsup{_format_range(spec)}, but selfsup {core} is running; "
                             f"fix: {fix}")


def _trace_enabled() -> bool:
    return os.environ.get("SELFSUP_TRACE_PLUGINS", "").strip() not in ("", "0", "false", "no")


def _trace(message: str) -> None:
    if _trace_enabled():
        print(f"[selfsup trace] {message}", file=sys.stderr, flush=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def untrusted_reason(directory: str | Path) -> str | None:
    """Why loading plugins from ``directory`` would run code that other users can change, or None:
    the directory or one of its ``*.py`` files is world-writable, or is owned by a user other than
    root and the one running selfsup (symbolic links are followed). Not checked where the system
    has no user ids (Windows)."""
    if not hasattr(os, "geteuid"):
        return None
    me = os.geteuid()
    path = Path(directory)
    for item in [path, *sorted(path.glob("*.py"))]:
        try:
            st = item.stat()
        except OSError:
            continue
        what = "plugins directory" if item == path else "plugin file"
        if st.st_mode & stat.S_IWOTH:
            return (f"{what} {str(item)!r} is world-writable: any user could put code there that selfsup would run; "
                    f"make it private (chmod o-w {item}) or pass --trust ({TRUST_ENV}=1) if you trust it")
        if st.st_uid not in (0, me):
            return (f"{what} {str(item)!r} belongs to another user (uid {st.st_uid}), whose code selfsup would run; "
                    f"pass --trust ({TRUST_ENV}=1) if you trust it")
    return None


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("SELFSUP_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginManager:
    """The selfsup plugin manager: loads plugins, fills a :class:`Registry`, fires events."""

    def __init__(self, *, load_entry_points: bool = True, plugins_dirs: Iterable[str | Path] = (),
                 trust_dirs: bool | None = None):
        """``trust_dirs``: load plugins directories that other users can write to (default: the
        ``SELFSUP_TRUST_PLUGINS_DIR`` environment variable); refused ones are in :attr:`refused`."""
        self.pm = pluggy.PluginManager("selfsup")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.failed: dict[str, PluginInfo] = {}  # plugins that were found but not registered
        self.errors: list[PluginError] = []
        self.refused: list[PluginError] = []  # plugins directories not loaded because others can write to them
        self.trust_dirs = _env_flag(TRUST_ENV) if trust_dirs is None else trust_dirs
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
            info = PluginInfo(ep.name, dist, version, "builtin" if is_core else "entry point", ep.value)
            if not is_core:
                try:
                    info.requires = metadata_range(ep.dist)
                except IncompatiblePlugin as exc:
                    self.failed[ep.name] = info
                    self._error(ep.name, "compatibility", f"{dist} {version}: {exc}")
                    continue
            self._try_register(ep.name, ep.load, info)

    def load_directory(self, directory: str | Path, *, trust: bool | None = None) -> None:
        """Load every ``*.py`` file in ``directory`` as a one-file plugin named after the file.
        A directory that other users can write to is refused (recorded in :attr:`refused` and
        :attr:`errors`, nothing imported) unless ``trust`` (default :attr:`trust_dirs`)."""
        path = Path(directory)
        if not path.is_dir():
            self._error(str(path), "import", f"plugins directory {str(path)!r} does not exist")
            return
        reason = None if (self.trust_dirs if trust is None else trust) else untrusted_reason(path)
        if reason is not None:
            error = PluginError(str(path), "import", reason)
            self.errors.append(error)
            self.refused.append(error)
            warnings.warn(f"selfsup refused plugins directory {str(path)!r}: {reason}", PluginWarning, stacklevel=2)
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
        failed = self.failed.get(name)
        seen = failed is not None and (failed.source, failed.module) == (info.source, info.module)
        if seen and info.source != "registered":
            return  # the same file or entry point failed before and was reported
        _trace(f"loading plugin {name!r} ({info.source}: {info.module or info.distribution})")
        try:
            plugin = load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must never be fatal
            self.failed[name] = info
            try:  # an import error of a plugin made for another core is reported as that
                check_compatible(name, info.requires, distribution=info.distribution)
            except IncompatiblePlugin as incompatible:
                self._error(name, "compatibility", f"{incompatible} (importing it failed: {type(exc).__name__}: {exc})",
                            traceback.format_exc())
            else:
                self._error(name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        declared = getattr(plugin, REQUIRES_ATTRIBUTE, None)
        try:
            if declared is not None:  # the module's own declaration overrides the metadata
                info.requires = parse_range(declared)
            check_compatible(name, info.requires, distribution=info.distribution)
            self.pm.register(plugin, name=name)
        except IncompatiblePlugin as exc:
            self.failed[name] = info
            self._error(name, "compatibility", str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            self.failed[name] = info
            self._error(name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            return
        callers = self.pm.get_hookcallers(plugin) or []
        ordered = [(caller.name, option) for caller in callers for impl in caller.get_hookimpls()
                   if impl.plugin is plugin for option in ORDERING_OPTIONS if getattr(impl, option, False)]
        if ordered:
            self.pm.unregister(plugin)
            self.failed[name] = info
            hook, option = ordered[0]
            self._error(name, "import", f"hook {hook!r} is marked {option}=True, which selfsup does not support: it "
                        "calls each plugin's implementation on its own, in load order, so that one failing plugin "
                        f"never stops another; remove {option}=True (see docs/plugin-hooks.md)")
            return
        for caller in callers:
            if caller.spec is None:  # a misspelled hook would otherwise never be called
                import difflib

                known = [n for n in dir(hookspecs) if n.startswith(("register_", "on_", "report_"))]
                near = difflib.get_close_matches(caller.name, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                self._error(name, "import", f"implements unknown hook {caller.name!r}{hint}")
        info.hooks = sorted(caller.name for caller in callers if caller.spec is not None)
        self.infos[name] = info
        self._registry = None

    def _error(self, plugin: str, stage: str, message: str, detail: str = "") -> None:
        self.errors.append(PluginError(plugin, stage, message, detail))
        if stage == "compatibility":
            text = f"selfsup plugin {plugin!r} was not loaded: {message}"
        else:
            where = "while loading" if stage == "import" else f"in hook {stage}"
            text = f"selfsup plugin {plugin!r} failed {where}: {message}"
        warnings.warn(text, PluginWarning, stacklevel=3)

    # ---------------------------------------------------------------- calling hooks

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook_name`` on its own, isolating failures."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order
            self._call_impl(hook_name, impl, kwargs)

    def collect(self, hook_name: str, **kwargs: Any) -> list[HookResult]:
        """Call every implementation of ``hook_name`` on its own, in load order, and collect what each
        returned: one :class:`HookResult` per plugin. One that raises is reported as a warning (as
        :meth:`call_each` does) and its result carries the error instead of a value."""
        caller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in caller.get_hookimpls():
            value, error = self._call_impl(hook_name, impl, kwargs)
            results.append(HookResult(impl.plugin_name, value, error))
        return results

    def _call_impl(self, hook_name: str, impl: Any, kwargs: dict[str, Any]) -> tuple[Any, str | None]:
        """``(returned value, None)``, or ``(None, "ExcType: message")`` when the implementation raised."""
        args = {k: v for k, v in kwargs.items() if k in impl.argnames}
        _trace(f"{hook_name} -> {impl.plugin_name}")
        start = time.perf_counter()
        try:
            value = impl.function(**args)
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
            self._error(impl.plugin_name, hook_name, message, traceback.format_exc())
            return None, message
        _trace(f"{hook_name} <- {impl.plugin_name} ({(time.perf_counter() - start) * 1e3:.1f} ms)")
        return value, None

    @property
    def registry(self) -> Registry:
        """Every registered component; the registration hooks run the first time this is read."""
        if self._registry is None:
            registry = Registry()
            for kind in KINDS:
                self._collect(registry, kind)
            registry.failures = [self._failure(e) for e in self.errors]
            self._registry = registry
        return self._registry

    def _failure(self, error: PluginError) -> LoadFailure:
        info = self.infos.get(error.plugin) or self.failed.get(error.plugin)
        return LoadFailure(error.plugin, info.distribution if info else None, error.stage, error.message,
                           loaded=error.plugin in self.infos)

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

    def describe(self, *, tracebacks: bool = False) -> list[dict[str, Any]]:
        """Name, version, supported core versions (``requires``; ``None``: any), hooks, components
        and errors of every plugin, for ``selfsup plugins``; with ``tracebacks``, each error also
        carries its ``traceback`` (the import's or the hook's, naming the plugin's file and line)."""

        def errors_of(plugin: str) -> list[dict[str, str]]:
            return [{**e.as_dict(), "traceback": e.detail} if tracebacks else e.as_dict()
                    for e in self.errors if e.plugin == plugin]

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
                    "requires": info.requires or None,
                    "hooks": info.hooks,
                    "components": registry.by_plugin(name),
                    "errors": errors_of(name),
                }
            )
        loaded = set(self.infos)
        for err in self.errors:
            if err.plugin not in loaded:
                failed = self.failed.get(err.plugin)
                rows.append(
                    {
                        "name": err.plugin,
                        "distribution": failed.distribution if failed else None,
                        "version": failed.version if failed else None,
                        "source": "failed",
                        "module": failed.module if failed else None,
                        "requires": (failed.requires or None) if failed else None,
                        "hooks": [],
                        "components": {},
                        "errors": errors_of(err.plugin),
                    }
                )
                loaded.add(err.plugin)
        return rows


_default: PluginManager | None = None


def get_plugin_manager(plugins_dirs: Iterable[str | Path] = (), *, trust_dirs: bool | None = None) -> PluginManager:
    """The process-wide plugin manager (created on first use). ``trust_dirs``: see :class:`PluginManager`."""
    global _default
    if _default is None:
        _default = PluginManager(plugins_dirs=plugins_dirs, trust_dirs=trust_dirs)
    else:
        for directory in plugins_dirs:
            _default.load_directory(directory, trust=trust_dirs)
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests use this after changing the environment)."""
    global _default
    _default = None
