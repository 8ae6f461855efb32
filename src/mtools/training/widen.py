"""A wider Onsets and Frames network that starts as a trained narrower one
(`mtools train onsets_frames --config wide --init-from onsets_frames`).

Function-preserving widening (Chen, Goodfellow and Shlens, "Net2Net",
ICLR 2016): every unit of a wider layer is a copy of a unit of the
narrow one (new unit j copies old unit j mod old width), and each layer
that reads a widened layer divides the weight it gives a copy by the
number of copies of that unit, so the sum it computes is unchanged. It
holds through ReLU, max-pooling, batch norm (per channel) and LSTMs (a
copied hidden unit has the same gates as its original at every step). A
copy then gets the same gradient as its original for ever, unless
something tells them apart: dropout does between the convolutions and
after the acoustic layer, and a little noise on each copy's incoming
weights does in the LSTMs; the noise moves the function slightly, and the
run's validation before its first step shows how much.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtools.errors import MtoolsError
from mtools.training.nets import OnsetsFramesNet

NOISE = 0.01  # a copy's incoming weights move by this fraction of their tensor's spread


def copies_of(old: int, new: int) -> np.ndarray:
    """For each of `new` units, the old unit it copies (round robin)."""
    if new < old:
        raise MtoolsError(f"a layer of {old} units cannot be narrowed to {new} by widening")
    return np.arange(new) % old


def _split(tensor: torch.Tensor, axis: int, index: np.ndarray, old: int) -> torch.Tensor:
    """Columns along `axis` taken by `index`, each divided by how many
    times its old unit is copied: the reader of a widened layer."""
    counts = np.bincount(index, minlength=old).astype(np.float32)
    taken = tensor.index_select(axis, torch.from_numpy(index))
    shape = [1] * tensor.dim()
    shape[axis] = len(index)
    return taken / torch.from_numpy(counts[index]).reshape(shape)


def _rows(tensor: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    return tensor.index_select(0, torch.from_numpy(index))


def _gate_rows(tensor: torch.Tensor, index: np.ndarray, old: int) -> torch.Tensor:
    """An LSTM tensor of four gate blocks of `old` rows, each block widened."""
    return torch.cat([_rows(block, index) for block in tensor.split(old)])


def _noisy_copies(tensor: torch.Tensor, index: np.ndarray, generator: torch.Generator,
                  blocks: int = 1) -> torch.Tensor:
    """`tensor`, whose rows are `blocks` blocks widened by `index`, with a
    little noise on the rows of the copies that are not the first of
    their unit."""
    later = np.tile(np.arange(len(index)) >= len(np.unique(index)), blocks)
    if not later.any():
        return tensor
    noise = torch.randn(tensor.shape, generator=generator) * NOISE * tensor.std()
    mask = torch.from_numpy(later.astype(np.float32)).reshape(-1, *[1] * (tensor.dim() - 1))
    return tensor + noise * mask


@torch.no_grad()
def widen_onsets_frames(wide: OnsetsFramesNet, narrow: OnsetsFramesNet, seed: int = 0) -> dict:
    """Load into `wide` the weights of `narrow` widened as the module doc
    says (the order of `warm_start.take_matching`); returns what a card
    says of it. MtoolsError when `wide` is narrower anywhere or a
    different shape of network (mel bins, keys)."""
    a, b = narrow.config, wide.config
    for key in ("mel_bins", "keys"):
        if a[key] != b[key]:
            raise MtoolsError(f"the --init-from network has {a[key]} {key.replace('_', ' ')}, "
                              f"this one {b[key]}")
    generator = torch.Generator().manual_seed(seed)
    (c0, c1), (w0, w1) = a["channels"], b["channels"]
    g0, g1 = copies_of(c0, w0), copies_of(c1, w1)
    ga, gh = copies_of(a["acoustic"], b["acoustic"]), copies_of(a["lstm"], b["lstm"])
    old = narrow.state_dict()
    new: dict[str, torch.Tensor] = {}

    def conv(name: str, out_index: np.ndarray, in_index: np.ndarray | None, in_old: int) -> None:
        weight = old[f"{name}.weight"]
        if in_index is not None:
            weight = _split(weight, 1, in_index, in_old)
        new[f"{name}.weight"] = _rows(weight, out_index)
        new[f"{name}.bias"] = _rows(old[f"{name}.bias"], out_index)

    def norm(name: str, index: np.ndarray) -> None:
        for key in ("weight", "bias", "running_mean", "running_var"):
            new[f"{name}.{key}"] = _rows(old[f"{name}.{key}"], index)
        new[f"{name}.num_batches_tracked"] = old[f"{name}.num_batches_tracked"]

    conv("convs.0", g0, None, 1)
    norm("convs.1", g0)
    conv("convs.3", g0, g0, c0)
    norm("convs.4", g0)
    conv("convs.8", g1, g0, c0)
    norm("convs.9", g1)
    bins = a["mel_bins"] // 4  # the acoustic layer reads (channel, bin) flattened channel-major
    feature = (g1[:, None] * bins + np.arange(bins)).reshape(-1)
    weight = _split(old["acoustic.0.weight"], 1, feature, c1 * bins)
    weight = _rows(weight, ga)
    new["acoustic.0.weight"] = _noisy_copies(weight, ga, generator)
    new["acoustic.0.bias"] = _rows(old["acoustic.0.bias"], ga)
    for head in ("offset_head", "velocity_head", "frame_in"):
        new[f"{head}.weight"] = _split(old[f"{head}.weight"], 1, ga, a["acoustic"])
        new[f"{head}.bias"] = old[f"{head}.bias"]
    hidden = a["lstm"]
    for rnn, reads_acoustic in (("onset_rnn", True), ("frame_rnn", False)):
        for suffix in ("_l0", "_l0_reverse"):
            w_ih = old[f"{rnn}.weight_ih{suffix}"]
            if reads_acoustic:
                w_ih = _split(w_ih, 1, ga, a["acoustic"])
            w_hh = _split(old[f"{rnn}.weight_hh{suffix}"], 1, gh, hidden)
            new[f"{rnn}.weight_ih{suffix}"] = _noisy_copies(
                _gate_rows(w_ih, gh, hidden), gh, generator, blocks=4)
            new[f"{rnn}.weight_hh{suffix}"] = _noisy_copies(
                _gate_rows(w_hh, gh, hidden), gh, generator, blocks=4)
            for bias in ("bias_ih", "bias_hh"):
                new[f"{rnn}.{bias}{suffix}"] = _gate_rows(old[f"{rnn}.{bias}{suffix}"], gh, hidden)
    both = np.concatenate([gh, gh + hidden])  # forward units, then backward ones
    for head in ("onset_head", "frame_head"):
        new[f"{head}.weight"] = _split(old[f"{head}.weight"], 1, both, 2 * hidden)
        new[f"{head}.bias"] = old[f"{head}.bias"]
    wide.load_state_dict(new)
    return {"widened": "Net2Net copies of each unit (Chen et al. 2016), incoming LSTM and "
                       f"acoustic weights of the copies moved by {NOISE} of their spread",
            "from_network": {k: a[k] for k in ("channels", "acoustic", "lstm")}}


def narrower_donor(model: OnsetsFramesNet, init_from: Path | None) -> OnsetsFramesNet | None:
    """The network of the `--init-from` export (from its card) when its
    size differs from `model`'s, to be widened into it; None when there is
    no export or it is `model`'s size (it loads as it is)."""
    from mtools.training.warm_start import card_beside

    if init_from is None:
        return None
    theirs = card_beside(init_from).get("hyperparameters", {})
    sizes = ("channels", "acoustic", "lstm")
    if not all(key in theirs for key in sizes) \
            or [theirs[key] for key in sizes] == [model.config[key] for key in sizes]:
        return None
    return OnsetsFramesNet(theirs.get("mel_bins", model.config["mel_bins"]),
                           theirs.get("keys", model.config["keys"]),
                           channels=tuple(theirs["channels"]), acoustic=theirs["acoustic"],
                           lstm=theirs["lstm"])
