"""How well a slice's coil maps explain its own data: ``maps_fit``, one number per slice.

ESPIRiT can fail without an error (a noise-dominated ACS, a field of view smaller than the
object): the maps then no longer describe the coils, every model that uses them reconstructs a
wrong image, and the slice's scores drop for a reason that is not the model's. The check:

* ``x_c``: the low-resolution coil images of the ACS band only (the fully sampled centre columns
  of the *masked* k-space, :func:`fastmri_pun.data.espirit.acs_bounds`; every other column
  zeroed), by fastMRI's centred inverse FFT;
* ``fit(p) = |Σ_c conj(S_c(p)) x_c(p)| / RSS(x)(p)``: for maps consistent with the data
  (``x_c = S_c m`` with ``Σ_c |S_c|² = 1``) this is 1; by Cauchy–Schwarz it is at most
  ``sqrt(Σ_c |S_c|²)`` (1 for ESPIRiT's unit-norm maps, 0 where the ESPIRiT crop zeroed them);
* ``maps_fit``: the mean of ``fit`` over the object, the pixels whose ``RSS(x)`` exceeds
  :data:`OBJECT_FRACTION` of its maximum.

Cost: one inverse FFT of ``[C, H, W]`` and a few element-wise passes per slice, far below one
model forward.

Measured (ESPIRiT defaults, centre fraction 0.16, 4×):

===========================================================  ===========
case                                                         maps_fit
===========================================================  ===========
demo set 64², 4 coils: in-dist, mask-type, anatomy, contrast,  0.993–0.998
lesions, noise 20 dB (every slice)
fixture files 128 × 56 / 64, 4 and 6 coils, in-dist and        0.997–0.999
noise 20 dB
same files, noise 10 dB: ESPIRiT warns "second eigenvalue      0.36–0.47
exceeds 0.95 over 100% of the object"
same noisy data with the maps of the noise-free data           0.993–0.996
demo set, noise 5 dB                                           0.42–0.44
demo maps with the coil order rolled / the image flipped       0.31–0.68
===========================================================  ===========

So noise alone does not lower the measure (the ACS images keep a high SNR); failed maps do.
:data:`MAPS_FIT_MIN` = 0.8 sits well between (margin ≥ 0.19 to the worst good slice, ≥ 0.12 to
the best broken one). Slices below it are counted per shift in ``summary.md`` with a warning;
their scores are kept unchanged.
"""

from __future__ import annotations

import math

import torch
from fastmri import ifft2c

from ..data.espirit import acs_bounds

__all__ = ["MAPS_FIT_MIN", "OBJECT_FRACTION", "maps_fit"]

#: slices whose ``maps_fit`` is below this are reported as "coil maps do not fit the data"
MAPS_FIT_MIN = 0.8
#: object pixels: low-resolution RSS above this fraction of its maximum
OBJECT_FRACTION = 0.1


def maps_fit(
    masked_kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor,
    num_low_frequencies: int | None = None,
) -> float:
    """Consistency of coil maps with the ACS data of one slice (module docstring).

    Computed on the tensors' device (all three on one device, CPU or CUDA); two values come to
    the host: the mask's ``W`` entries (for the ACS bounds) and the result.

    Args:
        masked_kspace: ``[C, H, W, 2]`` float32 real-view masked k-space (a
            :class:`~fastmri_pun.data.SenseSample`'s).
        mask: the sampling mask, ``W`` entries in any shape (``[1, 1, W, 1]``).
        sens_maps: ``[C, H, W, 2]`` float32 maps; an empty tensor (learned maps) gives NaN.
        num_low_frequencies: ACS columns as fastMRI's mask functions report them (``None`` or
            0: the sampled run around the centre).

    Returns:
        The mean fit over the object pixels (1 for consistent maps, summed in float64), NaN
        without maps or without signal in the ACS.

    Raises:
        ValueError: shapes that disagree, or a mask that does not sample the centre column.
    """
    if sens_maps.numel() == 0:
        return math.nan
    if tuple(sens_maps.shape) != tuple(masked_kspace.shape) or masked_kspace.shape[-1] != 2:
        raise ValueError(
            f"sens_maps {tuple(sens_maps.shape)} and masked_kspace "
            f"{tuple(masked_kspace.shape)} must both be [C, H, W, 2]"
        )
    # the ACS bounds are Python integers: the mask's W entries are read on the host (once)
    start, stop = acs_bounds(mask, int(num_low_frequencies) if num_low_frequencies else None)
    acs = torch.zeros_like(masked_kspace)
    acs[:, :, start:stop] = masked_kspace[:, :, start:stop]
    x = torch.view_as_complex(ifft2c(acs.float()).contiguous()).to(torch.complex128)
    s = torch.view_as_complex(sens_maps.float().contiguous()).to(torch.complex128)
    rss = x.abs().pow(2).sum(0).sqrt()
    # on the tensors' device, no data-dependent shapes: the object as a 0/1 weight; no object
    # (an all-zero ACS: every rss is 0, not above 0.1 of it) gives 0 / 0 = NaN
    obj = rss > OBJECT_FRACTION * rss.amax()
    fit = (s.conj() * x).sum(0).abs() / torch.where(obj, rss, 1.0)
    mean = torch.where(obj, fit, 0.0).sum() / obj.sum()
    return float(mean)  # the one read of the result on the host
