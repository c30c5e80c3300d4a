"""The loop's contract with components: tasks are told the optimizer step (once per step, whatever
grad_accum is), and an exception inside a component names the component, its plugin and the data."""

from __future__ import annotations

import json

from conftest import cli, write_blobs_recipe, write_plugin

STEP_RECORDER = """
import json, os, selfsup
from selfsup.options import Options

class Opts(Options):
    log: str

def build(options, context):
    import torch
    from selfsup.components import TaskOutput

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def on_step(self, step):
            with open(options.log, "a") as fh:
                fh.write(json.dumps({"event": "step", "step": step}) + "\\n")

        def forward(self, batch, backbone):
            with open(options.log, "a") as fh:
                fh.write(json.dumps({"event": "forward"}) + "\\n")
            return TaskOutput(loss=(backbone(batch["input"]) * self.scale).pow(2).mean())

    return Recorder()

@selfsup.hookimpl
def register_pretext_tasks(register):
    register("recorder", build, options=Opts, summary="Records the steps it is told.")
"""

BROKEN_TASK = """
import selfsup

def build(options, context):
    import torch
    from selfsup.components import TaskOutput

    class Broken(torch.nn.Module):
        def forward(self, batch, backbone):
            return TaskOutput(loss=backbone(batch["image"]).sum())

    return Broken()

@selfsup.hookimpl
def register_pretext_tasks(register):
    register("rotnet", build, summary="Reads a key the data does not have.")
"""


def _recipe(tmp_path, task: str, options: str, grad_accum: int = 1, steps: int = 3):
    return write_blobs_recipe(tmp_path, task, options, grad_accum=grad_accum, max_steps=steps)


def test_tasks_are_told_the_optimizer_step_once_per_step_under_grad_accum(tmp_path):
    plugins, log = tmp_path / "plugins", tmp_path / "events.jsonl"
    write_plugin(plugins, "recorder", STEP_RECORDER)
    recipe = _recipe(tmp_path, "recorder", f'{{ log = "{log}" }}', grad_accum=4, steps=3)
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == [0, 1, 2]
    assert [e["event"] for e in events] == (["step"] + ["forward"] * 4) * 3


def test_an_exception_in_forward_names_the_task_its_plugin_and_the_batch_keys(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "rotnet", BROKEN_TASK)
    recipe = _recipe(tmp_path, "rotnet", "{}")
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "tasks.t (plugin rotnet): KeyError 'image' in forward; the batch has keys index, input, label" in res.stderr
    verbose = cli("--plugins-dir", str(plugins), "train", str(recipe), "--verbose",
                  "--set", f'output_dir="{tmp_path / "run2"}"')
    assert "Traceback" in verbose.stderr and "rotnet.py" in verbose.stderr


BROKEN_SOURCE = """
import selfsup

def build(options, context):
    import torch

    class Flaky:
        def __len__(self):
            return 256

        def __getitem__(self, i):
            if i == 7:
                raise ValueError("sample 7 is unreadable")
            return {"input": torch.zeros(8)}

    return Flaky()

@selfsup.hookimpl
def register_data_sources(register):
    register("flaky", build, summary="Raises on one sample.")
"""


def test_an_exception_in_a_data_source_names_it_and_the_index(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "flaky", BROKEN_SOURCE)
    recipe = _recipe(tmp_path, "recorder", f'{{ log = "{tmp_path / "log"}" }}', steps=20)
    write_plugin(plugins, "recorder", STEP_RECORDER)
    recipe.write_text(recipe.read_text().replace('type = "blobs"\noptions = { n = 256, dim = 8 }', 'type = "flaky"'))
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "data.d (plugin flaky): ValueError: sample 7 is unreadable in __getitem__(7)" in res.stderr
