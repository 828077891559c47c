"""``python -m fastmri_pun.experiments.regime``: see :mod:`fastmri_pun.experiments.regime.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
