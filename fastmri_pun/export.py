"""``python -m fastmri_pun.export``: see :mod:`fastmri_pun.app.export.cli`."""

from .app.export.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
