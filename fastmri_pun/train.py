"""``python -m fastmri_pun.train``: the command of :mod:`fastmri_pun.app.train.cli`."""

from .app.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
