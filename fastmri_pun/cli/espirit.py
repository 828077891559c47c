"""``python -m fastmri_pun.cli.espirit``: moved to ``fastmri-pun espirit`` / ``python -m fastmri_pun.app.espirit``."""

from . import refuse

if __name__ == "__main__":
    raise SystemExit(refuse("espirit"))
