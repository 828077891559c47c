"""``python -m fastmri_pun <command> [flags]``: the same as ``fastmri-pun <command> [flags]``."""

from .app.main import main

if __name__ == "__main__":
    raise SystemExit(main())
