"""``python -m fastmri_pun.train``: the command of :mod:`fastmri_pun.cli.train`."""

from .cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
