"""An accelerator simulator: finds the device bugs a GPU user would hit, on a machine without one.

A :class:`DeviceTensor` holds real CPU data but reports another device (``meta``), so every
computation gives the numbers the CPU gives, while :class:`AcceleratorSimulator`, a
``TorchDispatchMode``, enforces CUDA's rules on every aten call:

- an op may not mix a device tensor with a CPU tensor of one or more dimensions (CUDA allows
  0-dim CPU tensors as scalars), except copies (``.to``, ``copy_``) and the index tensors of
  advanced indexing — "Expected all tensors to be on the same device", as on CUDA;
- ``.numpy()`` of a device tensor fails (torch refuses a non-CPU tensor itself);
- every host synchronisation is counted: ``.item()``/``bool()``/``int()`` (aten's
  ``_local_scalar_dense``), device → host copies (``.cpu()``), and ops whose output size depends
  on the data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``, ``equal``).

Factory calls with ``device=<simulated device>`` make device tensors, ``.to(device)`` moves to it,
and :class:`SimulatedGPUAccelerator` plugs it into Lightning as an accelerator (registered as
``"simulated_gpu"``), so ``Trainer(accelerator="simulated_gpu")`` and the package's
``--accelerator simulated_gpu`` run the code path of a one-GPU training.

Why ``meta`` as the reported device: it is a non-CPU device that needs no driver, the autograd
engine runs its backward on the calling thread, and ``.numpy()`` refuses it. ``meta`` alone would
not do: on torch 2.14 ``conv2d`` of a CPU input with a ``meta`` weight returns garbage instead of
raising, which is why the rules are enforced here and the data kept real. Autocast has no
``meta`` device type, so mixed precision is checked on the CPU, not here. Pickling a device
tensor (``torch.save``) stores its CPU data, as a GPU checkpoint loaded with
``map_location="cpu"`` gives.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from pytorch_lightning.accelerators import Accelerator, AcceleratorRegistry
from pytorch_lightning.strategies import SingleDeviceStrategy, StrategyRegistry
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

#: The device that simulated device tensors report.
SIM_DEVICE = torch.device("meta")

aten = torch.ops.aten

#: Ops that may take a CPU and a device tensor together (copies between devices).
_COPY_OPS = {aten._to_copy.default, aten.copy_.default, aten.lift_fresh.default}
#: Ops whose later arguments (indices) may be CPU tensors (CUDA accepts CPU index tensors).
_INDEX_OPS = {
    aten.index.Tensor,
    aten.index_put_.default,
    aten.index_put.default,
    aten._index_put_impl_.default,
}
#: Ops that make the host wait for the device: their result (or its size) is read on the host.
_SYNC_OPS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}


class DeviceMixError(RuntimeError):
    """An op mixed a simulated device tensor with a non-scalar CPU tensor (CUDA raises here)."""


class DeviceTensor(torch.Tensor):
    """A tensor whose data live on the CPU (``.elem``) but whose device is :data:`SIM_DEVICE`."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> DeviceTensor:
        assert type(elem) is torch.Tensor and elem.device.type == "cpu", (type(elem), elem.device)
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.size(),
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            layout=elem.layout,
            device=SIM_DEVICE,
            requires_grad=elem.requires_grad,
        )
        out.elem = elem
        # the lazy conjugate and negative bits are metadata of the tensor, not of its data
        if elem.is_conj():
            torch._C._set_conj(out, True)
        if elem.is_neg():
            torch._C._set_neg(out, True)
        return out

    def __repr__(self) -> str:  # noqa: D105
        return f"DeviceTensor({self.elem!r})"

    def __reduce_ex__(self, protocol: int) -> Any:
        # torch.save of a device tensor stores its data, as a GPU checkpoint read onto the CPU.
        return self.elem.detach().clone().__reduce_ex__(protocol)

    def tolist(self) -> Any:  # noqa: D102
        # torch refuses tolist() of a subclass; on CUDA it is a device-to-host copy
        mode = torch.utils._python_dispatch._get_current_dispatch_mode()
        if isinstance(mode, AcceleratorSimulator):
            mode._sync("tolist", "device-to-host copy")
        return self.elem.tolist()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: D105
        # Reached only when no simulator is active (e.g. a tensor kept past the simulation).
        return _run(None, func, args, kwargs or {})


def _is_device(t: Any) -> bool:
    return isinstance(t, DeviceTensor)


def _is_cpu_tensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and not isinstance(t, DeviceTensor)


def _unwrap(x: Any) -> Any:
    return x.elem if isinstance(x, DeviceTensor) else x


def _wrap(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and not isinstance(x, DeviceTensor):
        return DeviceTensor(x)
    return x


def _is_sim_device(device: Any) -> bool:
    return device is not None and torch.device(device).type == SIM_DEVICE.type


def _run(sim: AcceleratorSimulator | None, func, args, kwargs):
    """Apply CUDA's rules to ``func(*args, **kwargs)``, run it on the CPU data, wrap the result."""
    flat, _ = tree_flatten((args, kwargs))
    on_device = any(_is_device(t) for t in flat)
    # the target device of a factory or a copy, given as a keyword or (aten.to) positionally
    target = kwargs.get("device")
    if target is None and func.overloadpacket is aten.to:
        target = next((a for a in args[1:] if isinstance(a, torch.device)), None)
    to_device = _is_sim_device(target)
    if to_device:
        cpu = torch.device("cpu")
        kwargs = dict(kwargs, device=cpu) if "device" in kwargs else kwargs
        args = tuple(cpu if isinstance(a, torch.device) else a for a in args)

    if func in _COPY_OPS or func.overloadpacket is aten.to:
        if func is aten.copy_.default:
            dst, src = args[0], args[1]
            if _is_device(src) and not _is_device(dst) and sim is not None:
                sim._sync(func, "device-to-host copy")
            func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
            return dst
        src = args[0]
        target_is_device = to_device if target is not None else _is_device(src)
        if _is_device(src) and not target_is_device and sim is not None:
            sim._sync(func, "device-to-host copy")
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if func.overloadpacket is aten.to and out is _unwrap(src) and target_is_device:
            return src if _is_device(src) else DeviceTensor(out)
        return DeviceTensor(out) if target_is_device else out

    if on_device:
        checked = flat
        if func in _INDEX_OPS:
            # self and values must be on the device; the indices may be CPU tensors
            checked = [args[0]] + ([args[2]] if len(args) > 2 else [])
        cpu = [t for t in checked if _is_cpu_tensor(t) and t.dim() > 0]
        if cpu:
            raise DeviceMixError(
                f"Expected all tensors to be on the same device, but found at least two "
                f"devices, {SIM_DEVICE} (simulated GPU) and cpu! ({func}: CPU tensor of shape "
                f"{tuple(cpu[0].shape)})"
            )
        if sim is not None:
            if func in _SYNC_OPS:
                sim._sync(func, "data-dependent result")
            elif func is aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
            ):
                sim._sync(func, "boolean-mask indexing")
            elif func in (aten.index_put_.default, aten._index_put_impl_.default) and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
            ):
                sim._sync(func, "boolean-mask assignment")

    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func is aten._local_scalar_dense.default:
        return out
    if on_device or to_device:
        return _returns(func, args, kwargs, tree_map(_wrap, out))
    return out


def _returns(func, args, kwargs, wrapped):
    """The results of ``func`` as the caller must see them: an in-place or ``out=`` op returns
    the tensor it wrote (the same Python object), any other op its new (wrapped) results. Views
    share the CPU data of their base through ``.elem``, so no storage bookkeeping is needed."""
    schema = func._schema
    results = []
    for ret in schema.returns:
        info = ret.alias_info
        written = None
        if info is not None and info.is_write:
            for j, arg in enumerate(schema.arguments):
                a_info = arg.alias_info
                if a_info is not None and a_info.is_write and a_info.before_set & info.before_set:
                    written = kwargs[arg.name] if arg.kwarg_only or j >= len(args) else args[j]
                    break
        results.append(written)
    if len(schema.returns) == 1:
        return results[0] if results[0] is not None else wrapped
    return tuple(r if r is not None else w for r, w in zip(results, wrapped, strict=True))


class AcceleratorSimulator(TorchDispatchMode):
    """Enforce CUDA's device rules on every op and count host synchronisations.

    Attributes:
        syncs: number of host synchronisations since the start (or :meth:`reset`).
        sync_ops: ``Counter`` of ``"op (reason)"`` → count.
        sync_sites: ``Counter`` of ``"file:line in function"`` (the package's innermost frame)
            → count, to find where a sync comes from.
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0
        self.sync_ops: Counter[str] = Counter()
        self.sync_sites: Counter[str] = Counter()

    def reset(self) -> None:
        """Zero the sync counters."""
        self.syncs = 0
        self.sync_ops.clear()
        self.sync_sites.clear()

    def _sync(self, func, reason: str) -> None:
        self.syncs += 1
        self.sync_ops[f"{func} ({reason})"] += 1
        site = "?"
        for frame in reversed(traceback.extract_stack()[:-3]):
            name = frame.filename.replace("\\", "/")
            if name.endswith("device_simulator.py") or "/torch/" in name:
                continue
            site = f"{'/'.join(name.rsplit('/', 2)[-2:])}:{frame.lineno} in {frame.name}"
            break
        self.sync_sites[site] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        return _run(self, func, args, kwargs or {})


def to_device(x: Any) -> Any:
    """Move tensors (in nested containers) to the simulated device (inside a simulator)."""
    return tree_map(lambda t: t.to(SIM_DEVICE) if isinstance(t, torch.Tensor) else t, x)


@contextlib.contextmanager
def simulated_gpu() -> Iterator[AcceleratorSimulator]:
    """Run the block under an :class:`AcceleratorSimulator` with the Lightning accelerator
    ``"simulated_gpu"`` registered; yields the simulator (its sync counters)."""
    register_lightning_accelerator()
    sim = AcceleratorSimulator()
    # torch.tensor/as_tensor of Python or numpy data move it to the device below the dispatcher,
    # out of the simulator's sight (the data would be lost on meta): they go through the CPU.
    originals = {name: getattr(torch, name) for name in ("tensor", "as_tensor")}

    def _through_cpu(original):
        def create(data: Any, *args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
            if _is_sim_device(device) and not isinstance(data, torch.Tensor):
                return original(data, *args, **kwargs).to(SIM_DEVICE)
            return original(data, *args, device=device, **kwargs)

        return create

    try:
        for name, original in originals.items():
            setattr(torch, name, _through_cpu(original))
        with sim, warnings.catch_warnings():
            # load_state_dict into device tensors reporting "meta": torch warns that the copy
            # is a no-op, which it is not here (the copy reaches the real data)
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
            yield sim
    finally:
        for name, original in originals.items():
            setattr(torch, name, original)


#: Command-line flags that train on the simulated GPU (Lightning picks a CPU strategy for an
#: accelerator it does not know, so the one-device strategy is named too).
GPU_FLAGS = ["--accelerator", "simulated_gpu", "--devices", "1", "--strategy", "simulated_gpu"]


def register_lightning_accelerator() -> None:
    """Register :class:`SimulatedGPUAccelerator` (``accelerator="simulated_gpu"``) and its
    one-device strategy (``strategy="simulated_gpu"``) in Lightning (once)."""
    if "simulated_gpu" not in AcceleratorRegistry:
        AcceleratorRegistry.register(
            "simulated_gpu",
            SimulatedGPUAccelerator,
            description="one simulated GPU (CPU data, device rules enforced)",
        )
    if "simulated_gpu" not in StrategyRegistry:
        StrategyRegistry.register(
            "simulated_gpu",
            SingleDeviceStrategy,
            description="one simulated GPU",
            device=SIM_DEVICE,
        )


class SimulatedGPUAccelerator(Accelerator):
    """Lightning accelerator for the simulated device: one device, no driver calls."""

    def setup_device(self, device: torch.device) -> None:
        if device.type != SIM_DEVICE.type:
            raise ValueError(f"the simulated GPU is {SIM_DEVICE}, got {device}")

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        return None

    @staticmethod
    def parse_devices(devices: Any) -> int:
        return 1 if devices in ("auto", -1, None) else int(devices)

    @staticmethod
    def get_parallel_devices(devices: Any) -> list[torch.device]:
        return [SIM_DEVICE] * int(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return True

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        return None

    @classmethod
    def name(cls) -> str:
        return "simulated_gpu"
