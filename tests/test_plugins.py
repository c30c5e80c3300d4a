"""Plugin discovery, isolation of broken plugins, filters, tracing and local plugin files."""

from __future__ import annotations

import json

import pytest
from conftest import cli, write_plugin

import selfsup
from selfsup.plugins import PluginManager, PluginWarning
from selfsup.registry import RegistrationError, Registry

GOOD = """
import selfsup
from selfsup.options import Options

class Opts(Options):
    scale: float = 1.0

def build(options, context):
    return ("built", options.scale, context.name)

@selfsup.hookimpl
def register_augmentations(register):
    register("local_scale", build, options=Opts, modality="vector", summary="Scales things.")
"""

BROKEN_IMPORT = """
raise RuntimeError("this plugin cannot be imported")
"""

BROKEN_HOOK = """
import selfsup

@selfsup.hookimpl
def register_backbones(register):
    raise ValueError("registration exploded")

@selfsup.hookimpl
def register_augmentations(register):
    register("still_fine", lambda o, c: None, summary="Registered before nothing broke.")
"""


def test_core_builtins_and_entry_points_load():
    pm = PluginManager()
    assert "core" in pm.infos and pm.infos["core"].source == "builtin"
    assert "toy" in pm.infos and pm.infos["toy"].distribution == "selfsup-toy"
    reg = pm.registry
    assert reg.get("backbone", "mlp").plugin == "core"
    assert reg.get("pretext_task", "toy_infonce").plugin == "toy"
    assert reg.get("pretext_task", "toy_infonce").distribution == "selfsup-toy"


def test_plugins_dir_file_registers_components(tmp_path):
    write_plugin(tmp_path, "local_aug", GOOD)
    pm = PluginManager(plugins_dirs=[tmp_path])
    comp = pm.registry.get("augmentation", "local_scale")
    assert comp is not None and comp.plugin == "local_aug" and comp.modality == "vector"
    assert comp.build({"scale": 2.0}, type("C", (), {"name": "x"})()) == ("built", 2.0, "x")


def test_broken_plugins_are_reported_and_others_keep_working(tmp_path):
    write_plugin(tmp_path, "a_broken_import", BROKEN_IMPORT)
    write_plugin(tmp_path, "b_broken_hook", BROKEN_HOOK)
    write_plugin(tmp_path, "c_good", GOOD)
    with pytest.warns(PluginWarning) as caught:
        pm = PluginManager(plugins_dirs=[tmp_path])
        reg = pm.registry
    messages = " | ".join(str(w.message) for w in caught)
    assert "a_broken_import" in messages and "cannot be imported" in messages
    assert "b_broken_hook" in messages and "registration exploded" in messages
    assert reg.get("augmentation", "local_scale") is not None  # the good plugin
    assert reg.get("augmentation", "still_fine") is not None  # the broken plugin's other hook
    assert reg.get("backbone", "mlp") is not None  # the core
    stages = {(e.plugin, e.stage) for e in pm.errors}
    assert stages == {("a_broken_import", "import"), ("b_broken_hook", "register_backbones")}


def test_selfsup_plugins_cli_reports_errors_as_json(tmp_path):
    write_plugin(tmp_path, "broken", BROKEN_IMPORT)
    write_plugin(tmp_path, "good", GOOD)
    res = cli("--plugins-dir", str(tmp_path), "plugins", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["broken"]["source"] == "failed"
    assert "cannot be imported" in rows["broken"]["errors"][0]["message"]
    assert rows["good"]["components"] == {"augmentation": ["local_scale"]}
    assert rows["core"]["version"] == selfsup.__version__
    assert "register_backbones" in rows["core"]["hooks"]
    assert "failed while loading" in res.stderr  # the warning


def test_duplicate_name_names_both_plugins(tmp_path):
    write_plugin(tmp_path, "first", GOOD)
    write_plugin(tmp_path, "second", GOOD)
    with pytest.warns(PluginWarning,
                      match=r"'local_scale' is registered twice: by plugin 'first' and by plugin 'second'"):
        pm = PluginManager(plugins_dirs=[tmp_path])
        pm.registry


def test_register_rejects_bad_options_model():
    reg = Registry()
    register = reg.make_register("backbone", "p", None)
    with pytest.raises(RegistrationError, match="pydantic BaseModel"):
        register("x", lambda o, c: None, options=dict)
    with pytest.raises(RegistrationError, match="callable"):
        register("x", "not callable")


@pytest.mark.parametrize(
    ("value", "expect_toy"),
    [("", False), ("toy", True), ("selfsup-toy", True), ("something_else", False)],
)
def test_selfsup_plugins_env_restricts_loading(monkeypatch, value, expect_toy):
    monkeypatch.setenv("SELFSUP_PLUGINS", value)
    pm = PluginManager()
    assert "core" in pm.infos  # built-ins always load
    assert ("toy" in pm.infos) is expect_toy


def test_trace_logs_hook_calls(tmp_path):
    res = cli("plugins", "--json", env={"SELFSUP_TRACE_PLUGINS": "1"})
    assert res.returncode == 0
    assert "[selfsup trace] loading plugin 'toy'" in res.stderr
    assert "register_pretext_tasks -> toy" in res.stderr


def test_plugin_can_add_cli_command(tmp_path):
    write_plugin(
        tmp_path,
        "cmd",
        """
        import click, selfsup

        @selfsup.hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("who")
            def hello(who):
                "Say hello."
                click.echo(f"hello {who}")
        """,
    )
    res = cli("--plugins-dir", str(tmp_path), "hello", "world")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello world"


def test_lifecycle_events_reach_listener_and_failures_are_isolated():
    calls = []

    class Listener:
        @selfsup.hookimpl
        def on_step_end(self, run, step, metrics):
            calls.append(("step", step, dict(metrics)))

    class Broken:
        @selfsup.hookimpl
        def on_step_end(self, run, step, metrics):
            raise RuntimeError("logger down")

    pm = PluginManager(load_entry_points=False)
    pm.register(Broken(), "broken")
    pm.register(Listener(), "listener")
    with pytest.warns(PluginWarning, match="logger down"):
        pm.fire("on_step_end", run=None, step=3, metrics={"loss": 1.0})
    assert calls == [("step", 3, {"loss": 1.0})]


def test_misspelled_hook_and_name_clash_are_reported(tmp_path):
    write_plugin(
        tmp_path,
        "typo",
        """
        import selfsup

        @selfsup.hookimpl
        def register_pretext_task(register):
            pass
        """,
    )
    write_plugin(tmp_path, "toy", GOOD)  # same name as the installed selfsup-toy entry point
    with pytest.warns(PluginWarning):
        pm = PluginManager(plugins_dirs=[tmp_path])
    messages = {(e.plugin, e.message) for e in pm.errors}
    assert ("typo",
            "implements unknown hook 'register_pretext_task'; did you mean 'register_pretext_tasks'?") in messages
    assert any(p == "toy" and "already loaded" in m for p, m in messages)
    assert pm.registry.get("augmentation", "local_scale") is None  # the clashing file was not loaded
