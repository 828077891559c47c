"""``python -m fastmri_pun.app.espirit`` (also ``fastmri-pun espirit``): see :mod:`fastmri_pun.app.espirit.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
