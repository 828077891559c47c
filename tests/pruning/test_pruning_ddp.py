"""PUN search under 2-process DDP (gloo, CPU): the masks are identical on both ranks.

The test runs this file as a script; Lightning's ``ddp`` strategy re-launches it for rank 1.
Each rank trains the logits on different batches (DistributedSampler) and saves its logits, its
own top-k masks and the masks ``hard_masks()`` returns (rank 0's, broadcast).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _loss(model, batch):
    noisy, clean = batch
    return torch.nn.functional.mse_loss(model(noisy), clean)


def _worker(out_dir: str) -> None:
    import pytorch_lightning as pl
    from fastmri.models import Unet
    from torch.utils.data import DataLoader, TensorDataset

    from fastmri_pun.pruning.topk import topk_mask
    from fastmri_pun.training.mask_search import MaskSearchModule

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(32, 1, 16, 16, generator=gen).cumsum(-1) / 4
    loader = DataLoader(
        TensorDataset(clean + 0.1 * torch.randn(clean.shape, generator=gen), clean), batch_size=4
    )
    torch.manual_seed(0)
    module = MaskSearchModule(Unet(1, 1, chans=4, num_pool_layers=2), _loss, density=0.1, seed=0)
    trainer = pl.Trainer(
        max_steps=5,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    own = topk_mask(module.scores.logit_dict(), 0.1)
    masks = module.hard_masks()
    torch.save(
        {
            "logits": {n: s.detach().clone() for n, s in module.scores.logit_dict().items()},
            "own": own,
            "masks": masks,
            "mismatch": module.rank_mismatch,
            "world_size": trainer.world_size,
        },
        Path(out_dir) / f"rank{trainer.global_rank}.pt",
    )


def test_masks_identical_on_both_ddp_ranks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK")}
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    r0, r1 = ranks
    # all-reduced gradients + identical Adam updates: logits agree bit for bit
    assert all(torch.equal(r0["logits"][n], r1["logits"][n]) for n in r0["logits"])
    assert any(bool((r0["logits"][n] != 0).any()) for n in r0["logits"])  # they did train
    assert r0["mismatch"] is False and r1["mismatch"] is False
    for key in ("own", "masks"):
        assert all(torch.equal(r0[key][n], r1[key][n]) for n in r0[key])
    n_total = sum(m.numel() for m in r0["masks"].values())
    assert sum(int(m.sum()) for m in r0["masks"].values()) == round(0.1 * n_total)


if __name__ == "__main__":
    _worker(sys.argv[1])
