"""`selfsup describe` (options, sample keys and provider of a component, in one vocabulary of kinds)
and the generated component pages in docs/components (never stale)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, cli, cli_heavy_imports, write_plugin

from selfsup.docgen import COMMAND, render_pages, stale_pages
from selfsup.plugins import PluginManager


@pytest.mark.parametrize("args", [["describe", "backbones"], ["describe", "data", "digits", "--json"]])
def test_describe_does_not_import_torch(args):
    res = cli_heavy_imports(args)
    assert res.returncode == 0, res.stderr
    assert res.stderr.rstrip().endswith("HEAVY="), res.stderr


def test_describe_one_component_as_json():
    res = cli("describe", "data", "digits", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["kind"] == "data" and info["plugin"] == "vision" and info["distribution"] == "selfsup-vision"
    assert info["version"] and info["modality"] == "vision" and info["declared"]
    assert info["keys"] == {"produces": {"image": "float32[1,{size|8},{size|8}]", "label": "int64[]"}}
    size = next(o for o in info["options"] if o["name"] == "size")
    assert size == {"name": "size", "type": "int | None", "required": False, "default": None, "constraints": ">= 8",
                    "description": "Resize to size x size (default: keep 8x8)."}
    split = next(o for o in info["options"] if o["name"] == "split")
    assert split["type"] == "'all' | 'train' | 'val'" and split["default"] == "train"


@pytest.mark.parametrize("kind", ["tasks", "task", "pretext_task", "pretext-tasks"])
def test_describe_accepts_one_vocabulary_of_kinds(kind):
    res = cli("describe", kind, "simclr")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("simclr (tasks, vision)")
    assert "consumes: views: float32[2,C,H,W]" in res.stdout and "feeds: image: float32[C,H,W]" in res.stdout
    assert "temperature" in res.stdout and "0.5" in res.stdout


def test_describe_lists_a_kind_and_warns_about_undeclared_components(tmp_path):
    write_plugin(tmp_path, "oldstyle", """
        import selfsup

        @selfsup.hookimpl
        def register_backbones(register):
            register("legacy_net", lambda options, context: None, summary="Declares no keys.")
        """)
    res = cli("--plugins-dir", str(tmp_path), "describe", "backbones", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["small_cnn"]["keys"] == {"consumes": {"image": "float32[{in_channels},H,W]"}}
    assert rows["legacy_net"]["declared"] is False and rows["legacy_net"]["keys"] == {"consumes": None}
    res = cli("--plugins-dir", str(tmp_path), "describe", "backbone")
    assert res.returncode == 0 and "small_cnn" in res.stdout and "legacy_net" in res.stdout
    assert "warning: backbone 'legacy_net' (oldstyle) declares no sample keys" in res.stderr


def test_describe_errors_name_the_kinds_and_the_nearest_name():
    res = cli("describe", "widgets")
    assert res.returncode == 2
    kinds = "data, augmentations, tasks, backbones, evaluators, heads, feedback, recipes"
    assert f"unknown kind 'widgets'; use one of: {kinds}" in res.stderr
    res = cli("describe", "backbones", "small_cnm")
    assert res.returncode == 2 and "no backbone named 'small_cnm' is installed; did you mean 'small_cnn'?" in res.stderr


def test_component_pages_are_up_to_date():
    pages = render_pages(PluginManager().registry)
    assert set(pages) == {"core.md", "vision.md", "text.md", "speech.md", "multimodal.md", "video.md"}
    assert "### `small_cnn`" in pages["vision.md"] and "`image: float32[{in_channels},H,W]`" in pages["vision.md"]
    assert "| `in_dim` | `int` | `required` |" in pages["core.md"]
    stale = stale_pages(REPO / "docs" / "components", pages)
    assert not stale, f"docs/components is stale ({', '.join(stale)}): regenerate with `{COMMAND}`"


def test_docgen_check_reports_stale_pages(tmp_path):
    out = tmp_path / "components"
    res = subprocess.run([sys.executable, "-m", "selfsup.docgen", "--out", str(out)], check=False, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (out / "vision.md").write_text("edited by hand\n")
    res = subprocess.run([sys.executable, "-m", "selfsup.docgen", "--out", str(out), "--check"], check=False,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "vision.md" in res.stderr and COMMAND in res.stderr
