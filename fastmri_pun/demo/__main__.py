"""``python -m fastmri_pun.demo``: see :mod:`fastmri_pun.app.demo`."""

from ..app.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
