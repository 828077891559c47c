"""``python -m fastmri_pun.demo``: see :mod:`fastmri_pun.cli.demo`."""

from ..cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
