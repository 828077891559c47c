"""``python -m fastmri_pun.app.train`` (also ``fastmri-pun train``): see :mod:`fastmri_pun.app.train.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
