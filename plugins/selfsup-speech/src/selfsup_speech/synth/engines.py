"""espeak-ng synthesizers: the pip-installed C library (``espeakng-loader``) or the ``espeak-ng`` program.

Both turn ``(text, voice, rate, pitch)`` into mono int16 samples at the engine's own rate
(22,050 Hz for espeak-ng) and give the same samples for the same arguments.

* :class:`LibraryEngine` drives ``libespeak-ng`` through ctypes in a small fork server
  (:mod:`selfsup_speech.synth.espeak_server`): the library's process-global state is initialised
  once per server, and every utterance starts from that state (see the server's docstring for why
  this is needed for determinism). One server per engine; calls are serialised by a lock.
* :class:`BinaryEngine` runs ``espeak-ng -v VOICE -s RATE -p PITCH -w out.wav TEXT`` (the Debian
  package), one process per utterance.

``make_engine("auto")`` takes the library when ``espeakng-loader`` is installed, else the program.
Voices are ``accent`` or ``accent+variant`` (``en-us+f3``); variants are checked against the
engine's list, because espeak-ng silently ignores an unknown one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path

import numpy as np

from selfsup_speech.synth.espeak_server import HEADER


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise RuntimeError("the espeak-ng synthesizer process stopped answering")
    return data


class LibraryEngine:
    """espeak-ng's C library (from the ``espeakng-loader`` wheel) behind a fork server."""

    kind = "library"

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise RuntimeError("engine 'library' needs espeakng-loader: pip install espeakng-loader") from None
        self.library_path = str(espeakng_loader.get_library_path())
        self.data_path = str(espeakng_loader.get_data_path())
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self.sample_rate = 0
        self.version = ""
        self.variants = sorted(p.name for p in (Path(self.data_path) / "voices" / "!v").iterdir() if p.is_file())

    @staticmethod
    def fingerprint() -> str:
        """What identifies this engine's output without starting it (for cache keys)."""
        return f"library:espeakng-loader=={metadata.version('espeakng-loader')}"

    def _start(self) -> None:
        server = Path(__file__).with_name("espeak_server.py")
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(server), self.library_path, self.data_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        status, payload = self._answer()
        if status != 0:
            self.close()
            raise RuntimeError(f"espeak-ng library could not start: {payload.decode(errors='replace')}")
        hello = json.loads(payload)
        self.sample_rate, self.version = int(hello["sample_rate"]), str(hello["version"])

    def _answer(self) -> tuple[int, bytes]:
        assert self._process is not None and self._process.stdout is not None
        status, length = HEADER.unpack(_read_exact(self._process.stdout, HEADER.size))
        return status, _read_exact(self._process.stdout, length) if length else b""

    def start(self) -> "LibraryEngine":
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
        return self

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        """Mono int16 samples ``[N]`` at ``self.sample_rate``; ``seed`` seeds the breath noise."""
        check_voice(voice, self.variants)
        request = json.dumps({"text": text, "voice": voice, "rate": int(rate), "pitch": int(pitch),
                              "seed": int(seed)}) + "\n"
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._process is not None and self._process.stdin is not None
            self._process.stdin.write(request.encode())
            status, payload = self._answer()
        if status != 0:
            raise RuntimeError(f"espeak-ng could not say {text!r} with voice {voice!r}: "
                               f"{payload.decode(errors='replace')}")
        return np.frombuffer(payload, dtype="<i2").copy()

    def close(self) -> None:
        if self._process is not None:
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class BinaryEngine:
    """The ``espeak-ng`` program (``apt install espeak-ng``), one process per utterance."""

    kind = "binary"

    def __init__(self, program: str = "espeak-ng") -> None:
        path = shutil.which(program)
        if path is None:
            raise RuntimeError(f"engine 'binary' needs the {program!r} program on PATH (apt install espeak-ng)")
        self.program = path
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout.split()
        self.version = out[out.index("text-to-speech:") + 1] if "text-to-speech:" in out else " ".join(out[:4])
        self.variants = self._variants()
        self.sample_rate = 22050  # espeak-ng's native rate; the WAV header is checked on every read

    def _variants(self) -> list[str]:
        listing = subprocess.run([self.program, "--voices=variant"], capture_output=True, text=True, check=False).stdout
        names = {field.split("/", 1)[1] for line in listing.splitlines() for field in line.split()
                 if field.startswith("!v/")}
        return sorted(names)

    @staticmethod
    def fingerprint() -> str:
        path = shutil.which("espeak-ng")
        if path is None:
            return "binary:missing"
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        return f"binary:{out}"

    def start(self) -> "BinaryEngine":
        return self

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> np.ndarray:
        """Mono int16 samples. ``seed`` is not used: the program seeds its noise with the time, so
        breathy voices (variants with ``breath``, e.g. f2) differ slightly from run to run."""
        import soundfile

        check_voice(voice, self.variants)
        with tempfile.TemporaryDirectory(prefix="selfsup-espeak-") as tmp:
            wav = os.path.join(tmp, "out.wav")
            run = subprocess.run([self.program, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "-w", wav,
                                  "--", text],
                                 capture_output=True, text=True, check=False)
            if run.returncode != 0 or not os.path.exists(wav):
                raise RuntimeError(f"espeak-ng could not say {text!r} with voice {voice!r}: "
                                   f"{run.stderr.strip() or run.returncode}")
            samples, rate_read = soundfile.read(wav, dtype="int16", always_2d=True)  # [N, C]
        if rate_read != self.sample_rate:
            self.sample_rate = int(rate_read)
        return np.ascontiguousarray(samples[:, 0])

    def close(self) -> None:
        pass


def check_voice(voice: str, variants: list[str]) -> None:
    """espeak-ng ignores an unknown ``+variant`` silently; reject it here instead."""
    _, plus, variant = voice.partition("+")
    if plus and variants and variant not in variants:
        raise ValueError(f"espeak-ng has no voice variant {variant!r} (in {voice!r}); known: {', '.join(variants)}")


def library_available() -> bool:
    return importlib.util.find_spec("espeakng_loader") is not None


def resolve_engine(engine: str) -> str:
    """``"auto"`` -> ``"library"`` when espeakng-loader is installed, else ``"binary"`` if the
    program is on PATH; raises when the requested engine is not available."""
    if engine == "auto":
        if library_available():
            return "library"
        if shutil.which("espeak-ng"):
            return "binary"
        raise RuntimeError("no espeak-ng found: pip install espeakng-loader (or apt install espeak-ng)")
    if engine not in ("library", "binary"):
        raise ValueError(f"engine must be 'auto', 'library' or 'binary', got {engine!r}")
    return engine


def make_engine(engine: str = "auto") -> LibraryEngine | BinaryEngine:
    kind = resolve_engine(engine)
    return (LibraryEngine() if kind == "library" else BinaryEngine()).start()


def engine_fingerprint(engine: str) -> str:
    kind = resolve_engine(engine)
    return LibraryEngine.fingerprint() if kind == "library" else BinaryEngine.fingerprint()
