"""``python -m selfsup`` (and ``torchrun -m selfsup train ...``: workers leave through ``worker_main``)."""

import os

if __name__ == "__main__":
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a process torchrun started (every rank)
        from selfsup.cli import worker_main

        worker_main()
    else:
        from selfsup.cli import main

        main()
