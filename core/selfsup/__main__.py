"""``python -m selfsup`` (and ``torchrun -m selfsup train ...``)."""

from selfsup.cli import main

if __name__ == "__main__":
    main()
