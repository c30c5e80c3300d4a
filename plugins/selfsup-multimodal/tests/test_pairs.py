"""Paired sources are composed of sibling plugins' components built by name, never imported."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from selfsup.components import BuildContext

BLOCK_SIBLINGS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("selfsup_vision", "selfsup_text", "selfsup_speech"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
"""


def test_the_plugin_loads_without_its_siblings():
    """Loading selfsup-multimodal (its hooks and options) imports no module of vision, text or speech:
    the options of a part are a plain table, checked by the part when it is built."""
    code = BLOCK_SIBLINGS + (
        "import selfsup_multimodal, selfsup_multimodal.data.options as o\n"
        "o.DigitCaptionsOptions(split='val', digits={'limit': 3}); o.SpokenWordsOptions(speech={'seed': 1})\n"
        "from selfsup.plugins import PluginManager\n"
        "pm = PluginManager(load_entry_points=False); pm.register(selfsup_multimodal, 'multimodal')\n"
        "assert not pm.errors and pm.registry.get('data_source', 'digit_captions') is not None\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_digit_captions_pass_their_options_on_to_digits_and_texts():
    source = BuildContext(name="val").build("data", "digit_captions",
                                            {"split": "val", "digits": {"limit": 12}, "tokenizer": "bytes"})
    assert len(source) == 12
    sample = source[0]
    assert sample["image"].shape == (1, 8, 8) and sample["input_ids"][0] == 2  # [CLS]
    batch = source.collate([source[i] for i in range(4)])
    assert batch["image"].shape == (4, 1, 8, 8) and batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["label"].tolist() == [int(source[i]["label"]) for i in range(4)] and len(batch["text"]) == 4
    assert torch.equal(batch["input_ids"][0, : len(sample["input_ids"])], sample["input_ids"])


def test_a_parts_bad_options_are_reported_against_the_part():
    with pytest.raises(ValueError, match="invalid options for the data source 'digits': limt: Extra inputs"):
        BuildContext(name="train").build("data", "digit_captions", {"digits": {"limt": 3}})
    with pytest.raises(ValueError, match="split is given twice: as split and as digits.split"):
        BuildContext(name="train").build("data", "digit_captions", {"split": "val", "digits": {"split": "train"}})
