"""Plugins declare the core versions they support; an incompatible one is reported, not loaded."""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest
from conftest import cli, write_plugin

import selfsup
from selfsup.plugins import IncompatiblePlugin, PluginManager, PluginWarning, check_compatible, parse_range

HOOKS = """
import selfsup

@selfsup.hookimpl
def register_augmentations(register):
    register("{component}", lambda o, c: None, summary="A component.")
"""


def plugin_file(directory, name, requires=None, component=None):
    head = f"SELFSUP_REQUIRES = {requires!r}\n" if requires is not None else ""
    return write_plugin(directory, name, head + HOOKS.format(component=component or f"{name}_aug"))


def fake_distribution(root, module, requires, *, module_body=None, dist="selfsup-fakeplug"):
    """An installed distribution ``dist`` (a .dist-info with METADATA and entry_points.txt) whose
    entry point ``module`` is in the ``selfsup`` group: what pip leaves behind."""
    (root / f"{module}.py").write_text(module_body or HOOKS.format(component=f"{module}_aug"))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    lines = [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", f"Name: {dist}", "Version: 1.0", *lines]) + "\n")
    (info / "entry_points.txt").write_text(f"[selfsup]\n{module} = {module}\n")


def test_range_parsing_and_the_fix_named():
    assert parse_range(">= 0.1, <0.2") == ">=0.1,<0.2" == parse_range("selfsup<0.2,>=0.1")
    for bad in ("soon", "numpy>=1", ">=0.1,<", 3):
        with pytest.raises(IncompatiblePlugin, match="is not a range of selfsup versions"):
            parse_range(bad)
    check_compatible("p", ">=0.1,<0.2", core="0.1.7")
    check_compatible("p", None, core="9.0")
    with pytest.raises(IncompatiblePlugin) as old_core:
        check_compatible("p", ">=0.3,<0.4", distribution="selfsup-p", core="0.1.0")
    assert str(old_core.value) == (
        "plugin 'p' supports selfsup>=0.3,<0.4, but selfsup 0.1.0 is running; "
        "fix: pip install 'selfsup>=0.3,<0.4', or upgrade the plugin (pip install -U selfsup-p)"
    )
    with pytest.raises(IncompatiblePlugin,
                       match=r"fix: upgrade the plugin \(pip install -U selfsup-p\), or pip install"):
        check_compatible("p", ">=0.1,<0.2", distribution="selfsup-p", core="0.2.0")  # the core is newer


def test_compatible_module_attribute_loads_and_is_shown(tmp_path):
    plugin_file(tmp_path, "fits", f">={selfsup.__version__}")
    plugin_file(tmp_path, "undeclared")
    pm = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path])
    assert not pm.errors
    rows = {r["name"]: r for r in pm.describe()}
    assert rows["fits"]["requires"] == f">={selfsup.__version__}" and rows["fits"]["components"]
    assert rows["undeclared"]["requires"] is None


def test_incompatible_module_attribute_is_not_registered(tmp_path):
    plugin_file(tmp_path, "future", ">=99.0,<100")
    with pytest.warns(PluginWarning) as caught:
        pm = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path])
        pm.load_directory(tmp_path)  # seen again: reported once
    assert "future" not in pm.infos and pm.registry.get("augmentation", "future_aug") is None
    [err] = pm.errors
    assert err.stage == "compatibility"
    assert err.message.startswith(f"plugin 'future' supports selfsup>=99.0,<100, but selfsup {selfsup.__version__} is "
                                  f"running")
    assert "pip install 'selfsup>=99.0,<100'" in err.message and "SELFSUP_REQUIRES" in err.message
    assert len(caught) == 1 and "was not loaded" in str(caught[0].message)
    [row] = pm.describe()
    assert row["source"] == "failed" and row["requires"] == ">=99.0,<100"


def test_unparsable_range_is_reported(tmp_path):
    plugin_file(tmp_path, "typo", ">=0.1,,<0.2x")
    with pytest.warns(PluginWarning):
        pm = PluginManager(load_entry_points=False, plugins_dirs=[tmp_path])
    assert "typo" not in pm.infos
    [err] = pm.errors
    assert err.stage == "compatibility" and "SELFSUP_REQUIRES = '>=0.1,,<0.2x' is not a range" in err.message


def test_distribution_metadata_declares_the_range(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "fakeplug", ["selfsup<0.0.5,>=0.0.1", "torch>=2.4"])
    fake_distribution(tmp_path, "fitplug", [f"selfsup>={selfsup.__version__}", "selfsup>=99; extra == 'dev'"],
                      dist="selfsup-fit")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SELFSUP_PLUGINS", "fakeplug,fitplug")
    with pytest.warns(PluginWarning, match="fakeplug"):
        pm = PluginManager()
    assert pm.infos["fitplug"].requires == f">={selfsup.__version__}"  # the extra's requirement is ignored
    assert "fakeplug" not in pm.infos and pm.registry.get("augmentation", "fakeplug_aug") is None
    [err] = pm.errors
    assert err.stage == "compatibility" and "supports selfsup>=0.0.1,<0.0.5" in err.message
    assert "fix: upgrade the plugin (pip install -U selfsup-fakeplug)" in err.message
    row = {r["name"]: r for r in pm.describe()}["fakeplug"]
    assert (row["distribution"], row["version"], row["requires"]) == ("selfsup-fakeplug", "1.0", ">=0.0.1,<0.0.5")


def test_module_attribute_overrides_metadata_and_import_errors_name_the_range(tmp_path, monkeypatch):
    override = f"SELFSUP_REQUIRES = '>={selfsup.__version__}'\n" + HOOKS.format(component="over_aug")
    fake_distribution(tmp_path, "overplug", ["selfsup>=99"], module_body=override, dist="selfsup-over")
    broken = "from selfsup.feature_of_the_future import thing\n"
    fake_distribution(tmp_path, "newplug", ["selfsup>=99"], module_body=broken, dist="selfsup-new")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SELFSUP_PLUGINS", "overplug,newplug")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        pm = PluginManager()
    assert pm.infos["overplug"].requires == f">={selfsup.__version__}"
    [err] = pm.errors
    assert err.plugin == "newplug" and err.stage == "compatibility"
    assert "pip install 'selfsup>=99'" in err.message and "importing it failed: ModuleNotFoundError" in err.message


def test_selfsup_plugins_lists_ranges(tmp_path):
    plugin_file(tmp_path, "fits", ">=0.1")
    plugin_file(tmp_path, "future", ">=99")
    res = cli("--plugins-dir", str(tmp_path), "plugins", env={"SELFSUP_PLUGINS": "toy"})
    assert res.returncode == 0, res.stderr
    text = textwrap.dedent(res.stdout)
    assert "fits (plugins-dir)\n  supports selfsup: >=0.1\n" in text
    assert "future (failed)\n  supports selfsup: >=99\n" in text
    assert f"  not loaded: plugin 'future' supports selfsup>=99, but selfsup {selfsup.__version__} is running" in text
    assert "toy 0.1.0 (selfsup-toy, entry point)\n  supports selfsup: " in text
    assert "core 0.1.0 (selfsup, builtin)\n  hooks:" in text
    assert res.stderr.count("PluginWarning") == 1

    rows = {r["name"]: r for r in json.loads(cli("--plugins-dir", str(tmp_path), "plugins", "--json",
                                                 env={"SELFSUP_PLUGINS": ""}).stdout)}
    assert rows["fits"]["requires"] == ">=0.1" and rows["core"]["requires"] is None
    assert rows["future"]["requires"] == ">=99" and rows["future"]["errors"][0]["stage"] == "compatibility"
