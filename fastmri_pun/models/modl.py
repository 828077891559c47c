"""MoDL (Aggarwal, Mani, Jacob, 2019) with fastmri VarNet's forward signature.

x₀ = Aᴴy;  for k = 1..K (weights shared):  zₖ = D_θ(xₖ₋₁),  xₖ = (AᴴA + λI)⁻¹(Aᴴy + λzₖ) by CG.

With ``checkpoint_unrolls`` each unroll runs under ``torch.utils.checkpoint``: the forward keeps only
the unroll's input ``xₖ₋₁``, and the backward recomputes one unroll at a time, so the memory of a
training step no longer grows with K by a whole denoiser's activations per unroll.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.utils import parametrize
from torch.utils.checkpoint import checkpoint

from ..physics import SenseOp, cg_solve, real_to_complex
from .denoisers import ConvAlgorithm, build_denoiser
from .fast_paths import denoise_complex
from .registry import ModelSettings, check_at_least_one, register_model
from .sensitivity import CenterMaskedSensitivityModel


def _check_inputs(
    masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None
) -> None:
    ks = tuple(masked_kspace.shape)
    if masked_kspace.ndim != 5 or ks[-1] != 2 or masked_kspace.is_complex():
        raise ValueError(f"masked_kspace must be real-view [B, C, H, W, 2], got shape {ks}")
    b, _, h, w, _ = ks
    ms = tuple(mask.shape)
    if mask.ndim != 5 or ms[1] != 1 or ms[-1] != 1 or ms[0] not in (1, b):
        raise ValueError(f"mask must be [B, 1, 1 or H, W, 1] for k-space {ks}, got shape {ms}")
    if ms[2] not in (1, h) or ms[3] != w:
        raise ValueError(f"mask shape {ms} does not match k-space shape {ks} (H={h}, W={w})")
    if sens_maps is not None:
        ss = tuple(sens_maps.shape)
        expect = ks if not sens_maps.is_complex() else ks[:-1]
        if ss != expect:
            raise ValueError(f"sens_maps shape {ss} does not match k-space shape {ks}")
    # one host sync per forward for both finiteness checks (each check waits for the device)
    finite = torch.isfinite(masked_kspace).all()
    if sens_maps is not None:
        real_maps = torch.view_as_real(sens_maps) if sens_maps.is_complex() else sens_maps
        finite = finite & torch.isfinite(real_maps).all()
    if not bool(finite):
        if not bool(torch.isfinite(masked_kspace).all()):
            raise ValueError(f"masked_kspace {ks} contains NaN or Inf values")
        raise ValueError(f"sens_maps {tuple(sens_maps.shape)} contain NaN or Inf values")


class _KeepRunningStats:
    """Context manager restoring, on exit, the running statistics that normalisation layers in
    training mode update in place (BatchNorm's ``running_mean``, ``running_var``,
    ``num_batches_tracked``).

    The recompute context of a checkpointed unroll: recomputing the forward in the backward would
    otherwise update the statistics a second time. Restores also when the recomputation is cut
    short (torch stops it once every tensor the backward needs is recomputed).

    Args:
        module: the module whose normalisation layers are watched; the layers in training mode
            with running statistics are chosen now (at the forward), their values read on enter.
    """

    def __init__(self, module: nn.Module) -> None:
        self._buffers = [
            buf
            for m in module.modules()
            if isinstance(m, _NormBase) and m.training and m.track_running_stats
            for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
            if buf is not None
        ]
        self._saved: list[torch.Tensor] = []

    def __enter__(self) -> _KeepRunningStats:
        self._saved = [buf.detach().clone() for buf in self._buffers]
        return self

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for buf, value in zip(self._buffers, self._saved, strict=True):
                buf.copy_(value)
        self._saved = []


@dataclass
class ModlSettings(ModelSettings):
    """MoDL's options as a training run sets them (defaults: the CPU demo; the paper's in brackets).

    Attributes:
        num_unrolls: MoDL unrolled iterations K (paper: 10).
        num_cg_iters: MoDL CG iterations per data-consistency step (paper: 10).
        denoiser: MoDL denoiser: 'resnet' (paper's conv-BN-ReLU CNN) or 'unet' (fastmri NormUnet).
        chans: ResNet denoiser channels (paper: 64).
        num_layers: ResNet denoiser conv layers (paper: 5).
        batchnorm: BatchNorm in the ResNet denoiser (paper: yes).
        lam_init: Initial MoDL regularisation weight lambda (paper: 0.05).
        learn_lam: Train lambda (paper: yes).
        unet_chans: U-Net channels (MoDL 'unet' denoiser).
        unet_pools: U-Net pooling layers (MoDL 'unet' denoiser).
        sens_chans: Learned sensitivity model channels (--sens_maps learned).
        sens_pools: Learned sensitivity model pooling layers.
        checkpoint_unrolls: Recompute each MoDL unroll in the backward (torch.utils.checkpoint)
            instead of keeping its activations: training memory nearly flat in num_unrolls, at
            the cost of one more forward of every unroll per step (default off: speed).
        conv_algorithm: ResNet denoiser 3x3 convolutions on CPU: 'default' (oneDNN) or 'winograd'
            (NNPACK Winograd, float32: faster forward and input gradient, same results up to
            rounding).
        denoiser_bf16: Run the denoiser under bf16 autocast where the hardware has native bf16
            (x86 CPUs with avx512_bf16 or AMX, bf16-capable GPUs); elsewhere float32, with a
            warning.
        fuse_bn_eval: In eval mode, fold each BatchNorm of the ResNet denoiser into its conv.
    """

    num_unrolls: int = 4
    num_cg_iters: int = 5
    denoiser: Literal["resnet", "unet"] = "resnet"
    chans: int = 32
    num_layers: int = 5
    batchnorm: bool = True
    lam_init: float = 0.05
    learn_lam: bool = True
    unet_chans: int = 18
    unet_pools: int = 4
    sens_chans: int = 8
    sens_pools: int = 4
    checkpoint_unrolls: bool = False
    conv_algorithm: ConvAlgorithm = "default"
    denoiser_bf16: bool = False
    fuse_bn_eval: bool = False

    #: settings that change how the model computes, not what it is: a checkpoint trained with
    #: other values of these resumes and evaluates as the same model
    runtime_only: ClassVar[tuple[str, ...]] = (
        "cg_tol",  # 1e-6 before 0.0: not reached in 10 float32 iterations, the same solve
        "cg_check_every",
        "checkpoint_unrolls",
        "conv_algorithm",
        "denoiser_bf16",
        "fuse_bn_eval",
    )

    def __post_init__(self) -> None:
        check_at_least_one(self, "num_unrolls", "num_cg_iters", "chans")

    def model_kwargs(self, *, sens_maps: str = "espirit") -> dict[str, Any]:
        """:class:`MoDL` keyword arguments. With ESPIRiT maps (``sens_maps="espirit"``) the
        learned sensitivity network would be dead weight (and count in pruning and checkpoint
        size), so it is built only for ``sens_maps="learned"``."""
        kwargs = super().model_kwargs(sens_maps=sens_maps)
        # execution-speed options: passed only when set, so checkpoints written before they
        # existed still match a run with the defaults
        for f in dataclasses.fields(self):
            if f.name in _SPEED_FIELDS and kwargs[f.name] == f.default:
                del kwargs[f.name]
        sens = {k: kwargs.pop(k) for k in ("sens_chans", "sens_pools")}
        return {**kwargs, "learn_sens_maps": sens_maps == "learned", **sens}

    def build(self, *, sens_maps: str = "espirit") -> nn.Module:
        """The :class:`MoDL` of these settings: ``MoDL(**self.model_kwargs(sens_maps=...))``,
        what ``build_model("modl", ...)`` builds from the same keyword arguments (same weights from
        the same random state)."""
        if type(self) is not ModlSettings:  # a subclass registered for another model
            return super().build(sens_maps=sens_maps)
        return MoDL(**self.model_kwargs(sens_maps=sens_maps))


_SPEED_FIELDS = ("conv_algorithm", "denoiser_bf16", "fuse_bn_eval")


@register_model("modl", settings=ModlSettings)
class MoDL(nn.Module):
    """Model-based deep learning network for multicoil MRI, a drop-in for ``fastmri.models.VarNet``.

    Args:
        num_unrolls: number of unrolled iterations K (MoDL paper: 10).
        num_cg_iters: CG iterations per data-consistency solve (MoDL paper: 10).
        denoiser: ``"resnet"`` (MoDL's conv–BN–ReLU CNN), ``"unet"`` (fastmri NormUnet) or an
            ``nn.Module`` mapping ``[B, 2, H, W]`` → ``[B, 2, H, W]`` float32.
        chans, num_layers, batchnorm: ResNet denoiser settings (paper: 64, 5, True).
        unet_chans, unet_pools: U-Net denoiser settings.
        lam_init: initial regularisation weight λ (> 0).
        learn_lam: train λ (parametrised as exp(log λ), so it stays positive).
        learn_sens_maps: build fastmri's learned ``SensitivityModel`` (used when ``forward`` gets
            no ``sens_maps``). ``False``: maps must always be given (e.g. ESPIRiT) and the model
            has no unused sensitivity-network weights (which would otherwise count in pruning).
        sens_chans, sens_pools: ``SensitivityModel`` settings.
        cg_tol: relative CG tolerance; ``0`` (default, as in MoDL): exactly ``num_cg_iters``
            iterations, no stop test (a host sync per iteration on a GPU); ``> 0``: stop once
            converged, tested every ``cg_check_every`` iterations.
        cg_check_every: iterations between CG stop tests when ``cg_tol > 0``.
        implicit_backward: O(1)-memory CG gradients (see :func:`fastmri_pun.physics.cg_solve`).
        checkpoint_unrolls: when autograd is on, run each unroll (denoiser + CG solve) under
            ``torch.utils.checkpoint`` (non-reentrant): the forward keeps only each unroll's
            ``[B, H, W]`` complex input and the backward recomputes the unrolls one at a time, so
            the activations of only one denoiser pass are alive during the backward. Outputs and
            gradients are unchanged (the recomputation repeats the same operations; pruning
            pre-hooks recompute ``weight_orig * weight_mask``); BatchNorm running statistics are
            restored after each recomputation, so they are updated once per unroll as without
            checkpointing. Costs one more forward of every unroll per training step. Not
            inside ``torch.nn.utils.parametrize.cached()`` with a parametrised denoiser (the
            cached weight would belong to the first unroll's recomputation only).
        conv_algorithm, fuse_bn_eval: ResNet denoiser execution (see
            :class:`~fastmri_pun.models.ResNetDenoiser`); ``"winograd"`` needs ``"resnet"``.
        denoiser_bf16: bf16 autocast for the denoiser where supported (see
            :func:`fastmri_pun.models.fast_paths.denoise_complex`).
    """

    def __init__(
        self,
        num_unrolls: int = 10,
        num_cg_iters: int = 10,
        denoiser: str | nn.Module = "resnet",
        chans: int = 64,
        num_layers: int = 5,
        batchnorm: bool = True,
        unet_chans: int = 18,
        unet_pools: int = 4,
        lam_init: float = 0.05,
        learn_lam: bool = True,
        learn_sens_maps: bool = True,
        sens_chans: int = 8,
        sens_pools: int = 4,
        mask_center: bool = True,
        cg_tol: float = 0.0,
        cg_check_every: int = 5,
        implicit_backward: bool = True,
        checkpoint_unrolls: bool = False,
        conv_algorithm: ConvAlgorithm = "default",
        denoiser_bf16: bool = False,
        fuse_bn_eval: bool = False,
    ) -> None:
        super().__init__()
        if num_unrolls < 1 or num_cg_iters < 1:
            raise ValueError(
                f"num_unrolls and num_cg_iters must be >= 1, got {num_unrolls}, {num_cg_iters}"
            )
        if lam_init <= 0:
            raise ValueError(f"lam_init must be > 0, got {lam_init}")
        if (conv_algorithm != "default" or fuse_bn_eval) and denoiser != "resnet":
            raise ValueError("conv_algorithm and fuse_bn_eval apply to the 'resnet' denoiser only")
        if denoiser == "unet":
            self.denoiser = build_denoiser("unet", chans=unet_chans, num_pools=unet_pools)
        elif denoiser == "resnet":
            self.denoiser = build_denoiser(
                "resnet",
                chans=chans,
                num_layers=num_layers,
                batchnorm=batchnorm,
                conv_algorithm=conv_algorithm,
                fuse_bn_eval=fuse_bn_eval,
            )
        else:
            self.denoiser = build_denoiser(denoiser)
        self.sens_net = (
            CenterMaskedSensitivityModel(sens_chans, sens_pools, mask_center=mask_center)
            if learn_sens_maps
            else None
        )
        log_lam = torch.tensor(math.log(lam_init))
        if learn_lam:
            self.log_lam = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lam", log_lam)
        self.num_unrolls = num_unrolls
        self.num_cg_iters = num_cg_iters
        self.cg_tol = cg_tol
        self.cg_check_every = cg_check_every
        self.implicit_backward = implicit_backward
        self.checkpoint_unrolls = checkpoint_unrolls
        self.denoiser_bf16 = denoiser_bf16

    @property
    def lam(self) -> torch.Tensor:
        """The (positive) regularisation weight λ, ``[]`` float32."""
        return self.log_lam.exp()

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` complex → denoised ``[B, H, W]`` complex via the 2-channel CNN (fed in
        NCHW layout: see :mod:`fastmri_pun.models.fast_paths`)."""
        return denoise_complex(self.denoiser, x, bf16=self.denoiser_bf16)

    def _unroll(
        self, op: SenseOp, aty: torch.Tensor, lam: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """One unrolled iteration ``x ← (AᴴA + λI)⁻¹(Aᴴy + λ D(x))``.

        Args:
            op: the SENSE operator of the batch.
            aty: ``[B, H, W]`` complex ``Aᴴy``.
            lam: ``[]`` real λ.
            x: ``[B, H, W]`` complex current estimate.

        Returns:
            the next estimate, ``[B, H, W]`` complex.
        """
        z = self._denoise(x)
        return cg_solve(
            op.normal,
            aty + lam * z,
            lam,
            x0=z,
            max_iter=self.num_cg_iters,
            tol=self.cg_tol,
            check_every=self.cg_check_every,
            implicit_backward=self.implicit_backward,
            params=op.grad_tensors,
        )

    def _recompute_contexts(self) -> tuple[nullcontext[None], _KeepRunningStats]:
        """``context_fn`` of the checkpointed unrolls: nothing around the forward; around the
        recomputation, restore the denoiser's running statistics."""
        return nullcontext(), _KeepRunningStats(self.denoiser)

    def _check_no_cached_parametrizations(self) -> None:
        """Raise ``RuntimeError`` if ``parametrize.cached()`` is active and the denoiser has
        parametrised weights: the cached weight is computed inside the first checkpointed unroll
        and the recomputation of the others would compute it again (torch would stop with a
        ``CheckpointError`` on the mismatch)."""
        if getattr(parametrize, "_cache_enabled", 0) and any(
            parametrize.is_parametrized(m) for m in self.denoiser.modules()
        ):
            raise RuntimeError(
                "checkpoint_unrolls cannot run inside torch.nn.utils.parametrize.cached() with a "
                "parametrised denoiser; leave the cache off for this model"
            )

    def reconstruct(self, op: SenseOp, aty: torch.Tensor) -> torch.Tensor:
        """Run the unrolled iterations from ``Aᴴy``. ``[B, H, W]`` complex → ``[B, H, W]`` complex."""
        lam = self.lam
        x = aty
        use_checkpoint = self.checkpoint_unrolls and torch.is_grad_enabled()
        if use_checkpoint:
            self._check_no_cached_parametrizations()
        for _ in range(self.num_unrolls):
            if use_checkpoint:
                x = checkpoint(
                    self._unroll,
                    op,
                    aty,
                    lam,
                    x,
                    use_reentrant=False,
                    context_fn=self._recompute_contexts,
                )
            else:
                x = self._unroll(op, aty, lam, x)
        return x

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | torch.Tensor | None = None,
        sens_maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reconstruct a magnitude image, like ``fastmri.models.VarNet``.

        Args:
            masked_kspace: ``[B, C, H, W, 2]`` float32 undersampled k-space (fastMRI layout).
            mask: ``[B, 1, 1, W, 1]`` bool sampling mask.
            num_low_frequencies: ACS lines, for the learned sensitivity model (as in VarNet).
            sens_maps: optional precomputed coil maps, ``[B, C, H, W, 2]`` float32 or
                ``[B, C, H, W]`` complex64 (e.g. ESPIRiT). ``None``: learned ``SensitivityModel``.

        Raises:
            ValueError: bad shapes, or NaN/Inf in ``masked_kspace`` or ``sens_maps`` (one
                ``isfinite`` pass over each per call).

        Returns:
            ``[B, H, W]`` float32 magnitude image on the full k-space grid (crop to the target).
        """
        _check_inputs(masked_kspace, mask, sens_maps)
        if sens_maps is None:
            if self.sens_net is None:
                raise ValueError(
                    "this MoDL was built with learn_sens_maps=False: pass sens_maps (e.g. ESPIRiT)"
                )
            sens_maps = self.sens_net(masked_kspace, mask, num_low_frequencies)
        op = SenseOp(real_to_complex(sens_maps), mask)
        aty = op.A_adjoint(real_to_complex(masked_kspace))
        # Scale each sample to unit RMS so the CNN sees inputs of a fixed range whatever the
        # scanner's k-space scale; the solve is linear in y, so the output is scaled back exactly.
        scale = aty.detach().abs().pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12)[:, None, None]
        x = self.reconstruct(op, aty / scale)
        return (x * scale).abs()
