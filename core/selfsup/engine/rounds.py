"""Training in rounds (``[rounds]``, docs/autonomous.md): each round trains, then a feedback component
looks at the model and its training data and reshapes the next round's data.

A recipe with ``[rounds] count = R`` splits its optimizer steps into R rounds (``steps_per_round``
each but the last, or the steps split evenly). When round ``r < R - 1`` ends at step ``B_r``:

1. a checkpoint of step ``B_r`` is written (the round's training is kept whatever happens next);
2. rank 0 runs the feedback (``Feedback.run``; frozen model, no gradients, the run's RNG states
   untouched, its own generator seeded by (seed, round)) and checks what it returned;
3. the result is written to ``<run>/rounds/<r>/``: ``feedback.pt`` (weights, fields, samples; read
   back with ``torch.load(weights_only=True)``) and ``feedback.json`` (round, step, component, metrics
   and the size and sha256 of ``feedback.pt``), in a hidden folder renamed into place, as checkpoints are;
4. every rank reads it back (verified) and applies it: the tasks on the feedback's data see its
   fields and appended samples (:class:`RoundData`) and draw their samples by its weights (the
   ``sample_weights`` path, times the task's own), starting a fresh epoch of their stream;
5. a ``round`` record goes to ``metrics.jsonl`` and ``on_round_end`` is fired.

The checkpoint state records which round's result the streams follow (``applied``, and the sha256
of its ``feedback.pt``). A resumed run re-applies that result from disk; one killed between the
round's checkpoint and the end of step 4 (``applied`` is the round before) reads the saved result if
it is complete and matches, else runs the feedback again: the weights are the checkpoint's and the
feedback is seeded, so the result, and the run after it, are the same as without the kill.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from selfsup.components import FeedbackContext, FeedbackResult
from selfsup.engine import checkpoint as ckpt
from selfsup.engine.distributed import barrier
from selfsup.engine.errors import component_error
from selfsup.lib.data import batches as lib_batches
from selfsup.lib.data import extract_features
from selfsup.lib.modules import frozen
from selfsup.lib.seeding import sample_seed, stream_id
from selfsup.recipe import RecipeError

FOLDER = "rounds"
RESULT, META = "feedback.pt", "feedback.json"
FORMAT = 1
PATH = "rounds.feedback"  # the recipe field feedback problems are reported against
_TMP = re.compile(r"\.tmp-(\d+)-(\d+)")  # a round's result being written: .tmp-<round>-<pid>


def round_ends(count: int, steps_per_round: int | None, total: int) -> list[int]:
    """The optimizer step at which each round but the last ends (``count - 1`` strictly increasing
    steps below ``total``): ``steps_per_round`` apart, or ``total`` split evenly. Raises ValueError
    when a round would get no step."""
    if steps_per_round is not None:
        ends = [(r + 1) * steps_per_round for r in range(count - 1)]
        if ends[-1] >= total:
            raise ValueError(f"{count - 1} rounds of {steps_per_round} steps leave none of the run's {total} steps "
                             f"for the last round")
        return ends
    if total < count:
        raise ValueError(f"the run has {total} optimizer steps, fewer than rounds.count = {count}")
    return [(r + 1) * total // count for r in range(count - 1)]


class RoundData:
    """The feedback's data source as the tasks see it: the source as built, then the samples the
    last feedback appended, each sample with the feedback's fields added (``sample[key] =
    fields[key][index]``). Evaluators keep reading the source as built.

    Data-loader workers kept across epochs hold a copy of this view made before a round ended. So
    that they need not be restarted (forking them again costs more than a small epoch of batches),
    the round the run follows is also kept in shared memory: a copy that finds it behind reads that
    round's result from ``folder`` (``<run>/rounds``, written and verified by the run before it
    applied it) at its next sample."""

    def __init__(self, base: Any, folder: Path | None = None):
        self.base, self.folder = base, folder
        self.fields: dict[str, torch.Tensor] = {}
        self.samples: list[dict[str, Any]] = []
        self.round = -1  # the round whose result this copy holds (-1: none, the source as built)
        self._applied = torch.full((1,), -1, dtype=torch.long).share_memory_()  # the round the run follows

    def follow(self, r: int, payload: dict[str, Any]) -> None:
        """Hold round ``r``'s result (``fields`` and ``samples``), here and, at their next sample, in
        every worker's copy."""
        self.fields, self.samples, self.round = dict(payload["fields"]), list(payload["samples"]), r
        self._applied.fill_(r)

    def _catch_up(self) -> None:
        r = int(self._applied.item())
        if r == self.round:
            return
        if self.folder is None:
            raise RuntimeError(f"this copy of the round data holds round {self.round}, the run follows round {r}, "
                               f"and it has no folder to read that round's result from")
        payload = torch.load(self.folder / str(r) / RESULT, map_location="cpu", weights_only=True)
        self.fields, self.samples, self.round = dict(payload["fields"]), list(payload["samples"]), r

    def __len__(self) -> int:
        self._catch_up()
        return len(self.base) + len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._catch_up()
        n = len(self.base)
        sample = self.base[index] if index < n else dict(self.samples[index - n])
        if self.fields:
            sample = {**sample, **{key: values[index] for key, values in self.fields.items()}}
        return sample

    def __getattr__(self, name: str) -> Any:
        # batching and bad-data counts are the source's; lengths() too, extended to appended samples
        if name in ("collate", "bad_files"):
            return getattr(self.base, name)
        if name == "lengths" and callable(getattr(self.base, "lengths", None)):
            return self._lengths
        raise AttributeError(name)

    def _lengths(self) -> list[int]:
        """The source's lengths, then each appended sample's: the first-dimension size of its largest
        tensor or list (what grouping by length needs to batch it with samples of its size)."""
        return [*self.base.lengths(), *(_sample_length(s) for s in self.samples)]


def _sample_length(sample: dict[str, Any]) -> int:
    sizes = [v.shape[0] if isinstance(v, torch.Tensor) and v.dim() else len(v) if isinstance(v, (list, str)) else 1
             for v in sample.values()]
    return max(sizes, default=1)


class Rounds:
    """The rounds of one run: their ends, the feedback, the data view and the round applied."""

    def __init__(self, spec: Any, *, feedback: Any, view: RoundData, total_steps: int, label: str, source: str):
        self.spec, self.count, self.feedback, self.view, self.label = spec, spec.count, feedback, view, label
        try:
            self.ends = round_ends(spec.count, spec.steps_per_round, total_steps)
        except ValueError as err:
            field = "rounds.steps_per_round" if spec.steps_per_round is not None else "rounds.count"
            raise RecipeError(source, [(field, str(err))]) from None
        self.source = source
        self.weights: torch.Tensor | None = None  # [N] float64: the applied round's sampling weights
        self.applied = -1  # the last round whose feedback the data and streams follow
        self.applied_sha: str | None = None  # sha256 of that round's feedback.pt

    # ------------------------------------------------------------------ where a step is

    def round_of(self, step: int) -> int:
        """The round that optimizer step ``step + 1`` trains in, once the feedback of every round that
        ended at or before ``step`` is applied."""
        return sum(1 for end in self.ends if end <= step)

    def ending(self, step: int) -> int | None:
        """The round that ends at ``step`` (and has a feedback), or None."""
        return self.ends.index(step) if step in self.ends else None

    def sample_weights(self, own: Callable[[int], Any] | None) -> Callable[[int], Any]:
        """A stream's ``sample_weights``: the applied feedback's weights times the task's own ``own``."""

        def weights(epoch: int) -> Any:
            mine = own(epoch) if own is not None else None
            if self.weights is None:
                return mine
            if mine is None:
                return self.weights
            mine = torch.as_tensor(mine, dtype=torch.float64).cpu()
            if mine.shape != self.weights.shape:
                raise ValueError(f"the task's sample_weights has {tuple(mine.shape)} entries but the feedback's data "
                                 f"has {len(self.weights)} samples")
            return self.weights * mine

        # without the task's own, the weights change only when a round's feedback is applied, which
        # restarts the stream (apply): the data loader may draw later epochs' batches ahead of time
        weights.known_ahead = own is None  # type: ignore[attr-defined]
        return weights

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "sha256": self.applied_sha}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        self.applied = int(state.get("applied", -1))
        self.applied_sha = state.get("sha256")

    # ------------------------------------------------------------------ the loop's calls

    def finish(self, run: Any, r: int) -> None:
        """Round ``r`` ended at this step (its checkpoint is written): run its feedback (rank 0), save
        it, and make every rank's data follow it."""
        metrics: dict[str, float] = {}
        run.gather()  # under FSDP the feedback reads rank 0's whole replica
        if run.dist.is_main:
            metrics = self.run_feedback(run, r)
        barrier()
        self.apply(run, r, restart=True)
        if run.dist.is_main:
            metrics.update(self.weight_figures())
            run.writer.write("round", run.step, {"round": float(r), **metrics})
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("feedback/"))
            print(f"round {r + 1} of {self.count} ended at step {run.step}; {self.spec.feedback.type} feedback for "
                  f"round {r + 2}{': ' + shown if shown else ''}", flush=True)
            run.pm.fire("on_round_end", run=run.info, round=r, step=run.step, metrics=dict(metrics))

    def resume(self, run: Any) -> None:
        """After a checkpoint was loaded: make the data follow the last round that ended at or before
        its step, from the saved result (or by running that round's feedback again when the run was
        killed before its result was complete; the checkpoint is then the round's last step)."""
        r = self.round_of(run.step) - 1
        if r < 0:
            return
        if self.applied == r:
            problem = self.problem(run.run_dir, r, sha=self.applied_sha)
            if problem:
                raise RecipeError(self.source, [("", f"cannot resume: the checkpoint of step {run.step} trained on "
                                                     f"the feedback of round {r + 1}, but {problem}")])
            self.apply(run, r, restart=False)
            return
        if self.applied != r - 1 or run.step != self.ends[r]:
            raise RecipeError(self.source, [("", f"cannot resume: the checkpoint of step {run.step} follows the "
                                                 f"feedback of round {self.applied + 1}, but round {r + 1} ended "
                                                 f"at step {self.ends[r]}")])
        saved = [self.problem(run.run_dir, r, step=run.step) if run.dist.is_main else None]
        if run.dist.enabled:  # rank 0 decides; every rank follows
            import torch.distributed as dist

            dist.broadcast_object_list(saved, src=0)
        if saved[0] is None:
            if run.dist.is_main:
                print(f"round {r + 1} of {self.count}: its feedback was saved before the run stopped; applying it",
                      flush=True)
            self.apply(run, r, restart=True)
            return
        if run.dist.is_main:
            print(f"round {r + 1} of {self.count} ended at step {run.step} before its feedback was saved "
                  f"({saved[0]}); running it again", flush=True)
        self.finish(run, r)

    # ------------------------------------------------------------------ the feedback (rank 0)

    def run_feedback(self, run: Any, r: int) -> dict[str, float]:
        """Run the feedback after round ``r`` and write its result to ``rounds/<r>/``; returns its
        metrics as ``feedback/<name>``."""
        root = Path(run.run_dir) / FOLDER
        final = root / str(r)
        tmp = root / f".tmp-{r}-{os.getpid()}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        except OSError as err:
            raise ckpt.CheckpointWriteError(f"round {r + 1}'s feedback cannot be saved: creating {tmp} failed: "
                                            f"{err.strerror or err}", cause=err) from err
        try:
            start = time.perf_counter()
            result = self._call(run, r, tmp)
            seconds = time.perf_counter() - start
            payload = self._checked(result)
            self._write(run, r, tmp, payload, result.metrics)
            ckpt._install(tmp, final)
            ckpt._fsync_dir(root)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError) and not isinstance(err, ckpt.CheckpointWriteError):
                raise ckpt.CheckpointWriteError(f"round {r + 1}'s feedback could not be saved to {final}: "
                                                f"{err.strerror or err}", cause=err) from err
            raise
        metrics = {f"feedback/{k}": float(v) for k, v in result.metrics.items()}
        metrics["feedback/seconds"] = round(seconds, 3)
        return metrics

    def _call(self, run: Any, r: int, out_dir: Path) -> FeedbackResult:
        """``feedback.run(context)`` on the frozen model, the run's RNG states restored after, and a
        check that it left the model as it found it."""
        spec, recipe = self.spec.feedback, run.recipe
        backbones = run.whole.model.backbones
        backbone = backbones[spec.backbone or next(iter(backbones.keys()))]
        pipeline = run.built.pipeline(spec.augment)
        data = run.built.data[spec.data]
        stream = stream_id(PATH)
        cache: dict[int, Any] = {}

        def features(source: Any = None) -> Any:
            source = data if source is None else source
            if id(source) not in cache:
                cache[id(source)] = extract_features(backbone, source, pipeline=pipeline, batch_size=spec.batch_size,
                                                     device=run.device, seed=recipe.seed, stream=stream)
            return cache[id(source)]

        def batches(source: Any = None) -> Any:
            return lib_batches(data if source is None else source, batch_size=spec.batch_size, pipeline=pipeline,
                               seed=recipe.seed, stream=stream)

        seed = sample_seed(recipe.seed, stream, r, 0)
        context = FeedbackContext(
            name=PATH, round=r, rounds=self.count, step=run.step, seed=seed, device=run.device, backbone=backbone,
            tasks=run.whole.model.tasks, data=data, batch_size=spec.batch_size,
            generator=torch.Generator().manual_seed(seed), run_dir=Path(run.run_dir), out_dir=out_dir,
            features=features, batches=batches, previous=self.previous(run.run_dir, r),
        )
        before = _fingerprint(run.whole.model)
        rng = ckpt.rng_state()
        try:
            with frozen(run.whole.model), torch.no_grad():
                result = self.feedback.run(context)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the feedback and its plugin
            raise component_error(self.label, exc, "run") from exc
        finally:
            ckpt.set_rng_state(rng)
        if not torch.equal(before, _fingerprint(run.whole.model)):
            raise component_error(self.label, RuntimeError("it changed the model's weights or buffers (a feedback "
                                                           "must only look at the model)"), "run")
        if not isinstance(result, FeedbackResult):
            raise component_error(self.label, TypeError(f"it returned a {type(result).__name__}, not a "
                                                        f"selfsup.components.FeedbackResult"), "run")
        return result

    def _checked(self, result: FeedbackResult) -> dict[str, Any]:
        """The result as it is saved, after checking every part against the data's size."""
        try:
            return self._check(result)
        except Exception as exc:  # noqa: BLE001 - a value that is not a tensor, ...: named as the feedback's
            raise component_error(self.label, exc, "run") from exc

    def _check(self, result: FeedbackResult) -> dict[str, Any]:
        samples = list(result.samples or [])
        n = len(self.view.base) + len(samples)

        def bad(message: str) -> Exception:
            return component_error(self.label, ValueError(message), "run")

        reference = self.view.base[0] if samples and len(self.view.base) else None
        for i, sample in enumerate(samples):
            if not isinstance(sample, dict) or not all(isinstance(k, str) for k in sample):
                raise bad(f"samples[{i}] is not a dict with string keys")
            if reference is not None:  # appended samples are batched with the data's own
                keys, want = set(sample) - {"index"}, set(reference) - {"index"}
                if keys != want:
                    raise bad(f"samples[{i}] has keys {sorted(keys)}, the data's samples {sorted(want)}: appended "
                              f"samples are batched with them")
                odd = [k for k in keys if isinstance(sample[k], torch.Tensor) != isinstance(reference[k], torch.Tensor)]
                if odd:
                    raise bad(f"samples[{i}][{odd[0]!r}] is a {type(sample[odd[0]]).__name__}, the data's is a "
                              f"{type(reference[odd[0]]).__name__}: appended samples are batched with the data's")
        weights = None
        if result.weights is not None:
            weights = torch.as_tensor(result.weights).detach().to("cpu", torch.float64)
            if tuple(weights.shape) != (n,):
                raise bad(f"weights has shape {list(weights.shape)}; the next round has {n} samples "
                          f"({len(self.view.base)} of the data, {len(samples)} appended)")
            if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise bad("weights must be finite, non-negative and not all zero")
        fields = {}
        for key, values in (result.fields or {}).items():
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or key == "index":
                raise bad(f"field {key!r} is not an identifier other than 'index'")
            values = torch.as_tensor(values).detach().cpu()
            if values.dim() == 0 or values.shape[0] != n:
                raise bad(f"field {key!r} has shape {list(values.shape)}; it needs one row per sample ({n})")
            fields[key] = values.contiguous()
        for key, value in (result.metrics or {}).items():
            if not isinstance(key, str) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                raise bad(f"metric {key!r} = {value!r} is not a finite number")
        return {"weights": weights, "fields": fields, "samples": samples}

    def _write(self, run: Any, r: int, folder: Path, payload: dict[str, Any], metrics: dict[str, float]) -> None:
        """``feedback.pt`` (hashed while written) and ``feedback.json`` describing it, both synced."""
        files = {RESULT: ckpt._save_state(payload, folder / RESULT)}
        spec = self.spec.feedback
        n = len(self.view.base) + len(payload["samples"])
        meta = {
            "format": FORMAT, "round": r, "step": run.step, "time": time.time(),
            "feedback": {"type": spec.type, "options": spec.options, "data": spec.data},
            "samples": n, "appended": len(payload["samples"]), "weights": payload["weights"] is not None,
            "fields": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                       for k, v in payload["fields"].items()},
            "metrics": {k: float(v) for k, v in metrics.items()},
            "files": files,
        }
        ckpt._write_file(folder / META, json.dumps(meta, indent=2).encode())
        ckpt._fsync_dir(folder)

    # ------------------------------------------------------------------ reading results back

    def problem(self, run_dir: Path, r: int, *, sha: str | None = None, step: int | None = None) -> str | None:
        """What is wrong with ``rounds/<r>/`` (None: intact, and made by this recipe's feedback at
        ``step`` / with ``feedback.pt``'s ``sha``)."""
        folder = Path(run_dir) / FOLDER / str(r)
        meta, problem = _read_meta(folder)
        if meta is None:
            return f"{folder / META}: {problem}"
        entry = (meta.get("files") or {}).get(RESULT) if isinstance(meta.get("files"), dict) else None
        found = ckpt._file_problem(folder / RESULT, entry)
        if found:
            return f"{folder / RESULT}: {found}"
        if sha is not None and entry["sha256"] != sha:
            return f"{folder / RESULT} is not the result the checkpoint trained on (its sha256 differs)"
        spec = self.spec.feedback
        if step is not None and (meta.get("step") != step or meta.get("feedback") != {
                "type": spec.type, "options": spec.options, "data": spec.data}):
            return f"{folder / META} was written by another run (step {meta.get('step')}, {meta.get('feedback')})"
        return None

    def load(self, run_dir: Path, r: int) -> tuple[dict[str, Any], str]:
        """Round ``r``'s saved result (verified) and the sha256 of its ``feedback.pt``."""
        folder = Path(run_dir) / FOLDER / str(r)
        problem = self.problem(run_dir, r)
        if problem:
            raise RecipeError(self.source, [("", f"round {r + 1}'s feedback cannot be read: {problem}")])
        meta, _ = _read_meta(folder)
        try:
            payload = torch.load(folder / RESULT, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - what the feedback returned cannot be read back safely
            raise component_error(self.label, ValueError(f"its result cannot be read back from {folder / RESULT} "
                                                         f"with torch.load(weights_only=True): {ckpt._first_line(err)}"
                                                         f" (samples may hold tensors, numbers, strings, lists "
                                                         f"and dicts)"), "run") from None
        return payload, meta["files"][RESULT]["sha256"]

    def previous(self, run_dir: Path, r: int) -> FeedbackResult | None:
        """The result of the round before ``r`` (what round ``r`` trained on), or None for round 0."""
        if r == 0:
            return None
        payload, _ = self.load(run_dir, r - 1)
        folder = Path(run_dir) / FOLDER / str(r - 1)
        meta, _ = _read_meta(folder)
        return FeedbackResult(weights=payload["weights"], fields=payload["fields"], samples=payload["samples"],
                              metrics=dict(meta.get("metrics") or {}))

    def apply(self, run: Any, r: int, *, restart: bool) -> None:
        """Make the data and the streams follow round ``r``'s saved result. ``restart``: the streams of
        the feedback's data begin a fresh epoch (drawn by the new weights); not when resuming from a
        checkpoint whose streams already did."""
        payload, sha = self.load(run.run_dir, r)
        self.view.follow(r, payload)
        self.weights = payload["weights"]
        for name, stream in run.streams.items():
            if stream.source is not self.view:
                continue
            if stream.lengths is not None:
                stream.lengths = torch.as_tensor(list(self.view.lengths()), dtype=torch.long)
            if restart and stream.batches > 0:
                stream.epoch, stream.batches = stream.epoch + 1, 0
            stream.restart()  # batches made ahead from the old data are dropped; the workers catch up
        self.applied, self.applied_sha = r, sha
        run.info.round = r + 1

    def weight_figures(self) -> dict[str, float]:
        """The new sampling weights in numbers: samples, appended ones, effective sample size as a
        share of the samples (1.0: uniform) and the share never drawn (weight 0)."""
        n = len(self.view)
        out = {"round/samples": float(n), "round/appended": float(len(self.view.samples))}
        if self.weights is None:
            return {**out, "round/weights_ess": 1.0, "round/weights_zero": 0.0}
        w = self.weights
        ess = float(w.sum() ** 2 / (w.square().sum() * n))
        return {**out, "round/weights_ess": ess, "round/weights_zero": float((w == 0).double().mean())}


def _read_meta(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``feedback.json`` of a round's folder, or ``(None, what is wrong)``."""
    try:
        raw = (folder / META).read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    try:
        meta = json.loads(raw)
    except ValueError as err:
        return None, f"unreadable ({ckpt._first_line(err)})"
    if not isinstance(meta, dict):
        return None, "unreadable (not a JSON object)"
    return meta, None


def _fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Sum and sum of squares of every weight and buffer, on the CPU: a change of any value shows."""
    parts = [torch.stack([t.detach().double().sum(), t.detach().double().square().sum()])
             for t in model.state_dict().values()]
    return torch.stack(parts).cpu() if parts else torch.zeros(0)


def clean_temporaries(run_dir: Path) -> None:
    """Remove the ``rounds/.tmp-<round>-<pid>`` folders that interrupted writes left (dead processes)."""
    root = Path(run_dir) / FOLDER
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        found = _TMP.fullmatch(entry.name)
        if found and entry.is_dir() and not entry.is_symlink() and ckpt._gone(int(found.group(2))):
            shutil.rmtree(entry, ignore_errors=True)


def warn_stale(run_dir: Path) -> None:
    """A fresh run in a folder that holds rounds of an earlier run: they are replaced round by round."""
    root = Path(run_dir) / FOLDER
    if root.is_dir() and any(p.name.isdigit() for p in root.iterdir()):
        warnings.warn(f"{root} holds the rounds of an earlier run; this fresh run replaces them as its own rounds "
                      f"end", stacklevel=2)
