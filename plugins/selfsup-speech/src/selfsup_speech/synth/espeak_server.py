"""A fork server around the espeak-ng C library: one process per synthesizer, one fork per utterance.

espeak-ng keeps process-global state that carries over from one utterance to the next (the pitch
flutter phase, the automatic gain, the breath-noise random generator, filter memories), so the same
text spoken twice in one process gives different samples. This server initialises the library
once (``espeak_Initialize`` with ``AUDIO_OUTPUT_SYNCHRONOUS``) and then never synthesizes itself:
each request is served by a forked child that starts from that pristine state, with the C
library's ``rand()`` (breath noise; ``espeak_Initialize`` seeds it with the time) and espeak-ng's own
generator reseeded, so the same (text, voice, rate, pitch, seed) always gives the same samples, in
any order and in any process.

Run as a script (``python espeak_server.py LIBRARY DATA_DIR``); it imports only the standard
library, so forking is cheap (about a millisecond). Protocol, over stdin/stdout:

* on start it writes one frame with the JSON ``{"sample_rate": 22050, "version": "1.52.0"}``;
* each request is one JSON line ``{"text", "voice", "rate", "pitch", "seed"}`` (``seed`` seeds the
  noise generators: breathy voices add noise);
* each answer is a frame: ``status`` (int32, 0 = ok) and ``length`` (uint32) little-endian,
  then ``length`` bytes: mono int16 little-endian samples, or a UTF-8 error message.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_PITCH = 1, 3
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
HEADER = struct.Struct("<iI")
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    parts = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def frame(status: int, payload: bytes) -> bytes:
    return HEADER.pack(status, len(payload)) + payload


class Library:
    """The ctypes bindings of the few espeak-ng calls used here."""

    def __init__(self, library_path: str, data_path: str):
        lib = ctypes.CDLL(library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.lib = lib
        self.libc = ctypes.CDLL(None)  # the process's C library: espeak-ng's breath noise calls its rand()
        self.libc.srand.argtypes = [ctypes.c_uint]
        self.set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.52 has its own generator too
        if self.set_rand_seed is not None:
            self.set_rand_seed.argtypes = [ctypes.c_long]
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.sample_rate}) with data {data_path}")
        self.version = (lib.espeak_Info(None) or b"").decode()
        self.chunks: list[bytes] = []
        self._callback = SYNTH_CALLBACK(self._collect)  # kept referenced: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:  # called by espeak_Synth with int16 chunks
        if count > 0:
            self.chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # 0 = continue

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> bytes:
        # espeak_Initialize seeds rand() with the time: reseed, or breathy voices differ run to run
        self.libc.srand(seed)
        if self.set_rand_seed is not None:
            self.set_rand_seed(seed)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(ESPEAK_PITCH, int(pitch), 0)
        self.chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r} ({voice})")
        return b"".join(self.chunks)


def serve(library: Library, stdin, stdout_fd: int) -> None:
    hello = json.dumps({"sample_rate": library.sample_rate, "version": library.version}).encode()
    _write_all(stdout_fd, frame(0, hello))
    for line in stdin:
        if not line.strip():
            continue
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: synthesize from the pristine state, answer through the pipe, exit
            os.close(read_fd)
            code = 0
            try:
                request = json.loads(line)
                audio = library.synthesize(request["text"], request["voice"], request["rate"], request["pitch"],
                                           request.get("seed", 0))
                answer = frame(0, audio)
            except Exception as exc:  # noqa: BLE001 - any failure is reported to the client
                answer, code = frame(1, f"{type(exc).__name__}: {exc}".encode()), 1
            try:
                _write_all(write_fd, answer)
            finally:
                os._exit(code)
        os.close(write_fd)
        answer = _read_all(read_fd)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code < 0 or len(answer) < HEADER.size:  # killed by a signal, or died before answering
            answer = frame(2, f"the espeak-ng synthesizer process died ({code}) on {line.strip()}".encode())
        _write_all(stdout_fd, answer)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: espeak_server.py LIBRARY DATA_DIR", file=sys.stderr)
        return 2
    try:
        library = Library(argv[1], argv[2])
    except Exception as exc:  # noqa: BLE001 - reported to the client as the hello frame
        _write_all(1, frame(1, f"{type(exc).__name__}: {exc}".encode()))
        return 1
    serve(library, sys.stdin, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
