"""``python -m fastmri_pun.evaluate``: see :mod:`fastmri_pun.app.evaluate.cli`."""

from fastmri_pun.app.evaluate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
