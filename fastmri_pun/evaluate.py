"""``python -m fastmri_pun.evaluate``: see :mod:`fastmri_pun.cli.evaluate`."""

from fastmri_pun.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
