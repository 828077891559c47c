"""``python -m fastmri_pun.app.evaluate`` (also ``fastmri-pun evaluate``): see :mod:`fastmri_pun.app.evaluate.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
