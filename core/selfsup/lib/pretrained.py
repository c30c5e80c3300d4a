"""Public pretrained weights for any backbone: where the bytes come from, and how they go in.

A backbone's ``pretrained`` option (:class:`selfsup.options.PretrainedOptions`) takes one of:

* a local file (``.safetensors``, ``.pt``/``.pth``/``.bin`` state dict) or folder;
* ``hf:org/name[@revision]``: a Hugging Face Hub repository (a branch, tag or commit);
* ``timm:model.tag[@revision]``: a timm pretrained tag (``timm:convnext_tiny.fb_in1k``), whose
  weights timm keeps on the Hugging Face Hub (or, for old tags, at a URL);
* ``torchvision:ResNet18_Weights.IMAGENET1K_V1`` (or ``torchvision:resnet18.IMAGENET1K_V1``);
* ``torchaudio:WAV2VEC2_BASE``: a torchaudio pipeline bundle (``HUBERT_BASE``, ...).

:func:`resolve_pretrained` finds the files in the libraries' own caches (``huggingface_hub``'s
``HF_HUB_CACHE``; torch hub's ``$TORCH_HOME/hub/checkpoints``, which torchvision and torchaudio
use), so weights fetched once by selfsup, by ``hf download`` or by the libraries themselves load
offline. Downloads are opt-in: the backbone option ``pretrained_download = true`` or the
environment variable ``SELFSUP_ALLOW_DOWNLOADS=1``; without either a missing file raises
:class:`WeightsNotCached`, which says what is missing and how to fetch it once (``selfsup fetch``).
The resolved files are hashed (sha256) and, with the Hub's commit, recorded in the run's
``pretrained.json``.

:func:`load_state` puts a state dict into a module and returns a :class:`LoadReport` (matched,
missing, unexpected and shape-mismatched keys). Strict loading (the default) refuses unexpected
keys, shape mismatches and missing keys other than the ones the backbone declares optional (heads
it adds on top of the published encoder, such as BERT's pre-training heads), so a wrong
architecture is an error, never a silently random model. :func:`load_timm_pretrained` loads into a
timm model through timm's own checkpoint filters (position-embedding resampling, input-conv
adaptation, classifier removal).

Importing this module imports neither torch nor any hub library; they are imported when used.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

#: Set to 1 (or true/yes) to let selfsup download pretrained weights into the libraries' caches.
DOWNLOAD_ENV = "SELFSUP_ALLOW_DOWNLOADS"
KINDS = ("path", "hf", "timm", "torchvision", "torchaudio")
TORCHAUDIO_BASE_URL = "https://download.pytorch.org/torchaudio/models/"
#: What an ``hf:`` snapshot fetches: weights, configs and tokenizer files; ``*.bin`` only when a
#: repository has no safetensors.
HF_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken")  # never code: nothing runs it
#: What a tokenizer needs of an ``hf:`` snapshot (no weights).
HF_TOKENIZER_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class PretrainedSpec:
    """A parsed ``pretrained`` value: ``kind`` (one of :data:`KINDS`), ``name`` (a path, repository
    id, timm tag, weights enum or bundle name) and an optional ``revision`` (``hf:`` and ``timm:``)."""

    kind: str
    name: str
    revision: str | None = None

    def __str__(self) -> str:
        if self.kind == "path":
            return self.name
        return f"{self.kind}:{self.name}" + (f"@{self.revision}" if self.revision else "")


def parse_pretrained(text: str) -> PretrainedSpec:
    """Parse a ``pretrained`` value (syntax only: nothing is looked up). ValueError names the problem."""
    text = str(text).strip()
    if not text:
        raise ValueError("pretrained is empty: give a path, hf:org/name, timm:tag, torchvision:Weights or "
                         "torchaudio:BUNDLE")
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in KINDS or scheme == "path":
        if scheme in ("http", "https"):
            raise ValueError(f"{text!r}: URLs are not fetched directly; use hf:org/name, timm:, torchvision: or "
                             f"torchaudio:, or download the file and give its path")
        return PretrainedSpec("path", text[5:] if text.startswith("path:") else text)
    name, at, revision = rest.partition("@")
    if at and scheme not in ("hf", "timm"):
        raise ValueError(f"{text!r}: only hf: and timm: take a @revision")
    if at and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", revision):
        raise ValueError(f"{text!r}: {revision!r} is not a revision (a branch, tag or commit)")
    if scheme == "hf" and not _REPO.match(name):
        raise ValueError(f"{text!r}: expected hf:org/name[@revision] (a Hugging Face Hub repository id)")
    if scheme != "hf" and not _NAME.match(name):
        raise ValueError(f"{text!r}: {name!r} is not a {scheme} name")
    return PretrainedSpec(scheme, name, revision or None)


def downloads_allowed(option: bool = False) -> bool:
    """True when the backbone option allows downloads or ``SELFSUP_ALLOW_DOWNLOADS`` is 1/true/yes."""
    return bool(option) or os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class WeightsNotCached(FileNotFoundError):
    """Pretrained weights that are not in the local cache, with downloads off (or failing). The
    message says what is missing, where it was looked for and how to fetch it once."""


# ---------------------------------------------------------------------------- resolution


@dataclass
class ResolvedWeights:
    """Where a spec's files are on this machine. ``path`` is a file or a folder; ``files`` maps each
    file's name (relative to the folder) to ``{"sha256", "bytes"}``; ``revision`` is the Hub commit
    (``hf:``/``timm:`` on the Hub); ``details`` holds what the source says about the architecture
    (timm's pretrained config, a torchaudio bundle's model arguments, ...)."""

    spec: PretrainedSpec
    path: Path
    files: dict[str, dict[str, Any]]
    revision: str | None = None
    cache: str | None = None
    downloaded: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON for the run's ``pretrained.json``."""
        return {"spec": str(self.spec), "kind": self.spec.kind, "path": str(self.path), "revision": self.revision,
                "cache": self.cache, "downloaded": self.downloaded, "files": self.files,
                "details": json.loads(json.dumps(self.details, default=str))}


def resolve_pretrained(spec: PretrainedSpec | str, *, download: bool = False, base_dir: str | Path | None = None,
                       hf_patterns: Iterable[str] | None = None) -> ResolvedWeights:
    """The files of ``spec`` on this machine, fetched into the library's cache first when ``download``
    is true and they are missing. A relative path is taken from ``base_dir`` (the recipe's folder).
    ``hf_patterns`` narrows what an ``hf:`` snapshot holds (default :data:`HF_PATTERNS`).
    Raises :class:`WeightsNotCached` or ValueError (an unknown tag, bundle or weights name)."""
    spec = parse_pretrained(spec) if isinstance(spec, str) else spec
    if spec.kind == "path":
        path = Path(spec.name).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.exists():
            raise FileNotFoundError(f"pretrained weights not found: {path}")
        return ResolvedWeights(spec, path, _hash_files(path))
    if spec.kind == "hf":
        return _resolve_hf(spec, spec.name, spec.revision, download, tuple(hf_patterns or HF_PATTERNS))
    if spec.kind == "timm":
        return _resolve_timm(spec, download)
    if spec.kind == "torchvision":
        return _resolve_torchvision(spec, download)
    return _resolve_torchaudio(spec, download)


def _how_to_fetch(spec: PretrainedSpec) -> str:
    return (f"fetch it once with `selfsup fetch {spec}` (or set {DOWNLOAD_ENV}=1, or pretrained_download = true "
            f"on the backbone); afterwards it loads offline from the cache")


def _hf_cache() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _resolve_hf(spec: PretrainedSpec, repo: str, revision: str | None, download: bool,
                patterns: tuple[str, ...], need: tuple[str, ...] = ()) -> ResolvedWeights:
    """A snapshot of ``repo`` at ``revision`` holding ``patterns`` (and, when given, one of ``need``:
    file names tried in order, such as timm's ``model.safetensors`` then ``pytorch_model.bin``)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(f"{spec}: Hugging Face Hub weights need huggingface_hub (pip install huggingface_hub)") \
            from None
    cache = _hf_cache()

    def snapshot(allow: tuple[str, ...]) -> Path:
        try:
            return Path(snapshot_download(repo, revision=revision, allow_patterns=list(allow), cache_dir=cache,
                                          local_files_only=not download))
        except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, offline mode, HTTP errors
            where = f"{repo}" + (f"@{revision}" if revision else "")
            if download:
                raise WeightsNotCached(f"{spec}: could not fetch {where} from the Hugging Face Hub into {cache}: "
                                       f"{type(exc).__name__}: {exc}") from None
            raise WeightsNotCached(f"{spec}: {where} is not in the Hugging Face cache ({cache}) and downloads are "
                                   f"off; {_how_to_fetch(spec)}") from None

    folder = snapshot(need[:1] if need else patterns)
    if need:
        for name in need[1:]:
            if (folder / need[0]).exists():
                break
            folder = snapshot((name,))
        present = [n for n in need if (folder / n).exists()]
        if not present:
            raise WeightsNotCached(f"{spec}: the cached snapshot {folder} holds none of {', '.join(need)}; "
                                   f"{_how_to_fetch(spec)}")
        files = _hash_files(folder, only=present[:1])
    else:
        weights = any(fnmatch.fnmatch("model.safetensors", p) for p in patterns)  # else e.g. a tokenizer alone
        if weights and not any(folder.glob("*.safetensors")):  # an older repository: PyTorch pickles
            if not any(folder.glob("*.bin")):
                folder = snapshot(("*.bin",))
            patterns = (*patterns, "*.bin")
        names = sorted(p.name for p in folder.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in patterns))
        files = _hash_files(folder, only=names)  # what the spec fetched (another spec may share the snapshot)
        if weights and not any(name.endswith(_WEIGHT_SUFFIXES) for name in files):
            raise WeightsNotCached(f"{spec}: the cached snapshot {folder} holds no weights file; {_how_to_fetch(spec)}")
    return ResolvedWeights(spec, folder, files, revision=folder.name, cache=cache, downloaded=download)


def _torch_hub_file(spec: PretrainedSpec, url: str, download: bool) -> tuple[Path, bool]:
    """``url``'s file in torch hub's cache (``$TORCH_HOME/hub/checkpoints``), as torchvision and
    torchaudio keep it; downloaded (hash-checked where the name carries one) when allowed."""
    from urllib.parse import urlparse

    import torch.hub

    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if target.is_file():
        return target, False
    if not download:
        raise WeightsNotCached(f"{spec}: {target.name} is not in torch hub's cache ({target.parent}) and downloads "
                               f"are off; {_how_to_fetch(spec)} (or download {url} to {target})")
    target.parent.mkdir(parents=True, exist_ok=True)
    found = torch.hub.HASH_REGEX.search(target.name)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=found.group(1) if found else None,
                                       progress=False)
    except Exception as exc:  # noqa: BLE001 - network errors, a hash mismatch
        raise WeightsNotCached(f"{spec}: could not download {url} to {target}: {type(exc).__name__}: {exc}") from None
    return target, True


def _resolve_timm(spec: PretrainedSpec, download: bool) -> ResolvedWeights:
    import timm
    from timm.models import get_pretrained_cfg

    architecture, _, tag = spec.name.partition(".")
    if not timm.is_model(architecture):
        raise ValueError(f"{spec}: timm has no model {architecture!r}{_near(architecture, timm.list_models())}")
    cfg = get_pretrained_cfg(spec.name, allow_unregistered=False) if tag else get_pretrained_cfg(architecture)
    if cfg is None or (not cfg.hf_hub_id and not cfg.url):
        tags = timm.list_pretrained(f"{architecture}.*")
        raise ValueError(f"{spec}: timm has no pretrained weights {spec.name!r}{_near(spec.name, tags)}")
    details = {"architecture": architecture, "tag": cfg.tag or tag,
               "pretrained_cfg": {k: v for k, v in cfg.to_dict().items() if k not in ("license",)}}
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        resolved = _resolve_hf(spec, repo, spec.revision or getattr(cfg, "hf_hub_revision", None), download, (), names)
        resolved.path = resolved.path / next(iter(resolved.files))
        resolved.details = {**details, "hf_hub_id": repo}
        return resolved
    if spec.revision:
        raise ValueError(f"{spec}: these weights are a URL download ({cfg.url}), which has no revision")
    path, fetched = _torch_hub_file(spec, cfg.url, download)
    return ResolvedWeights(spec, path, _hash_files(path), cache=str(path.parent), downloaded=fetched,
                           details={**details, "url": cfg.url})


def _resolve_torchvision(spec: PretrainedSpec, download: bool) -> ResolvedWeights:
    from torchvision import models

    head, _, tag = spec.name.rpartition(".")
    try:
        if "_Weights" in head:
            weights = models.get_weight(spec.name)
        else:
            enum = models.get_model_weights(head)
            weights = enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"{spec}: torchvision has no weights {spec.name!r} ({exc}); e.g. torchvision:"
                         f"ResNet18_Weights.IMAGENET1K_V1 or torchvision:resnet18.IMAGENET1K_V1") from None
    path, fetched = _torch_hub_file(spec, weights.url, download)
    meta = {k: v for k, v in weights.meta.items() if k not in ("categories", "_docs")}
    return ResolvedWeights(spec, path, _hash_files(path), cache=str(path.parent), downloaded=fetched,
                           details={"weights": f"{type(weights).__name__}.{weights.name}", "url": weights.url,
                                    "meta": meta})


def _resolve_torchaudio(spec: PretrainedSpec, download: bool) -> ResolvedWeights:
    from torchaudio import pipelines

    bundle = getattr(pipelines, spec.name, None)
    path_in_store, params = getattr(bundle, "_path", None), getattr(bundle, "_params", None)
    if bundle is None or path_in_store is None or params is None:
        known = [n for n in dir(pipelines) if n.isupper() and hasattr(getattr(pipelines, n), "_params")]
        raise ValueError(f"{spec}: torchaudio.pipelines has no model bundle {spec.name!r}{_near(spec.name, known)}")
    url = TORCHAUDIO_BASE_URL + path_in_store
    path, fetched = _torch_hub_file(spec, url, download)
    details = {"bundle": spec.name, "url": url, "model_type": getattr(bundle, "_model_type", "Wav2Vec2"),
               "params": dict(params), "sample_rate": int(bundle.sample_rate),
               "normalize_waveform": bool(getattr(bundle, "_normalize_waveform", False))}
    return ResolvedWeights(spec, path, _hash_files(path), cache=str(path.parent), downloaded=fetched, details=details)


def _near(name: str, known: Iterable[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(known), n=3)
    return f"; did you mean {', '.join(near)}?" if near else ""


def _hash_files(path: Path, only: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """sha256 and size of a file, or of a folder's top-level files (weights, configs, tokenizers)."""
    path = Path(path)
    if path.is_file():
        items = [(path.name, path)]
    else:
        names = list(only) if only is not None else sorted(p.name for p in path.iterdir() if p.is_file())
        items = [(n, path / n) for n in names if not n.startswith(".")]
    out = {}
    for name, file in items:
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out[name] = {"sha256": digest.hexdigest(), "bytes": file.stat().st_size}
    return out


# ----------------------------------------------------------------------------- reading weights


def weights_file(path: Path) -> Path:
    """The weights file of a folder (``model.safetensors``, ``pytorch_model.bin``, a selfsup export's
    ``backbone.safetensors``, ...), or ``path`` itself when it is a file."""
    path = Path(path)
    if path.is_file():
        return path
    for name in ("model.safetensors", "backbone.safetensors", "pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).is_file():
            return path / name
    candidates = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(f"{path} holds no weights file (*.safetensors, *.bin, *.pt, *.pth)")
    raise ValueError(f"{path} holds several weights files ({', '.join(p.name for p in candidates)}); "
                     f"name one of them")


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a weights file (or of a folder's, :func:`weights_file`): safetensors, or a
    PyTorch pickle read with ``weights_only=True`` (no code runs). A checkpoint dict whose tensors
    sit under ``state_dict``, ``model`` or ``module`` is unwrapped."""
    import torch

    file = weights_file(path)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not torch.is_tensor(state.get(key)):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{file} holds a {type(state).__name__}, not a state dict")
    return state


# ------------------------------------------------------------------------------- loading


class PretrainedMismatch(ValueError):
    """Strict loading found weights that do not fit the module; the message lists them."""


@dataclass
class LoadReport:
    """What loading a state dict did: ``matched`` keys (loaded), ``missing`` (kept their initial
    values), ``unexpected`` (in the file, not in the module) and ``mismatched`` shapes
    (``(key, file shape, module shape)``, not loaded), and free-form ``notes``."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.matched)} tensors loaded"]
        for label, keys in (("missing (initialised)", self.missing), ("unexpected (ignored)", self.unexpected),
                            ("shape-mismatched (initialised)", [k for k, *_ in self.mismatched])):
            if keys:
                parts.append(f"{len(keys)} {label}: {_sample(keys)}")
        return "; ".join(parts + self.notes)

    def as_dict(self) -> dict[str, Any]:
        return {"matched": len(self.matched), "missing": self.missing, "unexpected": self.unexpected,
                "mismatched": [list(m) for m in self.mismatched], "notes": self.notes}


def _sample(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state(module: Any, state: Mapping[str, Any], *, strict: bool = True, optional: Iterable[str] = (),
               source: str = "the weights") -> LoadReport:
    """Load ``state`` into ``module`` and report what happened. Strict: every key of ``state`` must be
    a key of ``module`` with the same shape, and every key of ``module`` must be in ``state`` unless
    it starts with one of the ``optional`` prefixes (heads the backbone adds, which keep their
    initial values and are reported as missing). Not strict: whatever matches by name and shape is
    loaded, the rest is reported. Raises :class:`PretrainedMismatch` listing the problems."""
    own = module.state_dict()
    optional = tuple(optional)
    mismatched = [(k, list(v.shape), list(own[k].shape)) for k, v in state.items()
                  if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    required = [k for k in missing if not k.startswith(optional)]
    if strict and (mismatched or unexpected or required):
        problems = []
        if mismatched:
            problems.append("shape mismatches " + _sample([f"{k} {a} vs {b}" for k, a, b in mismatched]))
        if unexpected:
            problems.append(f"{len(unexpected)} keys the backbone does not have: {_sample(unexpected)}")
        if required:
            problems.append(f"{len(required)} backbone keys missing from it: {_sample(required)}")
        raise PretrainedMismatch(f"{source} do not fit this backbone ({'; '.join(problems)}); check the "
                                 f"architecture options, or set pretrained_strict = false to load what matches")
    bad = {k for k, *_ in mismatched}
    loadable = {k: v for k, v in state.items() if k in own and k not in bad}
    type(module).load_state_dict(module, loadable, strict=False)  # the class's (timm's loader may wrap the instance's)
    return LoadReport(matched=sorted(loadable), missing=missing, unexpected=unexpected, mismatched=mismatched)


def load_timm_pretrained(model: Any, resolved: ResolvedWeights, *, strict: bool = True, in_chans: int = 3,
                         num_classes: int = 0, optional: Iterable[str] = ()) -> LoadReport:
    """Load ``resolved`` (a timm tag's file, or any timm-format state dict) into the timm ``model``
    through timm's own ``load_pretrained``: the architecture's checkpoint filter (position-embedding
    resampling for another image size, format conversion), input-conv adaptation for another
    ``in_chans`` and classifier removal (``num_classes = 0``). Then as :func:`load_state`."""
    import sys

    from timm.models import load_pretrained

    file = weights_file(resolved.path)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update((resolved.details or {}).get("pretrained_cfg") or {})
    # a hub file is a native state dict; an old URL tag's .npz goes through the model's own JAX reader
    custom = file.suffix == ".npz"
    cfg.update(file=str(file), hf_hub_id=None, url=None, state_dict=None, custom_load=custom)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    reports: list[LoadReport] = []

    def load_state_dict(state: Mapping[str, Any], strict: bool = True, **_: Any) -> Any:
        report = load_state(model, state, strict=strict_, optional=optional, source=str(resolved.spec))
        reports.append(report)
        return SimpleNamespace(missing_keys=report.missing, unexpected_keys=report.unexpected)

    strict_ = strict
    model.load_state_dict = load_state_dict  # the instance's: timm's loader calls it with the filtered state
    quiet = logging.getLogger("timm")  # its key-list warnings: the LoadReport says the same, once
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        load_pretrained(model, pretrained_cfg=cfg, num_classes=num_classes, in_chans=in_chans, filter_fn=filter_fn,
                        strict=strict)
    finally:
        del model.load_state_dict
        quiet.setLevel(level)
    if custom:
        return LoadReport(matched=sorted(model.state_dict()), notes=[f"read by timm's {type(model).__name__}"
                                                                       f".load_pretrained (a JAX .npz checkpoint)"])
    if not reports:
        raise PretrainedMismatch(f"{resolved.spec}: timm loaded no weights from {file}")
    return reports[-1]


# ------------------------------------------------------------------------------ the record


def attach_record(module: Any, resolved: ResolvedWeights, report: LoadReport) -> dict[str, Any]:
    """Set ``module.pretrained_record`` (what the core writes to the run's ``pretrained.json`` and
    prints): the resolved files with their hashes, and the load report."""
    record = {**resolved.record(), "load": report.as_dict(), "summary": report.summary()}
    module.pretrained_record = record
    return record



# ----------------------------------------------------------------- a backbone's own weights


def load_pretrained_into(module: Any, options: Any, *, type_name: str | None = None,
                         accepts: Iterable[str] = ("path", "hf"), optional: Iterable[str] = (),
                         convert: Any = None, base_dir: str | Path | None = None,
                         context: Any = None) -> LoadReport | None:
    """The common case of a backbone's ``pretrained`` option (:class:`selfsup.options.PretrainedOptions`):
    resolve ``options.pretrained`` (a local file or folder, or an ``hf:`` repository holding a state
    dict or a ``selfsup export --format selfsup`` folder), read its tensors, pass them through
    ``convert(state) -> state`` when given (another library's names), load them with
    :func:`load_state` (``options.pretrained_strict``) and attach the record. Returns None when
    ``options.pretrained`` is unset, or when ``context`` (the factory's BuildContext) says trained
    weights are loaded next (``load_weights`` False). Other kinds than ``accepts`` are a ValueError
    naming the ones the backbone takes."""
    text = getattr(options, "pretrained", None)
    if text is None:
        return None
    spec = parse_pretrained(text)
    accepts = tuple(accepts)
    if spec.kind not in accepts:
        forms = {"path": "a local file or folder", "hf": "hf:org/name", "timm": "timm:model.tag",
                 "torchvision": "torchvision:Weights.NAME", "torchaudio": "torchaudio:BUNDLE"}
        raise ValueError(f"pretrained = {text!r}: {type_name or 'this backbone'} takes "
                         f"{', '.join(forms[k] for k in accepts)}, not {spec.kind}: weights")
    if context is not None and not getattr(context, "load_weights", True):
        return None  # a checkpoint's or an export's weights replace them right after the build
    resolved = resolve_pretrained(spec, download=downloads_allowed(getattr(options, "pretrained_download", False)),
                                  base_dir=base_dir)
    state = read_export_or_state_dict(resolved.path, type_name)
    if convert is not None:
        state = convert(state)
    report = load_state(module, state, strict=getattr(options, "pretrained_strict", True), optional=optional,
                        source=str(spec))
    attach_record(module, resolved, report)
    return report


def read_export_or_state_dict(path: Path, type_name: str | None = None) -> dict[str, Any]:
    """The tensors of a ``selfsup export --format selfsup`` folder (checked to be a ``type_name``
    backbone when given) or of a weights file or folder (:func:`read_state_dict`)."""
    path = Path(path)
    manifest = path / "selfsup.json"
    if path.is_dir() and manifest.is_file():
        info = json.loads(manifest.read_text())
        if isinstance(info, dict) and info.get("format") == "selfsup-export":
            if type_name and info.get("type") and info["type"] != type_name:
                raise ValueError(f"{path} is an export of a {info['type']!r} backbone, not {type_name!r}")
            return read_state_dict(path / info.get("weights", "backbone.safetensors"))
    return read_state_dict(path)
