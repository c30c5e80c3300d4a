"""``python -m selfsup_speech.synth``: generate (or find) a synthesized keyword set; ``--bench``
generates into a temporary cache and reports the throughput in seconds of audio per second."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from selfsup_speech.data.options import SynthSpeechOptions
from selfsup_speech.synth.dataset import synthesize_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selfsup_speech.synth", description=__doc__)
    parser.add_argument("--bench", action="store_true", help="generate into a temporary folder and report timings")
    parser.add_argument("--options", default="{}",
                        help="synth_speech options as JSON, e.g. '{\"utterances_per_pair\": 2}'")
    parser.add_argument("--workers", type=int, default=None, help="synthesizer processes (overrides the options)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the set is cached")
    args = parser.parse_args(argv)

    from selfsup_speech.data.synthesized import settings_from_options

    options = SynthSpeechOptions.model_validate(json.loads(args.options))
    workers = args.workers or options.workers
    settings = settings_from_options(options)
    if args.bench:
        with tempfile.TemporaryDirectory(prefix="selfsup-speech-bench-") as tmp:
            _, stats = synthesize_dataset(settings, cache_dir=tmp, workers=workers)
    else:
        _, stats = synthesize_dataset(settings, cache_dir=options.cache_dir, workers=workers, force=args.force)
    stats["voices"] = len(settings.voices)
    stats["words"] = len(settings.words)
    stats["hours"] = stats["audio_seconds"] / 3600
    json.dump(stats, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
