"""Errors a plugin author can act on: a recipe naming a component of a plugin that failed to load is
told why; `selfsup plugins --verbose` shows the plugin's own traceback; `validate` imports the
lazy("pkg.mod:fn") factories it uses; ordering markers pluggy would honour but selfsup cannot
(tryfirst, trylast, wrappers) are refused at registration."""

from __future__ import annotations

import json

import pytest
from conftest import cli, write_plugin, write_toy_recipe

import selfsup
from selfsup.plugins import PluginManager, PluginWarning
from selfsup.recipe import RecipeError, _unknown_name, load_recipe
from selfsup.registry import LoadFailure, Registry, lazy, lazy_target

BROKEN = """\
import selfsup

raise RuntimeError("rotnet needs a newer torch")
"""


def fake_distribution(root, module: str, dist: str, body: str) -> None:
    """An installed distribution ``dist`` whose ``selfsup`` entry point is ``module``."""
    (root / f"{module}.py").write_text(body)
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[selfsup]\n{module.split('_')[-1]} = {module}\n")


def test_unknown_task_names_the_plugin_that_failed_to_load(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "selfsup_rotnet", "selfsup-rotnet", BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning, match="rotnet needs a newer torch"):
        registry = PluginManager().registry
    with pytest.raises(RecipeError) as err:
        load_recipe(str(write_toy_recipe(tmp_path)), registry, ["tasks.infonce.type=rotnet"])
    assert err.value.problems == [(
        "tasks.infonce.type",
        ("unknown pretext task 'rotnet': plugin 'selfsup-rotnet' failed to load: RuntimeError: rotnet needs a newer "
        "torch (`selfsup plugins --verbose` shows the traceback)"),
    )]


def test_the_cli_says_so_too(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "rotnet", BROKEN)
    res = cli("--plugins-dir", str(plugins), "validate", str(write_toy_recipe(tmp_path)), "--set",
              "tasks.infonce.type=rotnet")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert ("tasks.infonce.type: unknown pretext task 'rotnet': plugin 'rotnet' failed to load: RuntimeError"
            in res.stderr)


def test_a_failed_registration_hook_is_named(tmp_path):
    write_plugin(tmp_path / "p", "halfway", """
        import selfsup

        @selfsup.hookimpl
        def register_pretext_tasks(register):
            raise KeyError("config")
    """)
    with pytest.warns(PluginWarning):
        registry = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path / "p"]).registry
    assert _unknown_name(registry, "pretext_task", "halfway_task").startswith(
        "unknown pretext task 'halfway_task': plugin 'halfway' failed in register_pretext_tasks: KeyError: 'config'")
    # a name unrelated to the broken plugin: the usual message first, the failure as a note
    assert _unknown_name(registry, "pretext_task", "rot").endswith(
        "; note: plugin 'halfway' failed in register_pretext_tasks: KeyError: 'config' (`selfsup plugins --verbose` "
        "shows the traceback)")
    assert "failed" not in _unknown_name(registry, "backbone", "rot")  # another kind's hook is not the reason


def test_a_catalogued_task_names_only_its_own_distribution():
    registry = Registry()
    registry.failures = [LoadFailure("other", "selfsup-other", "import", "ImportError: x", loaded=False)]
    assert "is provided by selfsup-speech, which is not installed" in _unknown_name(registry, "pretext_task", "apc")
    registry.failures.append(LoadFailure("speech", "selfsup-speech", "import", "OSError: libsndfile", loaded=False))
    assert _unknown_name(registry, "pretext_task", "apc").startswith(
        "unknown pretext task 'apc': plugin 'selfsup-speech' failed to load: OSError: libsndfile")


def test_plugins_verbose_shows_the_plugins_own_file_and_line(tmp_path):
    path = write_plugin(tmp_path, "rotnet", BROKEN)
    res = cli("--plugins-dir", str(tmp_path), "plugins", "--verbose")
    assert res.returncode == 0, res.stderr
    assert "error in import: RuntimeError: rotnet needs a newer torch" in res.stdout
    assert f'File "{path}", line 3, in <module>' in res.stdout
    plain = cli("--plugins-dir", str(tmp_path), "plugins")
    assert f'File "{path}"' not in plain.stdout  # the traceback only with --verbose
    rows = {r["name"]: r for r in json.loads(cli("--plugins-dir", str(tmp_path), "plugins", "--json",
                                                 "--verbose").stdout)}
    assert f'File "{path}", line 3' in rows["rotnet"]["errors"][0]["traceback"]


# ----------------------------------------------------------------------------- lazy factories

LAZY = """
import selfsup
from selfsup.registry import lazy

@selfsup.hookimpl
def register_backbones(register):
    register("typo_fn", lazy("json:no_such_function"))
    register("typo_module", lazy("selfsup_no_such_module.nets:build"))
    register("fine", lazy("json:loads"))
"""


def test_lazy_factories_keep_their_target():
    assert lazy_target(lazy("pkg.mod:fn")) == "pkg.mod:fn"
    assert lazy_target(lambda o, c: None) is None


@pytest.mark.parametrize(
    ("backbone", "error"),
    [
        ("typo_fn", ("its factory 'json:no_such_function' does not import (AttributeError: module 'json' has no "
                    "attribute 'no_such_function')")),
        ("typo_module", ("its factory 'selfsup_no_such_module.nets:build' does not import (ModuleNotFoundError: "
                        "No module named 'selfsup_no_such_module')")),
    ],
)
def test_validate_imports_lazy_targets(tmp_path, backbone, error):
    write_plugin(tmp_path / "p", "lazyplug", LAZY)
    res = cli("--plugins-dir", str(tmp_path / "p"), "validate", str(write_toy_recipe(tmp_path)),
              "--set", f'backbones.mlp={{type="{backbone}"}}')
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"backbones.mlp.type: backbone '{backbone}' of plugin 'lazyplug' cannot be built: {error}" in res.stderr


def test_an_importable_lazy_target_passes(tmp_path):
    write_plugin(tmp_path / "p", "lazyplug", LAZY)
    res = cli("--plugins-dir", str(tmp_path / "p"), "validate", str(write_toy_recipe(tmp_path)),
              "--set", 'backbones.mlp={type="fine"}')
    assert res.returncode == 0, res.stderr


# ----------------------------------------------------------------------------- ordering markers

MARKED = {
    "tryfirst": "@selfsup.hookimpl(tryfirst=True)\ndef on_step_end(step):\n    pass\n",
    "trylast": "@selfsup.hookimpl(trylast=True)\ndef on_step_end(step):\n    pass\n",
    "wrapper": "@selfsup.hookimpl(wrapper=True)\ndef on_step_end(step):\n    return (yield)\n",
    "hookwrapper": "@selfsup.hookimpl(hookwrapper=True)\ndef on_step_end(step):\n    yield\n",
}


@pytest.mark.parametrize("option", list(MARKED))
def test_ordering_markers_are_refused_at_registration(tmp_path, option):
    body = ("import selfsup\n\n" + MARKED[option] + "\n\n@selfsup.hookimpl\ndef register_augmentations(register):\n"
            "    register('marked_aug', lambda o, c: None)\n")
    write_plugin(tmp_path, "marked", body)
    with pytest.warns(PluginWarning, match=f"hook 'on_step_end' is marked {option}=True"):
        pm = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path])
    [error] = [e for e in pm.errors if e.plugin == "marked"]
    assert error.stage == "import" and "selfsup does not support" in error.message
    assert "marked" not in pm.infos and "marked" in pm.failed
    assert pm.registry.get("augmentation", "marked_aug") is None
    assert pm.pm.get_plugin("marked") is None  # nothing of it stays registered with pluggy


def test_an_unmarked_plugin_is_called_in_load_order(tmp_path):
    calls = []

    class First:
        @selfsup.hookimpl
        def on_step_end(self, step):
            calls.append(("first", step))

    class Second:
        @selfsup.hookimpl
        def on_step_end(self, step):
            calls.append(("second", step))

    pm = PluginManager(load_entry_points=False)
    pm.register(First(), "first")
    pm.register(Second(), "second")
    pm.fire("on_step_end", run=None, step=1, metrics={})
    assert calls == [("first", 1), ("second", 1)]


def test_an_unknown_hook_name_is_an_error_and_the_other_hooks_work(tmp_path):
    write_plugin(tmp_path, "typo", """
        import selfsup

        @selfsup.hookimpl
        def on_step_ends(step):
            pass

        @selfsup.hookimpl
        def register_augmentations(register):
            register("typo_aug", lambda o, c: None)
    """)
    with pytest.warns(PluginWarning, match="implements unknown hook 'on_step_ends'; did you mean 'on_step_end'"):
        pm = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path])
    assert pm.infos["typo"].hooks == ["register_augmentations"]
    assert pm.registry.get("augmentation", "typo_aug") is not None
