"""``python -m fastmri_pun.cli.score``: moved to ``fastmri-pun score`` / ``python -m fastmri_pun.app.score``."""

from . import refuse

if __name__ == "__main__":
    raise SystemExit(refuse("score"))
