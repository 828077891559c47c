"""``python -m fastmri_pun.experiments.paper``: see :mod:`fastmri_pun.experiments.paper.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
