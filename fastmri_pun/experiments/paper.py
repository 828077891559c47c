"""``python -m fastmri_pun.experiments.paper``: see :mod:`fastmri_pun.cli.paper`."""

from ..cli.paper import main

if __name__ == "__main__":
    raise SystemExit(main())
