"""PUN-IT on fastmri's VarNet in a few lines (synthetic multi-coil data, CPU, < 1 minute).

1. learn a mask on the *initial* weights (only the mask logits are trained; temperature, KL
   weight, prior and learning rate are the defaults of ``fastmri_pun.pruning.config``),
2. prune with torch.nn.utils.prune and train the sparse VarNet from those initial weights,
3. compare with a random mask of the same density trained the same way.

    python examples/pun_varnet.py --seed 0
"""

from __future__ import annotations

import argparse
import copy
import time

import fastmri
import torch
from fastmri.data.subsample import EquiSpacedMaskFunc
from fastmri.data.transforms import apply_mask
from fastmri.models import VarNet

from fastmri_pun.pruning import apply_masks, density_report, search_masks
from fastmri_pun.pruning.baselines import random_masks


def synthetic_batch(n: int, gen: torch.Generator, coils: int = 4, size: int = 32) -> tuple:
    """Random ellipse phantoms seen by smooth coils: ``(masked_kspace [n,C,H,W,2], mask
    [n,1,1,W,1] bool, target [n,H,W])``; coil maps have unit RSS so the target is ``|x|``."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = torch.zeros(n, size, size, dtype=torch.complex64)
    for i in range(n):
        for _ in range(4):
            cy, cx, ry, rx, value = torch.rand(5, generator=gen).tolist()
            inside = ((yy - cy + 0.5) / (0.15 + 0.4 * ry)) ** 2 + (
                (xx - cx + 0.5) / (0.15 + 0.4 * rx)
            ) ** 2 < 1
            image[i] += (0.3 + value) * inside * torch.exp(1j * 0.5 * yy)
    angles = torch.arange(coils) * 2 * torch.pi / coils
    maps = torch.stack(
        [torch.exp(-((yy - 0.8 * a.sin()) ** 2 + (xx - 0.8 * a.cos()) ** 2)) for a in angles]
    ).to(torch.complex64)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    kspace = fastmri.fft2c(torch.view_as_real(maps[None] * image[:, None]))
    mask_func = EquiSpacedMaskFunc([0.16], [4])
    masked, mask, _ = apply_mask(kspace, mask_func, seed=0)
    return masked, mask.bool().expand(n, 1, 1, size, 1), image.abs()


def loss_fn(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    """Mean-reduced L1 between the VarNet magnitude image and the target."""
    masked_kspace, mask, target = batch
    return torch.nn.functional.l1_loss(model(masked_kspace, mask), target)


def train(model: torch.nn.Module, batches: list, steps: int) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for step in range(steps):
        optimizer.zero_grad()
        loss_fn(model, batches[step % len(batches)]).backward()
        optimizer.step()


@torch.no_grad()
def psnr(model: torch.nn.Module, batch: tuple) -> float:
    masked_kspace, mask, target = batch
    output = model(masked_kspace, mask)
    mse = (output - target).pow(2).mean()
    return float(10 * torch.log10(target.max() ** 2 / mse))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Search, prune, train, score; returns ``{method: {"density", "psnr"}}`` and the
    zero-filled baseline as ``{"zero-filled": {"psnr"}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed for data, weights and noise")
    parser.add_argument("--density", type=float, default=0.1, help="fraction of weights kept")
    parser.add_argument("--search_steps", type=int, default=60, help="PUN mask-search steps")
    parser.add_argument("--train_steps", type=int, default=60, help="sparse training steps")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (tiny tensors: 1 is fastest)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_batches = [synthetic_batch(4, gen) for _ in range(4)]
    test_batch = synthetic_batch(8, gen)
    model = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2)
    w0 = copy.deepcopy(model.state_dict())

    start = time.perf_counter()
    masks, _ = search_masks(
        model, train_batches, loss_fn, density=args.density, steps=args.search_steps, seed=args.seed
    )
    print(f"PUN-IT search: {time.perf_counter() - start:.1f} s")
    masked_kspace, _, target = test_batch
    zero_filled = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(masked_kspace)), dim=1)
    mse = (zero_filled - target).pow(2).mean()
    results = {"zero-filled": {"psnr": float(10 * torch.log10(target.max() ** 2 / mse))}}

    for name, method_masks in [("pun-it", masks), ("random", random_masks(model, args.density))]:
        sparse = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2)
        sparse.load_state_dict(w0)  # train from the initial weights, not re-initialised
        apply_masks(sparse, method_masks)
        train(sparse, train_batches, args.train_steps)
        report = density_report(sparse)
        results[name] = {"density": report["density"], "psnr": psnr(sparse.eval(), test_batch)}
        print(
            f"{name:7s} density {report['density']:.3f} (min layer {report['min_layer_density']:.3f})"
            f"  test PSNR {results[name]['psnr']:.2f} dB"
        )
    print(f"zero-filled test PSNR {results['zero-filled']['psnr']:.2f} dB")
    return results


if __name__ == "__main__":
    main()
