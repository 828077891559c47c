"""``python -m fastmri_pun.app.export`` (also ``fastmri-pun export``): see :mod:`fastmri_pun.app.export.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
