"""Shift registry (folders, masks, noise) and fastMRI+ annotation reading / ROI masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset

from fastmri_pun.data import shifts as shifts_mod
from fastmri_pun.data.annotations import (
    Annotation,
    annotations_for,
    read_annotations,
    roi_mask,
    write_annotations,
)
from fastmri_pun.data.shifts import (
    DEFAULT_SHIFTS,
    ShiftSpec,
    list_shifts,
    register_shift,
    resolve_shift,
)
from fastmri_pun.data.transforms import SenseDataTransform


def _sampled_fraction(mask_func, width: int = 320) -> float:
    mask, _ = mask_func((1, 64, width, 2), None, (3, 1, 4))
    return mask.float().mean().item()


def test_registry_resolves_every_shift_relative_to_training_mask(demo_root: Path) -> None:
    assert set(DEFAULT_SHIFTS) <= set(list_shifts())
    # the train-test gap is registered (statically) but not evaluated by default
    assert "train" in list_shifts() and "train" not in DEFAULT_SHIFTS
    resolved = {name: resolve_shift(name, "random", 0.08, 4) for name in list_shifts()}
    for shift in resolved.values():
        assert shift.data_dir(demo_root).is_dir(), shift.name
    assert resolved["in-dist"].data_subdir == "multicoil_test"
    assert resolved["train"].data_subdir == "multicoil_train"
    assert (resolved["anatomy"].data_subdir, resolved["contrast"].data_subdir) == (
        "multicoil_test_anatomy",
        "multicoil_test_contrast",
    )
    lesions = resolved["lesions"]
    assert lesions.annotations_path(demo_root).is_file()
    assert resolved["noise"].noise_snr_db == 20.0
    assert all(s.noise_snr_db is None for n, s in resolved.items() if n != "noise")
    # accel-8x keeps the ACS (so ESPIRiT calibration), only the outer k-space is sparser
    a8 = resolved["accel-8x"]
    assert (a8.acceleration, a8.center_fraction, a8.mask_type) == (8, 0.08, "random")
    assert _sampled_fraction(a8.mask_func()) == pytest.approx(1 / 8, abs=0.03)
    assert _sampled_fraction(resolved["in-dist"].mask_func()) == pytest.approx(1 / 4, abs=0.04)
    mt = resolved["mask-type"]
    assert mt.mask_type == "equispaced_fraction" and mt.acceleration == 4
    assert _sampled_fraction(mt.mask_func()) == pytest.approx(1 / 4, abs=0.01)
    # the other way round: an equispaced-trained model is shifted to random masks
    assert resolve_shift("mask-type", "equispaced", 0.08, 4).mask_type == "random"


def test_register_a_custom_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shifts_mod, "SHIFTS", dict(shifts_mod.SHIFTS))
    register_shift(ShiftSpec("accel-8x-cf004", "fastMRI 8x", center_fraction=0.04, acceleration=8))
    r = resolve_shift("accel-8x-cf004", "equispaced_fraction", 0.08, 4)
    assert (r.mask_type, r.center_fraction, r.acceleration) == ("equispaced_fraction", 0.04, 8)
    assert _sampled_fraction(r.mask_func()) == pytest.approx(1 / 8, abs=0.01)


def test_overrides_and_errors() -> None:
    assert resolve_shift("noise", noise_snr_db=12.5).noise_snr_db == 12.5
    assert resolve_shift("in-dist", noise_snr_db=12.5).noise_snr_db is None  # only noise shifts
    with pytest.raises(ValueError, match="unknown shift 'blur'"):
        resolve_shift("blur")
    with pytest.raises(ValueError, match="unknown mask type 'radial'"):
        resolve_shift("in-dist", mask_type="radial")
    with pytest.raises(ValueError, match="accelerations must all be > 1"):
        resolve_shift("in-dist", acceleration=1)


def test_noise_shift_reaches_its_snr_on_demo_data(demo_root: Path) -> None:
    shift = resolve_shift("noise", "random", 0.16, 4)
    kwargs = dict(mask_func=shift.mask_func(), sens_maps="learned")
    noisy_ds = SliceDataset(
        shift.data_dir(demo_root),
        "multicoil",
        transform=SenseDataTransform(**kwargs, noise_snr_db=shift.noise_snr_db),
    )
    clean_ds = SliceDataset(shift.data_dir(demo_root), "multicoil", SenseDataTransform(**kwargs))
    raw_ds = SliceDataset(shift.data_dir(demo_root), "multicoil")
    for i in range(len(raw_ds)):
        noisy, clean = noisy_ds[i], clean_ds[i]
        cols = noisy.mask.reshape(-1)
        noise = torch.view_as_complex(noisy.masked_kspace - clean.masked_kspace)[..., cols]
        power = np.mean(np.abs(raw_ds[i][0]) ** 2)
        snr = 10 * np.log10(power / noise.abs().pow(2).mean().item())
        assert snr == pytest.approx(20.0, abs=0.5)


def test_annotations_roundtrip_and_roi_masks(tmp_path: Path) -> None:
    rows = [
        Annotation.from_box(
            "file_a", 0, top=10, left=5, height=4, width=3, image_height=32, label="x"
        ),
        Annotation("file_a", 0, "No", 30, 0, 10, 6, "clipped"),  # partly outside the image
        Annotation("file_a", 0, "Yes", -1, -1, -1, -1, "Normal for age"),  # study level
        Annotation("file_b", 1, "No", 0, 0, 2, 2, "other slice"),
    ]
    path = write_annotations(tmp_path / "ann" / "a.csv", rows)
    back = read_annotations(path)
    assert back == rows
    mine = annotations_for(back, "file_a.h5", 0)
    assert [a.label for a in mine] == ["x", "clipped"]
    mask = roi_mask(mine, (32, 34))
    expected = np.zeros((32, 34), bool)
    expected[10:14, 5:8] = True
    expected[26:32, 30:34] = True  # y=0,h=6 → rows 26..31 (flipped convention), cols clipped
    np.testing.assert_array_equal(mask, expected)
    assert roi_mask([rows[2]], (32, 34)).sum() == 0


def test_reads_real_fastmri_plus_rows(tmp_path: Path) -> None:
    csv = tmp_path / "brain.csv"
    csv.write_text(
        "file,slice,study_level,x,y,width,height,label\n"
        "file_brain_AXFLAIR_200_6002425,2,No,91,132,7,6,Nonspecific white matter lesion\n"
        "file_brain_AXFLAIR_200_6002442,0,Yes,,,,,Normal for age\n"
    )
    rows = read_annotations(csv)
    assert rows[0].box(320) == (320 - 132 - 6, 91, 6, 7)
    assert not rows[1].has_box and rows[1].x == -1


def test_annotation_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotation CSV not found"):
        read_annotations(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,slice,x,y\nf,0,1,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing fastMRI\+ column\(s\)"):
        read_annotations(bad)
    bad.write_text("file,slice,study_level,x,y,width,height,label\nf,zero,No,1,2,3,4,l\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 2: bad annotation row"):
        read_annotations(bad)
