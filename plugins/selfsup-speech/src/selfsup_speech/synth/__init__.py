"""Speech synthesis with espeak-ng (pip-installed through ``espeakng-loader``, or the Debian program).

* :mod:`.engines`: the two synthesizers (C library behind a fork server, or ``espeak-ng -w``);
* :mod:`.espeak_server`: the fork server that makes the library deterministic per utterance;
* :mod:`.postprocess`: resampling, silence trimming and peak normalisation;
* :mod:`.dataset`: the seeded generation plan, the on-disk cache and ``synthesize_dataset``;
* ``python -m selfsup_speech.synth --bench``: generation throughput (seconds of audio per second).

Nothing here is imported when the plugin loads; the ``synth_speech`` data source imports it.
"""
