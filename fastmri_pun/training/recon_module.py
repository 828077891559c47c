"""Lightning module training any registered reconstruction model (MoDL by default), dense or pruned.

Batches are collated :class:`fastmri_pun.data.SenseSample` (or fastmri ``VarNetSample``):
``masked_kspace [B, C, H, W, 2] f32, mask [B, 1, 1, W, 1] bool, num_low_frequencies [B],
target [B, h, w] f32, fname list[str], slice_num [B], max_value [B], crop_size, sens_maps``
(``sens_maps`` ``[B, C, H, W, 2]`` f32, or ``[B, 0]`` when maps are learned).

Pruned models: ``set_prune_masks(masks)`` applies ``dict[str, BoolTensor]`` masks (keys as in
``model.named_parameters()`` of the unpruned model) with :func:`fastmri_pun.pruning.apply_masks`.
The masks go into the checkpoint as ``checkpoint["pun_masks"]`` (the method that found them,
``prune_method``, as ``checkpoint["pun_method"]``) and ``on_load_checkpoint``
re-applies them *before* Lightning loads the state dict, so the ``weight_orig``/``weight_mask``
keys of ``torch.nn.utils.prune`` match in ``load_from_checkpoint`` and when resuming a run.

Transform settings: the hparam ``transform_settings`` holds the
:meth:`fastmri_pun.data.TransformSettings.to_dict` of the data the model was trained on
(challenge, mask, coil maps, readout crop, ESPIRiT), so a test run rebuilds the same transform
and a resumed run is refused when its transform differs (:func:`check_checkpoint`).

Crops: validation and test slices with a target are compared on their common size
(:func:`fastmri_pun.data.crop.crop_to_common`: a k-space narrower than the target crops the
target); test slices without a target (fastMRI's test/challenge files) are saved at the file's
reconstruction size (:func:`~fastmri_pun.data.crop.crop_to_recon_size`), as fastMRI submits them.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import fastmri
import torch
from lightning_fabric.utilities.cloud_io import _load as pl_load
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from ..data.crop import center_crop, crop_to_common, crop_to_recon_size
from ..models import accepts_sens_maps, build_model, comparable_model_kwargs
from ..pruning import apply_masks, get_masks, is_pruned
from ..utils.io import file_sha256
from .losses import ReconLoss
from .mri_module import MriModule

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "step", "cosine")


def zero_filled(masked_kspace: torch.Tensor) -> torch.Tensor:
    """fastMRI's zero-filled baseline: RSS of the coil images of the zero-filled k-space.

    ``[B, C, H, W, 2]`` float32 → ``[B, H, W]`` float32 (crop to the target afterwards).
    """
    return fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(masked_kspace)), dim=1)


#: transform settings that may differ between a checkpoint and a run resuming it
TRANSFORM_KEYS_IGNORED = ("maps_cache_dir",)


def checkpoint_transform_settings(hparams: dict[str, Any]) -> dict[str, Any] | None:
    """The ``TransformSettings.to_dict()`` stored in a checkpoint's hyper-parameters (hparam
    ``transform_settings``), or ``None`` for checkpoints written before it was stored."""
    stored = hparams.get("transform_settings")
    return dict(stored) if stored else None


def transform_settings_diff(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys of two ``TransformSettings.to_dict()`` that differ (ESPIRiT fields as
    ``espirit.<field>``), except :data:`TRANSFORM_KEYS_IGNORED`."""

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in d.items():
            if key in TRANSFORM_KEYS_IGNORED:
                continue
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    a, b = flat(stored), flat(wanted)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def has_target(batch: Any) -> bool:
    """Whether a collated batch carries targets ``[B, h, w]`` (fastMRI test/challenge files
    carry ``tensor(0)`` per slice, collated to ``[B]``)."""
    return batch.target.ndim >= 3 and batch.target.numel() > 0


def check_checkpoint(checkpoint: dict[str, Any], source: str, expected: dict | None = None) -> None:
    """Raise ``ValueError`` unless ``checkpoint`` was written by :class:`ReconstructionModule`.

    Args:
        checkpoint: the loaded checkpoint dict.
        source: where it came from (for the message).
        expected: ``{"model_name": ..., "model_kwargs": ...}`` the checkpoint must match, if
            given (compared by :func:`~fastmri_pun.models.comparable_model_kwargs`: defaults
            filled in, settings that change only how the model computes left out); with a
            ``"transform_settings"`` entry (``TransformSettings.to_dict()``) also the stored
            transform settings (checkpoints without them are not checked).
    """
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{source}: not a Lightning checkpoint (no 'state_dict' entry)")
    hp = checkpoint.get("hyper_parameters") or {}
    if "model_name" not in hp or "model_kwargs" not in hp:
        raise ValueError(
            f"{source}: not a fastmri_pun ReconstructionModule checkpoint (its hyper-parameters "
            f"{sorted(hp)} lack 'model_name'/'model_kwargs')"
        )
    if expected is None:
        return
    got = {
        "model_name": hp["model_name"],
        "model_kwargs": comparable_model_kwargs(hp["model_name"], dict(hp["model_kwargs"] or {})),
    }
    want = {
        "model_name": expected["model_name"],
        "model_kwargs": comparable_model_kwargs(
            expected["model_name"], dict(expected["model_kwargs"])
        ),
    }
    if got != want:
        diff = sorted(
            k
            for k in set(got["model_kwargs"]) | set(want["model_kwargs"])
            if got["model_kwargs"].get(k) != want["model_kwargs"].get(k)
        )
        what = f"model {got['model_name']!r} vs {want['model_name']!r}" + (
            f", differing settings {diff}" if diff else ""
        )
        raise ValueError(
            f"{source} was saved for another model than this run builds ({what}); "
            "use the checkpoint's settings or start a new run"
        )
    stored = checkpoint_transform_settings(hp)
    wanted = expected.get("transform_settings")
    if stored is not None and wanted is not None:
        diff = transform_settings_diff(stored, dict(wanted))
        if diff:
            raise ValueError(
                f"{source} was trained with other data transform settings than this run "
                f"(differing {diff}); use the checkpoint's settings or start a new run"
            )


#: weights whose magnitude exceeds this are refused as corrupt (:func:`check_finite_weights`)
MAX_WEIGHT_MAGNITUDE = 1e30

_ZIP_LOCAL_HEADER = b"PK\x03\x04"


def _load_error(path: Path, err: Exception) -> str:
    """The problem of a checkpoint ``torch.load(weights_only=True)`` failed on, as
    ``"<path>: <problem>"`` (never torch's advice to disable safe loading)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    text = str(err)
    if head == _ZIP_LOCAL_HEADER and not zipfile.is_zipfile(path):
        return f"{path}: truncated ({size} bytes; the end of its zip archive is missing)"
    refused = ("Unsupported global", "unsupported GLOBAL", "can still be loaded", "is blocked")
    if any(marker in text for marker in refused):
        return (
            f"{path}: refused for safety: it holds objects other than tensors and plain data "
            "(torch.load(weights_only=True) refuses them; never load untrusted checkpoints "
            "with weights_only=False)"
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):
            return f"{path}: corrupt (its zip archive cannot be read)"
        if bad is not None:
            return f"{path}: corrupt (zip entry {bad} does not match its checksum)"
        if not any(n.endswith("data.pkl") for n in names):
            return f"{path}: not a PyTorch checkpoint (a zip archive without data.pkl)"
        return f"{path}: corrupt ({type(err).__name__})"
    if isinstance(err, EOFError) or "truncated" in text:
        return f"{path}: truncated ({size} bytes)"
    return f"{path}: not a PyTorch checkpoint"


def check_finite_weights(checkpoint: dict[str, Any], source: str | Path) -> None:
    """Raise ``ValueError`` naming the first floating-point tensor of ``checkpoint["state_dict"]``
    that holds NaN/Inf or values above :data:`MAX_WEIGHT_MAGNITUDE` in magnitude."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if value.numel() == 0:
            continue
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: weight {name!r} holds NaN or Inf values")
        if float(value.abs().max()) > MAX_WEIGHT_MAGNITUDE:
            raise ValueError(
                f"{source}: weight {name!r} holds values above {MAX_WEIGHT_MAGNITUDE:g} in "
                "magnitude"
            )


def _check_sha256(path: Path) -> None:
    """Compare ``path`` with its ``<path>.sha256`` sidecar (``sha256sum`` format), if present."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return
    recorded = sidecar.read_text().split()
    if not recorded:
        raise ValueError(f"{sidecar}: empty checksum file")
    if file_sha256(path) != recorded[0].lower():
        raise ValueError(
            f"{path}: content does not match its recorded sha256 ({sidecar.name}); the file "
            "was changed or damaged after it was written"
        )


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and one-line errors.

    Checks, in order: the file exists and is not empty; its ``<path>.sha256`` sidecar matches
    (when there is one); it loads safely; every floating-point weight of its ``state_dict`` is
    finite and at most :data:`MAX_WEIGHT_MAGNITUDE` in magnitude. For a bad ``last.ckpt``
    with a ``best.ckpt`` beside it, the message points at ``--resume best``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``"<path>: empty (0 bytes)"``, ``"<path>: truncated (...)"``,
            ``"<path>: not a PyTorch checkpoint"``, ``"<path>: refused for safety: ..."``
            (objects other than tensors and plain data), a corrupt zip entry, a checksum
            mismatch, or non-finite/absurd weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: empty (0 bytes)")
        _check_sha256(path)
        try:
            checkpoint = pl_load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
            raise ValueError(_load_error(path, err)) from err
        check_finite_weights(checkpoint, path)
    except ValueError as err:
        best = path.with_name("best.ckpt")
        if path.name == "last.ckpt" and best.is_file():
            raise ValueError(
                f"{err}; continue from the best checkpoint instead with --resume best"
            ) from err
        raise
    return checkpoint


def checkpoint_pruning(checkpoint: dict[str, Any]) -> tuple[str | None, float] | None:
    """``(method, density)`` of a pruned checkpoint (its ``pun_masks``), ``None`` for a dense one.

    ``method`` is the stored ``pun_method`` (``None`` for checkpoints written before it was
    stored); ``density`` the kept fraction of the masked weights.
    """
    masks = checkpoint.get("pun_masks") if isinstance(checkpoint, dict) else None
    if not masks:
        return None
    kept = sum(int(m.bool().sum()) for m in masks.values())
    total = sum(int(m.numel()) for m in masks.values())
    method = checkpoint.get("pun_method")
    return (str(method) if method else None), kept / max(total, 1)


class ReconstructionModule(MriModule):
    """Train/validate/test a model from the :mod:`fastmri_pun.models` registry.

    Args:
        model_name: registered model name (``"modl"``, ``"varnet"``, ...).
        model_kwargs: keyword arguments for :func:`fastmri_pun.models.build_model`.
        sens_maps: ``"espirit"``: pass the batch's precomputed maps to the model (when it takes
            ``sens_maps``) and freeze the model's own learned-map network, which would get no
            gradient (and break DDP's gradient bookkeeping); ``"learned"``: never pass maps.
        loss: ``"l1"``, ``"ssim"``, ``"ssim_l1"`` or ``"mse"`` (see :class:`ReconLoss`).
        l1_weight: L1 weight of ``"ssim_l1"``.
        optimizer: ``"adam"`` or ``"adamw"``.
        lr, weight_decay: optimiser settings.
        lr_scheduler: ``"none"``, ``"step"`` (StepLR, ``lr_step_size`` epochs, ``lr_gamma``) or
            ``"cosine"`` (cosine annealing over the Trainer's ``max_epochs``).
        lr_step_size, lr_gamma: StepLR settings.
        num_log_images: validation images logged to TensorBoard.
        transform_settings: ``TransformSettings.to_dict()`` of the data transform the model is
            trained with (JSON-able; stored in the checkpoint as the hparam
            ``transform_settings`` so a test run can rebuild the same transform); ``None``:
            unknown (checkpoints of older versions).
    """

    def __init__(
        self,
        model_name: str = "modl",
        model_kwargs: dict[str, Any] | None = None,
        sens_maps: str = "espirit",
        loss: str = "ssim_l1",
        l1_weight: float = 0.16,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_scheduler: str = "none",
        lr_step_size: int = 40,
        lr_gamma: float = 0.1,
        num_log_images: int = 16,
        transform_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_log_images=num_log_images)
        if sens_maps not in ("espirit", "learned"):
            raise ValueError(f"sens_maps must be 'espirit' or 'learned', got {sens_maps!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
        if lr_scheduler not in SCHEDULERS:
            raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; choose one of {SCHEDULERS}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.save_hyperparameters()
        self.model = build_model(model_name, **(model_kwargs or {}))
        self.loss_fn = ReconLoss(loss, l1_weight)
        self.uses_sens_maps = sens_maps == "espirit" and accepts_sens_maps(self.model)
        sens_net = getattr(self.model, "sens_net", None)
        if self.uses_sens_maps and isinstance(sens_net, torch.nn.Module):
            sens_net.requires_grad_(False)
        self.prune_masks: dict[str, torch.Tensor] | None = None
        #: the pruning method that found ``prune_masks`` (stored as ``checkpoint["pun_method"]``)
        self.prune_method: str | None = None

    # ------------------------------------------------------------------ pruning masks
    def set_prune_masks(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Apply pruning masks (``{param_name: BoolTensor}``) to ``self.model`` and remember them."""
        if not masks:
            self.prune_masks = None
            return
        if self.prune_masks is not None:
            raise ValueError("this module's model is already pruned; build a new module")
        masks = {k: v.detach().bool().cpu() for k, v in masks.items()}
        if is_pruned(self.model):  # pruned by the caller (e.g. find_masks): check, don't re-apply
            current = get_masks(self.model)
            if current.keys() != masks.keys() or any(
                not torch.equal(current[k], masks[k]) for k in masks
            ):
                raise ValueError("the model is pruned with other masks than the ones given")
        else:
            apply_masks(self.model, masks)
        self.prune_masks = masks

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.prune_masks is not None:
            checkpoint["pun_masks"] = self.prune_masks
            if self.prune_method:
                checkpoint["pun_method"] = self.prune_method

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = {
            "model_name": self.hparams.model_name,
            "model_kwargs": self.hparams.model_kwargs or {},
            "transform_settings": self.hparams.get("transform_settings"),
        }
        check_checkpoint(checkpoint, "checkpoint", expected=expected)
        masks = checkpoint.get("pun_masks")
        if masks and self.prune_method is None and checkpoint.get("pun_method"):
            self.prune_method = str(checkpoint["pun_method"])
        if masks and self.prune_masks is None:
            self.set_prune_masks(masks)
        elif masks and self.prune_masks is not None:
            same = masks.keys() == self.prune_masks.keys() and all(
                torch.equal(masks[k].cpu(), self.prune_masks[k]) for k in masks
            )
            if not same:
                raise ValueError("checkpoint's pruning masks differ from this module's masks")
        elif self.prune_masks is not None:
            raise ValueError("checkpoint holds a dense model but this module is pruned")

    @classmethod
    def load_checkpoint(cls, path: str | Path, map_location: Any = "cpu") -> ReconstructionModule:
        """Build the module a checkpoint was saved from and load its weights (and masks).

        Loads with :func:`load_checkpoint_file` (``weights_only=True``, finite weights).

        Raises:
            FileNotFoundError: no such file.
            ValueError: one line for an empty, truncated, corrupt, unsafe or non-finite
                checkpoint (see :func:`load_checkpoint_file`) or one of another module.
        """
        checkpoint = load_checkpoint_file(path, map_location)
        check_checkpoint(checkpoint, f"checkpoint {path}")
        module = cls(**checkpoint["hyper_parameters"])
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        rank_zero_info(f"Loaded {path} (epoch {checkpoint.get('epoch')})")
        return module

    # ------------------------------------------------------------------ steps
    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: torch.Tensor | int | None = None,
        sens_maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, C, H, W, 2]`` k-space, ``[B, 1, 1, W, 1]`` mask → ``[B, H, W]`` float32 image."""
        return self._run(self.model, masked_kspace, mask, num_low_frequencies, sens_maps)

    def _run(
        self,
        model: torch.nn.Module,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low: torch.Tensor | int | None,
        sens_maps: torch.Tensor | None,
    ) -> torch.Tensor:
        if isinstance(num_low, torch.Tensor) and num_low.numel() > 1:
            # fastmri's SensitivityModel takes an int or None (None: read from each mask);
            # a collated [B] tensor makes it fail for batch sizes > 1.
            num_low = int(num_low[0]) if bool((num_low == num_low[0]).all()) else None
        if self.uses_sens_maps and sens_maps is not None and sens_maps.numel() > 0:
            return model(masked_kspace, mask, num_low, sens_maps=sens_maps)
        return model(masked_kspace, mask, num_low)

    def reconstruct(self, batch: Any, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Run ``model`` (default ``self.model``) on a collated batch (module docstring).

        Returns:
            ``[B, H, W]`` float32 magnitude images on the k-space grid (not cropped: compare them
            with a target after :func:`fastmri_pun.data.crop.crop_to_common`).
        """
        return self._run(
            self.model if model is None else model,
            batch.masked_kspace,
            batch.mask,
            batch.num_low_frequencies,
            getattr(batch, "sens_maps", None),
        )

    def batch_loss(self, batch: Any, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Training loss of ``model`` (default ``self.model``) on a batch, ``[]`` float32."""
        output, target = crop_to_common(self.reconstruct(batch, model), batch.target)
        return self.loss_fn(output, target, batch.max_value)

    @staticmethod
    def slice_psnr(
        output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor
    ) -> torch.Tensor:
        """PSNR of each slice in dB, ``[B]`` float32: ``10 log10(max_value² / MSE)`` with the
        volume maximum as data range (fastMRI's convention; the validation metric is the same
        formula over whole volumes). ``output``/``target``: ``[B, H, W]``; ``max_value``: ``[B]``."""
        mse = (output.detach() - target).pow(2).flatten(1).mean(1).clamp_min(1e-20)
        return 10 * torch.log10(max_value.to(mse).pow(2) / mse)

    def prune_loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """``loss_fn(model, batch)`` of the pruning procedures (``find_masks``, the PUN search)."""
        return self.batch_loss(batch, model)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        output, target = crop_to_common(self.reconstruct(batch), batch.target)
        loss = self.loss_fn(output, target, batch.max_value)
        size = batch.masked_kspace.shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        # the training curve beside the validation curve: a train-test gap that keeps growing
        # while validation flattens is overfitting (the model is in training mode here)
        psnr = self.slice_psnr(output, target, batch.max_value).mean()
        self.log(
            "train_metrics/psnr",
            psnr,
            on_step=False,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        output, target = crop_to_common(self.reconstruct(batch), batch.target)
        return {
            "batch_idx": batch_idx,
            "fname": batch.fname,
            "slice_num": batch.slice_num,
            "max_value": batch.max_value,
            "output": output,
            "target": target,
            "zero_filled": center_crop(zero_filled(batch.masked_kspace), target.shape[-2:]),
            "val_loss": self.loss_fn(output, target, batch.max_value),
        }

    def test_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        output = self.reconstruct(batch)
        result: dict[str, Any] = {"fname": batch.fname, "slice_num": batch.slice_num}
        if has_target(batch):
            output, target = crop_to_common(output, batch.target)
            zf = center_crop(zero_filled(batch.masked_kspace), target.shape[-2:])
            result.update(target=target, max_value=batch.max_value, zero_filled=zf)
        else:
            crop_size = (int(batch.crop_size[0][0]), int(batch.crop_size[1][0]))
            output = crop_to_recon_size(output, crop_size)
        result["output"] = output
        return result

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt_cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.AdamW
        optim = opt_cls(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_scheduler == "none":
            return optim
        if self.hparams.lr_scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(
                optim, self.hparams.lr_step_size, self.hparams.lr_gamma
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                optim, T_max=max(1, int(self.trainer.max_epochs or 1))
            )
        return {"optimizer": optim, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
