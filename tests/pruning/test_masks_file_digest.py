"""The masks file is used only when intact: a flipped byte, an edited value or a broken schema
is one error naming the file and saying to delete it; files without digest (earlier versions)
pass when they fit the schema; a full disk names the file and keeps the previous one."""

from __future__ import annotations

import pytest
import torch
from full_disk import full_disk_after

from fastmri_pun.app.errors import one_line
from fastmri_pun.pruning.masks_file import SavedMasks, load_masks_file, save_masks_file

PATTERN = torch.tensor([bool(int(b)) for b in f"{0x9E3779B97F4A7C15:064b}"])  # 64 "random" bits


def _saved() -> SavedMasks:
    masks = {"conv.weight": PATTERN.reshape(4, 16), "fc.weight": torch.ones(8, dtype=torch.bool)}
    return SavedMasks("pun-it", 0.5, 42, masks, ["search"], settings={"temperature": 0.2})


def _load(path):
    shapes = {"conv.weight": (4, 16), "fc.weight": (8,)}
    return load_masks_file(
        path, method="pun-it", density=0.5, seed=42, shapes=shapes, settings={"temperature": 0.2}
    )


def test_round_trip(tmp_path):
    path = save_masks_file(tmp_path / "masks.pt", _saved())
    got = _load(path)
    assert torch.equal(got.masks["conv.weight"], PATTERN.reshape(4, 16))
    assert (got.method, got.density, got.seed, got.phases) == ("pun-it", 0.5, 42, ["search"])


def test_a_flipped_byte_in_a_mask_is_refused(tmp_path):
    path = save_masks_file(tmp_path / "masks.pt", _saved())
    data = bytearray(path.read_bytes())
    at = bytes(data).find(PATTERN.numpy().tobytes())
    assert at > 0 and data[at + 1] == 0  # the stored mask bytes, one weight pruned
    data[at + 1] = 1  # one more weight kept
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        _load(path)
    message = str(err.value)
    assert message.startswith(f"masks file {path} is damaged") and "\n" not in message
    assert "delete it to search again" in message


def test_an_edited_value_is_refused(tmp_path):
    path = save_masks_file(tmp_path / "masks.pt", _saved())
    payload = torch.load(path, weights_only=True)
    payload["density"] = 0.25  # edited, the digest left as it was
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"is damaged \(its content does not match its sha256"):
        _load(path)


def test_files_without_digest_pass_only_with_their_schema(tmp_path):
    path = save_masks_file(tmp_path / "masks.pt", _saved())
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]  # a file of an earlier version
    torch.save(payload, path)
    assert torch.equal(_load(path).masks["conv.weight"], PATTERN.reshape(4, 16))
    payload["masks"]["fc.weight"] = torch.ones(8)  # float, not a mask
    torch.save(payload, path)
    with pytest.raises(ValueError, match="is damaged .*'fc.weight'.*delete it to search again"):
        _load(path)
    payload["masks"]["fc.weight"] = torch.ones(8, dtype=torch.bool)
    payload["seed"] = "42"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"damaged \('seed' must be int"):
        _load(path)


def test_full_disk_names_the_file_and_keeps_the_previous(tmp_path, monkeypatch):
    path = save_masks_file(tmp_path / "masks.pt", _saved())
    before = path.read_bytes()
    full_disk_after(monkeypatch, tmp_path, 500)
    with pytest.raises(OSError) as err:
        save_masks_file(path, _saved())
    assert one_line(err.value).startswith(f"{path}: no space left on device")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["masks.pt"]
