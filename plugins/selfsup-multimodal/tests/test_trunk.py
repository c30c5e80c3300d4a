"""The trunk adapters (``trunk_image``, ``trunk_audio``) and the multimodal recipes.

Sharing: the adapters hold the very ``BertEncoder`` of a text backbone; the model counts, steps and
saves those tensors once, and every task's loss reaches them. Shapes and padding of each adapter,
the conformance suite for the standalone adapters, option and ordering errors, and a shortened
end-to-end run of ``multimodal-quickstart`` against its random initialisation.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

import selfsup
import selfsup_multimodal
import selfsup_speech
import selfsup_vision
from selfsup.components import BuildContext
from selfsup.engine import checkpoint as ckpt
from selfsup.engine.build import SelfSupModel, build_run
from selfsup.engine.optim import build_optimizer
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import RecipeError, TrainSpec, load_recipe
from selfsup.testing import BackboneConformance, train_against_random_init
from selfsup_multimodal.backbones.trunk import load_export

TEXT = {"family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 64, "tokenizer": "bytes"}
OWN = {"layers": 2, "heads": 2, "dim": 32}  # the trunk's size, for adapters with their own layers
AUDIO = {"n_mels": 16, "hop_ms": 20.0}


def build(kind: str, name: str, options: dict, key: str | None = None, **context):
    comp = get_plugin_manager().registry.get(kind, name)
    assert comp is not None, f"no {kind} {name!r}"
    return comp.build(options, BuildContext(name=key or name, **context))


def trunk_backbones(seed: int = 0, shared: bool = True) -> dict[str, torch.nn.Module]:
    """``{"text", "image", "audio"}``: a BERT backbone and two adapters on its layers (or their own)."""
    torch.manual_seed(seed)
    text = build("backbone", "transformer", TEXT, key="text")
    trunk = {"trunk": "text"} if shared else OWN
    image = build("backbone", "trunk_image", {**trunk}, key="image", backbones={"text": text})
    audio = build("backbone", "trunk_audio", {**trunk, **AUDIO}, key="audio", backbones={"text": text, "image": image})
    return {"text": text, "image": image, "audio": audio}


def clips(*lengths: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    t = [torch.arange(n) / 16000.0 for n in lengths]
    tone = [0.3 * torch.sin(2 * math.pi * (180.0 + 90 * i) * ti) for i, ti in enumerate(t)]
    return [{"audio": (tone[i] + 0.05 * torch.randn(n, generator=g)).float(), "label": i % 2}
            for i, n in enumerate(lengths)]


def audio_batch(*lengths: int) -> dict:
    from selfsup_speech.data.collate import pad_audio

    return pad_audio(clips(*lengths))


def inputs() -> dict:
    """One input batch per modality."""
    text = torch.tensor([[1, 40, 50, 60, 2, 0], [1, 70, 80, 90, 100, 2]])
    return {"image": torch.rand(3, 1, 8, 8), "text": {"input_ids": text, "attention_mask": (text != 0).long()},
            "audio": audio_batch(8000, 5000)}


def trunk_tensors(text) -> list[torch.nn.Parameter]:
    return list(text.body.encoder.parameters())


def numel(params) -> int:
    return sum(p.numel() for p in params)


# ------------------------------------------------------------------------------------------ sharing


def test_adapters_hold_the_trunk_layers():
    b = trunk_backbones()
    assert b["image"].encoder is b["text"].body.encoder and b["audio"].encoder is b["text"].body.encoder
    shared = {id(p) for p in trunk_tensors(b["text"])}
    for name in ("image", "audio"):
        held = {id(p) for n, p in b[name].named_parameters() if n.startswith("encoder.")}
        assert held == shared, name
    assert b["image"].output_dim == b["audio"].output_dim == b["text"].output_dim == 32


def test_model_counts_shared_parameters_once():
    b = trunk_backbones()
    model = SelfSupModel(b, {}, {})
    unique = numel(model.parameters())
    trunk = numel(trunk_tensors(b["text"]))
    per_backbone = sum(numel(m.parameters()) for m in b.values())
    assert unique == per_backbone - 2 * trunk  # the adapters' copies of the trunk are the same tensors
    assert len(model.state_dict()) > len(list(model.parameters()))  # the aliases are still named
    separate = SelfSupModel(trunk_backbones(shared=False), {}, {})
    assert numel(separate.parameters()) == unique + 2 * trunk  # own layers of the trunk's size


def test_one_optimizer_step_moves_the_shared_weights_once():
    b = trunk_backbones()
    model = SelfSupModel(b, {}, {})
    lr = 0.1
    optimizer = build_optimizer(model,
                                TrainSpec(optimizer="sgd", lr=lr, max_steps=1, optimizer_options={"momentum": 0.0}))
    listed = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert len(listed) == len(set(listed)) == len(list(model.parameters()))
    x = inputs()
    loss = (b["image"](x["image"]).pow(2).mean() + b["text"].embed(x["text"]).pow(2).mean()
            + b["audio"].embed(x["audio"]).pow(2).mean())
    loss.backward()
    weight = b["text"].body.encoder.layer[0].attention.self.query.weight
    before, grad = weight.detach().clone(), weight.grad.clone()
    assert grad.abs().sum() > 0
    optimizer.step()
    torch.testing.assert_close(weight.detach(), before - lr * grad)  # one step of the summed gradient, not two
    assert b["image"].encoder.layer[0].attention.self.query.weight is weight


def test_checkpoint_round_trip_keeps_shared_tensors(tmp_path):
    from safetensors import safe_open

    trained = SelfSupModel(trunk_backbones(seed=0), {}, {})
    path = ckpt.save_checkpoint(tmp_path, 1, trained, {"step": 1}, keep=1, meta={})
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        stored = list(f.keys())
    layer_keys = [k for k in stored if ".encoder.layer.0.attention.self.query.weight" in k]
    assert len(layer_keys) == 1, layer_keys  # stored once, under one of its names

    fresh = SelfSupModel(trunk_backbones(seed=1), {}, {})
    ckpt.load_weights(path, fresh)  # raises on missing or unexpected names
    want, got = trained.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)
    text, image, audio = (fresh.backbones[k] for k in ("text", "image", "audio"))
    assert image.encoder is text.body.encoder and audio.encoder is text.body.encoder  # still one set of tensors
    with torch.no_grad():
        text.body.encoder.layer[1].output.dense.bias.add_(1.0)
    assert torch.equal(image.encoder.layer[1].output.dense.bias, text.body.encoder.layer[1].output.dense.bias)


def _tasks(b: dict) -> dict:
    """SimCLR (image), MLM (text) and HuBERT (audio) on tiny in-memory data, with a batch each."""
    tokenizer = b["text"].tokenizer
    sentences = ["the quick brown fox jumps", "over the lazy dog again", "a trunk shared by three",
                 "masked tokens here"]
    text_data = [{"input_ids": torch.tensor(tokenizer(s)["input_ids"])} for s in sentences]
    speech = clips(6000, 7000, 8000, 5000)
    simclr = build("pretext_task", "simclr", {"projection_hidden_dim": 32, "projection_dim": 16}, backbone=b["image"])
    mlm = build("pretext_task", "mlm", {"masking": "token", "mlm_probability": 0.3}, backbone=b["text"], data=text_data)
    hubert = build("pretext_task", "hubert", {"clusters": 4, "kmeans_iters": 5, "final_dim": 8, "mask_prob": 0.5,
                                              "mask_length": 2, "feature_batch_size": 4}, backbone=b["audio"],
                   data=speech)
    return {
        "image": (simclr, {"views": torch.rand(4, 2, 1, 8, 8)}),
        "text": (mlm, mlm.collate([{**s, "index": i} for i, s in enumerate(text_data)])),
        "audio": (hubert, hubert.collate([{**s, "index": i} for i, s in enumerate(speech)])),
    }


def test_gradient_of_every_task_reaches_the_trunk():
    b = trunk_backbones()
    tasks = _tasks(b)
    for modality, (task, batch) in tasks.items():
        for p in SelfSupModel(b, {}, {}).parameters():
            p.grad = None
        task(batch, b[modality]).loss.backward()
        for i, layer in enumerate(b["text"].body.encoder.layer):
            reached = sum(float(p.grad.abs().sum()) for p in layer.parameters() if p.grad is not None)
            assert reached > 0, f"{modality}: no gradient in trunk layer {i}"
        others = [m for m in ("image", "audio") if m != modality]  # the other adapters' own input layers stay untouched
        for other in others:
            own = [p for n, p in b[other].named_parameters() if not n.startswith("encoder.")]
            assert all(p.grad is None for p in own), (modality, other)


# ------------------------------------------------------------------------------------------ image adapter


def test_image_adapter_shapes_and_pooling():
    torch.manual_seed(0)
    cls = build("backbone", "trunk_image", {**OWN, "pooling": "cls"}).eval()
    x = torch.rand(5, 1, 8, 8)
    assert cls.tokens(x).shape == (5, 1 + 16, 32)
    states = cls.layers(x)
    assert len(states) == 2 and all(s.shape == (5, 17, 32) for s in states)
    assert cls(x).shape == (5, 32)
    torch.testing.assert_close(cls(x), states[-1][:, 0])
    torch.testing.assert_close(cls.embed({"image": x, "label": torch.zeros(5)}), cls(x))
    mean = build("backbone", "trunk_image",
                 {**OWN, "pooling": "mean", "image_size": 16, "patch_size": 4, "in_channels": 3})
    assert mean(torch.rand(2, 3, 16, 16)).shape == (2, 32)
    with pytest.raises(ValueError, match="expects images"):
        cls(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="batch\\['image'\\]"):
        cls.embed({"views": x})


def test_adapters_export_on_their_own_and_load_without_the_trunk(tmp_path):
    b = trunk_backbones(seed=3, shared=True)
    with torch.no_grad():  # move the trunk off its init so a wrong copy would show
        for p in b["text"].body.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = inputs()
    for key in ("image", "audio"):
        b[key].export(tmp_path / key)
        loaded = load_export(tmp_path / key).eval()
        original = b[key].eval()
        assert type(loaded) is type(original) and loaded.trunk is None
        assert loaded.encoder is not b["text"].body.encoder
        assert loaded.options.layers == 2 and loaded.options.dim == 32
        with torch.no_grad():
            batch = {"image": x["image"]} if key == "image" else x["audio"]
            torch.testing.assert_close(loaded.embed(batch), original.embed(batch))
        assert "load_export('.')" in (tmp_path / key / "README.md").read_text()
    meta = (tmp_path / "image" / "selfsup.json").read_text()
    assert '"backbone": "trunk_image"' in meta and '"trained_on_trunk": "text"' in meta
    (tmp_path / "image" / "selfsup.json").write_text(meta.replace("trunk_image", "mlp"))
    with pytest.raises(ValueError, match="not a trunk adapter"):
        load_export(tmp_path / "image")


# ------------------------------------------------------------------------------------------ audio adapter


def test_audio_adapter_interface_and_padding():
    torch.manual_seed(0)
    enc = build("backbone", "trunk_audio", {**OWN, **AUDIO}).eval()
    assert enc.frame_rate == 50.0 and enc.frame_offset == 0.0 and enc.output_dim == enc.latent_dim == 32
    batch = audio_batch(8000, 5000, 3000)
    z, padding = enc.latents(batch)
    assert z.shape == (3, 26, 32) and padding.shape == (3, 26)
    assert (~padding).sum(1).tolist() == enc.num_frames(batch["lengths"]).tolist() == [26, 16, 10]
    assert torch.equal(enc.padding_mask(batch), padding)
    assert float(z[padding].detach().abs().sum()) == 0.0
    layers = enc.layers(batch)
    assert len(layers) == 2 and all(h.shape == (3, 26, 32) for h in layers)
    frames, _ = enc.frames(batch)
    torch.testing.assert_close(frames, layers[-1])
    assert enc.embed(batch).shape == (3, 32)
    # padding changes nothing: each clip alone gives the same frames and features as in the batch
    for i, n in enumerate([8000, 5000, 3000]):
        alone = {"audio": batch["audio"][i : i + 1, :n], "lengths": torch.tensor([n])}
        f, p = enc.frames(alone)
        assert not p.any()
        torch.testing.assert_close(f[0], frames[i, : f.shape[1]], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(enc.embed(alone)[0], enc.embed(batch)[i], atol=1e-5, rtol=1e-4)


def test_audio_adapter_mask_embedding():
    torch.manual_seed(0)
    enc = build("backbone", "trunk_audio", {**OWN, **AUDIO}).eval()
    z, padding = enc.latents(audio_batch(8000, 6000))
    mask = torch.zeros_like(padding)
    mask[:, 3:7] = True
    masked = enc.contextualize(z, padding, mask)
    assert masked.shape == z.shape
    assert not torch.allclose(masked, enc.contextualize(z, padding))
    # the masked frames' latents no longer matter
    z2 = z.clone()
    z2[:, 3:7] = torch.randn(2, 4, 32)
    torch.testing.assert_close(enc.contextualize(z2, padding, mask), masked)
    grads = torch.autograd.grad(enc.contextualize(z, padding, mask).sum(), enc.mask_embedding)
    assert grads[0].abs().sum() > 0


# ------------------------------------------------------------------------------------------ options and errors


def test_trunk_must_come_first_and_be_a_bert_encoder():
    text = build("backbone", "transformer", TEXT, key="text")
    with pytest.raises(ValueError,
                       match=r"backbones\.image\.options\.trunk = 'text': no backbone of that name is defined before"):
        build("backbone", "trunk_image", {"trunk": "text"}, key="image", backbones={})
    gpt = build("backbone", "transformer", {**TEXT, "family": "gpt2"}, key="gpt")
    with pytest.raises(ValueError, match="family = 'bert', got 'gpt2'"):
        build("backbone", "trunk_audio", {"trunk": "gpt"}, key="audio", backbones={"gpt": gpt, "text": text})
    with pytest.raises(ValueError, match="family = 'bert'"):
        image = build("backbone", "trunk_image", OWN, key="image")
        build("backbone", "trunk_audio", {"trunk": "image"}, key="audio", backbones={"image": image})


RECIPE = """
[data.digits]
type = "digits"
options = { split = "train", limit = 16 }

[augmentations.views]
type = "multi_view"
options = { views = 2, size = 8 }

[backbones.image]
type = "trunk_image"
options = { trunk = "text" }

[backbones.text]
type = "transformer"
options = { family = "bert", layers = 1, heads = 2, dim = 32, context = 16, tokenizer = "bytes" }

[tasks.simclr]
type = "simclr"
data = "digits"
augment = ["views"]
backbone = "image"

[train]
max_steps = 1
"""


def test_recipe_error_names_the_adapter_when_the_trunk_comes_later(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    pm = get_plugin_manager()
    loaded = load_recipe(str(path), pm.registry)
    with pytest.raises(RecipeError, match=r"backbones\.image: 'trunk_image' could not be built: .*defined before"):
        build_run(loaded.recipe, pm.registry, base_dir=loaded.base_dir, source=loaded.source)


@pytest.mark.parametrize("name, options", [
    ("trunk_image", {"trunk": "text", "layers": 2}),
    ("trunk_audio", {"trunk": "text", "dim": 64}),
    ("trunk_image", {"dim": 30, "heads": 4}),
    ("trunk_image", {"image_size": 8, "patch_size": 3}),
    ("trunk_audio", {"hop_ms": 30.0, "win_ms": 25.0}),
])
def test_options_reject(name, options):
    with pytest.raises(ValidationError):
        get_plugin_manager().registry.get("backbone", name).options.model_validate(options)


# ------------------------------------------------------------------------------------------ conformance


class Tones:
    """Fixed-length chirps (the conformance suite batches with default_collate)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"audio": clips(4000, 4000, 4000, 4000, seed=i)[i]["audio"], "label": i % 2}


class TonesPlugin:
    @selfsup.hookimpl
    def register_data_sources(self, register):
        register("trunk_test_tones", lambda options, context: Tones(), summary="Fixed-length test chirps.")


class TestTrunkImageConformance(BackboneConformance):
    plugins = [selfsup_vision, selfsup_speech, selfsup_multimodal]
    backbone = ("trunk_image", OWN)
    data = ("digits", {"split": "train", "limit": 4})
    bad_options = [{"pooling": "max"}, {"patch_size": 0}, {"layers": 0}]
    inert_options = {"trunk": "names an earlier backbone of a recipe, whose trunk it shares; the suite builds one"}


class TestTrunkAudioConformance(BackboneConformance):
    plugins = [selfsup_vision, selfsup_speech, selfsup_multimodal, TonesPlugin()]
    backbone = ("trunk_audio", {**OWN, **AUDIO})
    data = ("trunk_test_tones", {})
    bad_options = [{"n_mels": 4}, {"normalize": "batch"}, {"trunk": "text", "heads": 2}]
    option_variants = {"sample_rate": 22050}  # 16,001 Hz gives the same window, hop and mel bands (f_max = rate // 2)
    inert_options = {"trunk": "names an earlier backbone of a recipe, whose trunk it shares; the suite builds one"}


# ------------------------------------------------------------------------------------------ end to end


def test_recipes_are_registered_and_differ_only_in_the_layers():
    pm = get_plugin_manager()
    shared = load_recipe("multimodal-quickstart", pm.registry).recipe
    separate = load_recipe("multimodal-separate", pm.registry).recipe
    assert shared.backbones["image"].options["trunk"] == shared.backbones["audio"].options["trunk"] == "text"
    assert list(shared.backbones) == list(separate.backbones) == ["text", "image", "audio"]
    assert "trunk" not in separate.backbones["image"].options and "trunk" not in separate.backbones["audio"].options
    assert shared.tasks == separate.tasks and shared.evaluators == separate.evaluators
    assert shared.train == separate.train
    assert shared.data == separate.data


#: multimodal-quickstart shrunk: 600 round-robin steps (200 per task) with smaller image and text
#: batches, 400 training paragraphs, 2 utterances per (keyword, voice) (720 training clips, 120
#: scored ones from the 3 held-out voices).
SHORT = [
    "train.max_steps=600", "train.warmup_steps=30", "train.log_every=100",
    "tasks.simclr.batch_size=32", "tasks.mlm.batch_size=8", "tasks.hubert.batch_size=32",
    "data.text.options.limit=400", "data.text_val.options.limit=60",
    "data.speech.options.utterances_per_pair=2", "data.speech_val.options.utterances_per_pair=2",
]


@pytest.fixture
def speech_cache(tmp_path_factory):
    """Synthesized speech goes to a cache of the test session, never the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp() / "speech-e2e-cache"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE_DIR", str(root))
        yield root


@pytest.mark.slow
def test_shortened_quickstart_beats_random_init_in_every_modality(tmp_path, speech_cache):
    """multimodal-quickstart cut short: each modality's evaluator beats the same model at its
    random initialisation (kNN on held-out digits, masked-token accuracy on held-out text, the
    few-shot keyword probe on held-out voices)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained, random_init = train_against_random_init("multimodal-quickstart", tmp_path / "run", SHORT)
    finally:
        torch.set_num_threads(before)
    for metric, margin in [("knn/accuracy", 0.05), ("mlm_accuracy/accuracy", 0.02), ("keywords/accuracy", 0.03)]:
        assert trained[metric] > random_init[metric] + margin, (metric, trained[metric], random_init[metric])


@pytest.mark.slow
def test_two_processes_train_three_tasks_on_the_shared_trunk(tmp_path, speech_cache):
    """multimodal-quickstart under DDP (2 gloo processes), cut to 6 round-robin steps. Each step
    trains one task, so the other adapters get no gradient: the run must find the unused
    parameters by itself, log every task's loss, and export each backbone so it loads alone."""
    run = tmp_path / "run"
    overrides = [
        "train.max_steps=6", "train.warmup_steps=1", "train.log_every=1",
        "tasks.simclr.batch_size=8", "tasks.mlm.batch_size=4", "tasks.hubert.batch_size=8",
        "data.text.options.limit=40", "data.text_val.options.limit=8",
        "data.speech.options.utterances_per_pair=1", "data.speech_val.options.utterances_per_pair=1",
        "evaluators.knn=", "evaluators.mlm_accuracy=", "evaluators.keywords=", f'output_dir="{run}"',
    ]
    args = [sys.executable, "-m", "selfsup", "train", "multimodal-quickstart", "--no-progress", "--nproc", "2"]
    for o in overrides:
        args += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 7))
    for step, task in zip(range(1, 7), ["simclr", "mlm", "hubert"] * 2):  # round robin, in recipe order
        record = train[step - 1]
        assert math.isfinite(record[f"loss/{task}"]), record
        assert not any(f"loss/{other}" in record for other in ("simclr", "mlm", "hubert") if other != task)
    assert {p.name for p in (run / "export").iterdir()} == {"text", "image", "audio"}
    image = load_export(run / "export" / "image").eval()
    with torch.no_grad():
        assert image.embed({"image": torch.rand(2, 1, 8, 8)}).shape == (2, 128)
