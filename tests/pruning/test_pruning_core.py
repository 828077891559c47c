"""Pruning core: selection, masks via torch.nn.utils.prune, top-k, Gumbel scores, baselines,
errors; the methods registry and the one source of the pruning defaults."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import math
import pkgutil
from pathlib import Path

import pytest
import torch
from fastmri.models import Unet
from torch import nn

from fastmri_pun.pruning import (
    apply_masks,
    dense_state_dict,
    density_report,
    get_masks,
    make_permanent,
)
from fastmri_pun.pruning.apply import masks_from_state_dict, validate_masks
from fastmri_pun.pruning.baselines import (
    imp_prune_step,
    imp_schedule,
    magnitude_masks,
    random_masks,
    snip_masks,
)
from fastmri_pun.pruning.config import DEFAULT_PRIOR_P, PruneConfig
from fastmri_pun.pruning.methods import (
    PruningMethod,
    get_pruning_method,
    list_pruning_methods,
    pruning_methods_table,
    register_pruning_method,
)
from fastmri_pun.pruning.pun import MaskedWeights
from fastmri_pun.pruning.scores import GumbelBernoulliMask
from fastmri_pun.pruning.select import select_parameters
from fastmri_pun.pruning.topk import topk_mask

pytestmark = pytest.mark.usefixtures("one_thread")


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.up(torch.relu(self.norm(self.conv(x))))
        return self.head(x.mean((2, 3)))


def _unet(seed: int = 0) -> Unet:
    torch.manual_seed(seed)
    return Unet(1, 1, chans=8, num_pool_layers=2)


def test_default_selection_conv_linear_weights_only():
    model = Small()
    assert select_parameters(model) == ["conv.weight", "up.weight", "head.weight"]
    assert select_parameters(model, include=["*.bias"]) == [
        "conv.bias",
        "norm.bias",
        "up.bias",
        "head.bias",
    ]
    assert select_parameters(model, exclude=["head.*"]) == ["conv.weight", "up.weight"]
    model.up.weight.requires_grad_(False)
    assert select_parameters(model, trainable_only=True) == ["conv.weight", "head.weight"]
    # same names once the model is pruned (weight -> weight_orig)
    pruned = apply_masks(Small(), {"conv.weight": torch.ones(8, 2, 3, 3, dtype=torch.bool)})
    assert select_parameters(pruned) == ["conv.weight", "up.weight", "head.weight"]


def test_selection_errors_name_the_problem():
    with pytest.raises(ValueError, match="'nothing.*' matches no parameter"):
        select_parameters(Small(), include=["nothing.*"])
    with pytest.raises(ValueError, match="matches no parameter of Small"):
        select_parameters(Small(), exclude=["*"])
    tied = Small()
    tied.other = nn.Linear(8, 3)
    tied.other.weight = tied.head.weight
    with pytest.raises(ValueError, match="shared with"):
        select_parameters(tied, include=["*.weight"])


def test_topk_exact_count_global_ranking_and_layer_guard():
    scores = {"a": torch.arange(100.0).reshape(10, 10), "b": -torch.arange(50.0)}
    masks = topk_mask(scores, 0.1)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * 150) == 15
    # layer "b" would get nothing from the global ranking; the guard keeps its best weight
    assert int(masks["b"].sum()) == 1 and bool(masks["b"][0])
    assert masks["a"].flatten()[-14:].all() and int(masks["a"].sum()) == 14
    assert masks["a"].dtype == torch.bool and masks["a"].shape == (10, 10)
    # without the guard, plain global top-k
    plain = topk_mask(scores, 0.1, min_per_layer=0)
    assert int(plain["b"].sum()) == 0 and int(plain["a"].sum()) == 15
    # deterministic tie-breaking
    ties = {"a": torch.zeros(64), "b": torch.zeros(64)}
    assert all(torch.equal(topk_mask(ties, 0.25)[k], topk_mask(ties, 0.25)[k]) for k in ties)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_bad_density_raises(density):
    with pytest.raises(ValueError, match="density must be in"):
        topk_mask({"a": torch.rand(10)}, density)
    with pytest.raises(ValueError, match="density must be in"):
        random_masks(Small(), density)


def test_density_too_small_for_guard_and_nan_scores():
    with pytest.raises(ValueError, match="fewer than 1 per layer"):
        topk_mask({"a": torch.rand(100), "b": torch.rand(100)}, 0.004)
    with pytest.raises(ValueError, match="'a' contain NaN"):
        topk_mask({"a": torch.tensor([1.0, float("nan")])}, 0.5)


def test_mask_validation_errors():
    model = Small()
    good = {"conv.weight": torch.ones(8, 2, 3, 3, dtype=torch.bool)}
    validate_masks(model, good)
    with pytest.raises(ValueError, match="'conv.wieght' names no parameter"):
        apply_masks(model, {"conv.wieght": torch.ones(8, 2, 3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"'conv.weight' has shape \(8, 2, 3\)"):
        apply_masks(model, {"conv.weight": torch.ones(8, 2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="'conv.weight' must be a torch.bool tensor"):
        apply_masks(model, {"conv.weight": torch.ones(8, 2, 3, 3)})
    with pytest.raises(ValueError, match="non-empty dict"):
        apply_masks(model, {})
    with pytest.raises(ValueError, match="masks miss parameter 'up.weight'"):
        validate_masks(model, good, names=["conv.weight", "up.weight"])
    apply_masks(model, good)
    with pytest.raises(ValueError, match="'conv.weight' is already pruned"):
        apply_masks(model, good)


def test_pruned_weights_stay_exactly_zero_while_training():
    torch.manual_seed(0)
    model = Small()
    masks = magnitude_masks(model, 0.2)
    n_total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.2 * n_total)
    apply_masks(model, masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-1, weight_decay=1e-2)
    x, y = torch.randn(4, 2, 6, 6), torch.randn(4, 3)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    for name, mask in masks.items():
        module = model.get_submodule(name.rpartition(".")[0])
        assert torch.count_nonzero(module.weight_orig.grad[~mask]) == 0
        assert torch.count_nonzero(module.weight[~mask]) == 0
        assert torch.count_nonzero(module.weight[mask]) == int(mask.sum())
    report = density_report(model)
    assert report["kept"] == round(0.2 * n_total) and report["total"] == n_total
    assert set(report["layers"]) == set(masks)
    assert all(torch.equal(get_masks(model)[k], masks[k]) for k in masks)
    # baked: plain parameters, zeros where pruned, no hooks left, original parameter order
    make_permanent(model)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in Small().named_parameters()]
    assert get_masks(model) == {}
    assert "conv.weight" in dict(model.named_parameters())
    assert torch.count_nonzero(model.conv.weight[~masks["conv.weight"]]) == 0
    assert density_report(model)["kept"] == round(0.2 * n_total)


def test_pruned_model_can_be_deep_copied_and_averaged():
    """prune's hook leaves a non-leaf weight that copy.deepcopy refuses; ours stay copyable
    (EMA/SWA through AveragedModel) and train exactly as torch's plain pruning does."""
    import copy

    from torch.nn.utils import prune
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    ours, plain = Small(), Small()
    plain.load_state_dict(ours.state_dict())
    masks = magnitude_masks(ours, 0.3)
    apply_masks(ours, masks)
    for name, mask in masks.items():
        module_name, _, attr = name.rpartition(".")
        prune.custom_from_mask(plain.get_submodule(module_name), attr, mask)
    x, y = torch.randn(4, 2, 6, 6), torch.randn(4, 3)
    for model in (ours, plain):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    assert torch.equal(ours(x), plain(x))  # identical training, the hook changes nothing
    with pytest.raises(RuntimeError):
        copy.deepcopy(plain)  # the fault being guarded against
    twin = copy.deepcopy(ours)
    assert torch.equal(twin(x), ours(x))
    assert torch.equal(get_masks(twin)["conv.weight"], masks["conv.weight"])
    swa = AveragedModel(ours)
    swa.update_parameters(ours)
    assert torch.equal(swa(x), ours(x))


def test_masks_survive_save_load_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = Small()
    masks = random_masks(model, 0.3, seed=3)
    torch.save(masks, tmp_path / "masks.pt")
    loaded = torch.load(tmp_path / "masks.pt", weights_only=True)
    assert loaded.keys() == masks.keys()
    assert all(torch.equal(loaded[k], masks[k]) and loaded[k].dtype == torch.bool for k in masks)
    # through the pruned model's state dict
    apply_masks(model, masks)
    torch.save(model.state_dict(), tmp_path / "pruned.pt")
    state = torch.load(tmp_path / "pruned.pt", weights_only=True)
    from_state = masks_from_state_dict(state)
    assert all(torch.equal(from_state[k], masks[k]) for k in masks)
    fresh = apply_masks(Small(), from_state)
    fresh.load_state_dict(state)
    assert all(torch.equal(get_masks(fresh)[k], masks[k]) for k in masks)
    x = torch.randn(2, 2, 6, 6)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    plain = Small().eval()
    plain.load_state_dict(dense_state_dict(state))
    assert torch.equal(plain(x), model(x))


def test_gumbel_relaxation_gradients_and_kl():
    scores = GumbelBernoulliMask({"w": (200,)}, temperature=0.2)
    assert torch.allclose(scores.probabilities()["w"], torch.full((200,), 0.5))
    gen = torch.Generator().manual_seed(0)
    sample = scores.sample(generator=gen)["w"]
    assert 0 <= float(sample.detach().min()) and float(sample.detach().max()) <= 1
    # low temperature: the relaxed sample is close to {0, 1}
    assert float(((sample - 0.5).abs() > 0.4).float().mean()) > 0.7
    weights = torch.randn(200)
    (sample * weights).sum().backward()
    grad = scores.logits[0].grad
    # every logit gets a gradient except where sigmoid((s + L) / 0.2) saturates in float32
    assert torch.count_nonzero(grad) >= 190 and torch.isfinite(grad).all()
    # straight-through hard sample: values in {0, 1}, gradient of the relaxed sample
    scores.zero_grad()
    hard = scores.sample(hard=True, generator=gen)["w"]
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    (hard * weights).sum().backward()
    assert torch.count_nonzero(scores.logits[0].grad) > 0
    # KL(Bern(0.5) || Bern(p0)) summed over 200 weights, against the closed form
    p0 = DEFAULT_PRIOR_P
    expected = 200 * (0.5 * math.log(0.5 / p0) + 0.5 * math.log(0.5 / (1 - p0)))
    assert scores.kl().item() == pytest.approx(expected, rel=1e-5)
    assert scores.kl("mean").item() == pytest.approx(expected / 200, rel=1e-5)
    # minimising the KL alone lowers the mean keep-probability towards p0
    opt = torch.optim.Adam(scores.parameters(), lr=1e-1)
    for _ in range(50):
        opt.zero_grad()
        scores.kl().backward()
        opt.step()
    assert scores.stats()["mean_p"] < 0.1
    with pytest.raises(ValueError, match="temperature"):
        GumbelBernoulliMask({"w": (2,)}, temperature=0)
    with pytest.raises(ValueError, match="prior_p"):
        GumbelBernoulliMask({"w": (2,)}, prior_p=1.0)


def test_masked_weights_leaves_model_unchanged():
    model = Small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    with MaskedWeights(model, select_parameters(model)) as masked:
        assert not any(p.requires_grad for p in model.parameters())
        masked.set({"conv.weight": torch.zeros(())})
        assert torch.count_nonzero(model.conv.weight) == 0
        model(torch.randn(4, 2, 6, 6))  # updates BatchNorm running statistics
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert list(before) == list(model.state_dict())
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(model.conv) is nn.Conv2d
    apply_masks(model, {"conv.weight": torch.ones(8, 2, 3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="already pruned"):
        MaskedWeights(model, ["up.weight"])


def _denoise_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(4, 1, 16, 16, generator=g).cumsum(-1).cumsum(-2) / 16
    return clean + 0.1 * torch.randn(clean.shape, generator=g), clean


def _mse(model, batch):
    noisy, clean = batch
    return nn.functional.mse_loss(model(noisy), clean)


def test_baselines_magnitude_random_snip():
    model = _unet()
    names = select_parameters(model)
    n_total = sum(dict(model.named_parameters())[n].numel() for n in names)
    k = round(0.05 * n_total)
    mag = magnitude_masks(model, 0.05)
    rnd = random_masks(model, 0.05, seed=0)
    snip = snip_masks(model, 0.05, [_denoise_batch()], _mse)
    for masks in (mag, rnd, snip):
        assert sum(int(m.sum()) for m in masks.values()) == k
        assert all(int(m.sum()) >= 1 for m in masks.values())
    # magnitude keeps the largest |w| overall: every kept |w| >= every pruned |w| (guard aside)
    weights = dict(model.named_parameters())
    kept = torch.cat([weights[n].detach().abs()[m] for n, m in mag.items()])
    pruned = torch.cat([weights[n].detach().abs()[~m] for n, m in mag.items()])
    assert (kept >= pruned.max()).float().mean() > 0.99
    # random: per-layer densities near the global one for big layers, reproducible per seed
    big = max(names, key=lambda n: weights[n].numel())
    assert abs(rnd[big].float().mean().item() - 0.05) < 0.01
    assert all(torch.equal(rnd[n], random_masks(model, 0.05, seed=0)[n]) for n in names)
    assert not all(torch.equal(rnd[n], random_masks(model, 0.05, seed=1)[n]) for n in names)
    # SNIP differs from magnitude and leaves the model's gradients alone
    assert any(not torch.equal(snip[n], mag[n]) for n in names)
    assert all(p.grad is None for p in model.parameters())


def test_imp_schedule_and_prune_step():
    assert imp_schedule(0.03, rate=0.5) == pytest.approx([0.5, 0.25, 0.125, 0.0625, 0.03])
    sched = imp_schedule(0.03, rounds=3)
    assert len(sched) == 3 and sched[-1] == 0.03
    assert sched[0] == pytest.approx(0.03 ** (1 / 3))
    with pytest.raises(ValueError, match="imp rate"):
        imp_schedule(0.1, rate=1.0)
    model = _unet()
    first = imp_prune_step(model, 0.5)
    # the second round keeps a subset of the first, of the scheduled size
    apply_masks(model, first)
    with torch.no_grad():  # perturb the kept weights as training would
        for name in first:
            module = model.get_submodule(name.rpartition(".")[0])
            module.weight_orig.mul_(torch.rand_like(module.weight_orig))
    second = imp_prune_step(model, 0.25, first)
    n_total = sum(m.numel() for m in first.values())
    assert sum(int(m.sum()) for m in second.values()) == round(0.25 * n_total)
    assert all(not (second[n] & ~first[n]).any() for n in first)


# ----------------------------------------------------------------------------- methods registry
def test_registry_lists_the_eight_methods_with_their_docs_table():
    assert list_pruning_methods() == [
        "pun-it",
        "pun-at",
        "pun-it-channels",
        "magnitude",
        "magnitude-at",
        "random",
        "snip",
        "imp",
    ]
    assert pruning_methods_table() == [
        "| method | mask from | final training starts from |",
        "|---|---|---|",
        "| `pun-it` | PUN search on the frozen initial weights w₀ | w₀ (kept weights only) |",
        "| `pun-at` | dense training, then PUN search on the trained weights | trained weights "
        "(fine-tune) |",
        "| `pun-it-channels` | PUN search of one logit per output channel on the frozen w₀ | "
        "w₀ (kept channels only) |",
        "| `magnitude` | global \\|w\\| at init | w₀ |",
        "| `magnitude-at` | global \\|w\\| after dense training | trained weights |",
        "| `random` | uniform random mask | w₀ |",
        "| `snip` | \\|g ⊙ w\\| at init on one batch | w₀ |",
        "| `imp` | iterative magnitude pruning with rewinding to w₀ | w₀ |",
    ]
    needs = {m: get_pruning_method(m).required_arguments for m in list_pruning_methods()}
    search = ("search_step", "loss_fn", "batches")
    assert needs == {
        "pun-it": search,
        "pun-at": ("train_step", *search),
        "pun-it-channels": search,
        "magnitude": (),
        "magnitude-at": ("train_step",),
        "random": (),
        "snip": ("loss_fn", "batches"),
        "imp": ("train_step",),
    }


def test_registry_errors_name_the_valid_methods():
    valid = "pun-it, pun-at, pun-it-channels, magnitude, magnitude-at, random, snip, imp"
    with pytest.raises(
        ValueError, match=f"unknown pruning method 'lottery'; choose one of {valid}"
    ):
        get_pruning_method("lottery")
    random_procedure = get_pruning_method("random").procedure
    with pytest.raises(ValueError, match="reserved for dense training"):
        register_pruning_method(PruningMethod("none", "dense", "-", "-", random_procedure))
    with pytest.raises(ValueError, match="'lottery': procedure must be a callable of a Pruning"):
        register_pruning_method(PruningMethod("lottery", "-", "-", "-", procedure="random"))
    other = dataclasses.replace(get_pruning_method("random"), description="another random")
    with pytest.raises(ValueError, match="'random' is already registered"):
        register_pruning_method(other)
    assert register_pruning_method(get_pruning_method("random")) is get_pruning_method("random")
    assert list_pruning_methods()[-1] == "imp"


# ----------------------------------------------------------------------------- one source of defaults
#: parameter names that mean a PruneConfig field under another name
_ALIASES = {
    "lr": "search_lr",
    "steps": "search_steps",
    "rate": "imp_rate",
    "rounds": "imp_rounds",
    "reduction": "kl_reduction",
}
#: (callable, parameter) whose default differs from PruneConfig's on purpose:
#: select_parameters is the generic helper; the workflow passes cfg.trainable_only
_EXEMPT = {("select_parameters", "trainable_only")}
_DEFAULT_MODULES = ("fastmri_pun.training.mask_search", "fastmri_pun.app.train.pruning_phase")


def _defined_callables(module):
    """Functions and classes defined in ``module``, and the methods of those classes."""
    for obj in vars(module).values():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield obj.__qualname__, obj
        elif inspect.isclass(obj) and not dataclasses.is_dataclass(obj):
            for attr in vars(obj).values():
                if inspect.isfunction(attr):
                    yield attr.__qualname__, attr


def _default_mismatches(callables) -> tuple[list[str], int]:
    """``(mismatches, checked)``: parameters named like a PruneConfig field whose default is not
    the field's default, and the number of parameters compared. ``None`` means "not given, use
    the configured value" (``find_masks(density=None)``) and is not compared."""
    fields = {f.name: f.default for f in dataclasses.fields(PruneConfig)}
    bad, checked = [], 0
    for qualname, fn in callables:
        for param in inspect.signature(fn).parameters.values():
            field = _ALIASES.get(param.name, param.name)
            if field not in fields or param.default in (inspect.Parameter.empty, None):
                continue
            if (qualname.rpartition(".")[2], param.name) in _EXEMPT:
                continue
            checked += 1
            if param.default != fields[field] or type(param.default) is not type(fields[field]):
                bad.append(f"{fn.__module__}.{qualname}({param.name}={param.default!r})")
    return bad, checked


def _pruning_callables():
    import fastmri_pun.pruning as pruning

    names = [f"fastmri_pun.pruning.{m.name}" for m in pkgutil.iter_modules(pruning.__path__)]
    for name in [*names, *_DEFAULT_MODULES]:
        yield from _defined_callables(importlib.import_module(name))


def test_no_function_default_disagrees_with_prune_config():
    bad, checked = _default_mismatches(_pruning_callables())
    assert bad == []
    assert checked >= 25  # search_masks, GumbelBernoulliMask, MaskSearchModule, baselines, ...

    # the checker catches a re-typed default
    def search(temperature=0.25, lr=1e-2, min_per_layer=1, seed=0):
        pass

    def schedule(rate=0.2):
        pass

    bad, checked = _default_mismatches([("search", search), ("schedule", schedule)])
    assert checked == 5
    assert [b.removeprefix(f"{__name__}.") for b in bad] == [
        "search(temperature=0.25)",
        "schedule(rate=0.2)",
    ]


def _literal_defaults(source: str, filename: str) -> list[str]:
    """Parameters named like a PruneConfig field whose default is typed as a literal (``0.2``)
    in ``source`` instead of naming the constant of ``fastmri_pun.pruning.config``."""
    fields = {f.name for f in dataclasses.fields(PruneConfig)}
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        pairs += [
            (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
        ]
        for arg, default in pairs:
            if _ALIASES.get(arg.arg, arg.arg) not in fields or (node.name, arg.arg) in _EXEMPT:
                continue
            if isinstance(default, ast.Constant) and default.value is not None:
                bad.append(f"{filename}:{default.lineno} {node.name}({arg.arg}={default.value!r})")
    return bad


def test_pruning_defaults_are_never_retyped():
    import fastmri_pun.pruning as pruning

    root = Path(pruning.__file__).parents[1]
    files = [p for p in Path(pruning.__file__).parent.glob("*.py") if p.name != "config.py"]
    files += [root / "training" / "mask_search.py", root / "app" / "train" / "pruning_phase.py"]
    bad = [b for f in files for b in _literal_defaults(f.read_text(), f.name)]
    assert bad == []
    # the checker catches a re-typed default
    source = "def f(x, temperature=0.2, *, lr=DEFAULT_SEARCH_LR, seed=0, density=None): pass"
    assert _literal_defaults(source, "m.py") == ["m.py:1 f(temperature=0.2)", "m.py:1 f(seed=0)"]
