"""A 16-bar MusicVAE built on a trained 2-bar one, in minutes on a CPU
rather than days on a GPU.

The 2-bar model already maps a 2-bar window to a z (its "bar code") from
which its decoder plays the window's first bar back (mel_2bar: 0.985 of
the steps of a bar, teacher-forced, on 64 valid 16-bar windows: scratch).
A stacked 16-bar model (nets.MusicVAENet with `stacked`) keeps that
encoder and decoder, and adds what joins the bars: the summary, a linear
map from the 16 bar codes to z, and the conductor, a linear map from z
back to 16 bar codes.

`principal_start` sets those two maps from the principal components of
the training windows' bar codes: z holds the z_size largest components
(each code dimension in units of the 2-bar posterior's typical scale, so
that a unit means as much to the decoder everywhere), whitened, so that
the data's z is about N(0, I) and the prior samples like the data; the
conductor is the inverse map. No linear map of that size reproduces the
codes more closely in that measure. Training the two maps on from there
(Adam on the codes' precision-weighted distance plus the KL charge, 4
passes over the training windows at 1e-4) only moved them away: mel_16bar's
valid code loss 80 -> 161..190 (2026-12-03). Ordinary end-to-end
training (`Trainer`, the notes' NLL) can go on from the start."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.training.music_vae import WindowBatches, kl_charge

VALID_WINDOWS = 512  # valid windows the start is measured on
ACCURACY_WINDOWS = 64  # of those, windows whose bars are played back
CHUNK = 64  # windows encoded at a time
PRINCIPAL_WINDOWS = 8192  # training windows the principal components are taken from
START_SCALE = 0.05  # z's posterior scale: what the end-to-end loss then trains
SPREAD_FLOOR = 1e-3  # of the largest component's: smaller ones are not part of z


@torch.no_grad()
def bar_encodings(model: nn.Module, windows: WindowBatches, picks: np.ndarray,
                  progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """(len(picks), bars, 2 · enc_hidden): the encoder's reading of each
    bar's window of the picked windows, untransposed."""
    model.eval()
    rows = []
    for start in range(0, len(picks), CHUNK):
        inputs = windows.batch_of(picks[start:start + CHUNK])[0]
        rows.append(model.bar_encodings(inputs).reshape(len(inputs), model.config["bars"], -1))
        if progress is not None and (start // CHUNK) % 50 == 49:
            progress(f"principal start: reading the bars of {start + len(inputs)}"
                     f"/{len(picks)} training windows")
    return torch.cat(rows)


@torch.no_grad()
def donor_codes(donor: nn.Module, encodings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-bar posterior's mean and scale, (windows · bars, its z_size),
    for bar encodings (windows, bars, 2 · enc_hidden)."""
    flat = encodings.float().reshape(-1, encodings.shape[2])
    return donor.to_mu(flat), nn.functional.softplus(donor.to_sigma(flat))


@torch.no_grad()
def principal_start(model: nn.Module, donor: nn.Module, encodings: torch.Tensor) -> int:
    """Set the summary to the top z_size principal components of the bar
    codes of `encodings` (each code dimension divided by its median 2-bar
    posterior scale), each component divided by its spread (z whitened),
    and the conductor to the inverse map; z's scale to START_SCALE.
    Returns how many components z holds (the rest of z stays unused)."""
    bars = model.config["bars"]
    mu, sigma = donor_codes(donor, encodings)
    scale = sigma.median(dim=0).values.double().repeat(bars)  # (bars · code)
    units = mu.double().reshape(len(encodings), -1) / scale
    mean = units.mean(dim=0)
    spread, axes = torch.linalg.eigh(torch.cov(units.T, correction=0))
    spread = spread.flip(0).clamp(min=0).sqrt()
    # components with next to no spread (fewer windows than dimensions) stay out of z
    keep = min(model.config["z_size"], int((spread > SPREAD_FLOOR * spread[0]).sum()))
    spread = spread[:keep]
    axes = axes.flip(1)[:, :keep]  # (bars · code, keep): the largest first
    # an eigenvector's sign is arbitrary: make each one's largest entry positive, so
    # that the same data gives the same z on any machine
    axes = axes * torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    summary = torch.zeros_like(model.summary.weight, dtype=torch.float64)
    summary[:keep] = (axes / scale[:, None] / spread[None, :]).T
    conductor = torch.zeros_like(model.conductor.weight, dtype=torch.float64)
    conductor[:, :keep] = axes * spread[None, :] * scale[:, None]
    model.summary.weight.copy_(summary)
    model.summary.bias.zero_()
    model.summary.bias[:keep] = -(mean @ axes) / spread
    model.conductor.weight.copy_(conductor)
    model.conductor.bias.copy_(mean * scale)
    model.summary_scale.fill_(float(np.log(np.expm1(START_SCALE))))
    return keep


@torch.no_grad()
def code_loss(model: nn.Module, donor: nn.Module, encodings: torch.Tensor, beta: float,
              free_bits: float) -> float:
    """Mean over windows of the squared distance of each bar's code (from
    z's mean) to the 2-bar posterior mean, in units of that posterior's
    scale, summed over bars and dimensions, plus beta · max(KL − free
    bits, 0)."""
    code_mu, code_sigma = donor_codes(donor, encodings)
    mu, sigma = model.summarize(encodings.float().reshape(-1, encodings.shape[2]))
    codes = model.embeddings(mu).reshape(code_mu.shape)
    distance = 0.5 * ((codes - code_mu) / code_sigma.clamp(min=1e-3)) ** 2
    distance = distance.reshape(len(mu), -1).sum(1)
    return float((distance + kl_charge(mu, sigma, beta, free_bits)).mean())


@torch.no_grad()
def bar_accuracy(model: nn.Module, encodings: torch.Tensor, batch) -> float:
    """Share of steps whose most likely class, given z's mean and the true
    previous steps of its bar, is the true one (the card's
    accuracy_teacher_forced, on these windows)."""
    _, features, targets = batch
    mu, _ = model.summarize(encodings.float().reshape(-1, encodings.shape[2]))
    logits = model.teacher_forced(mu, features)
    return float((logits.argmax(dim=2) == targets[..., 0]).float().mean())


def start_stacked(model: nn.Module, donor: nn.Module, train: WindowBatches,
                  valid: WindowBatches, beta: float, free_bits: float,
                  progress: Callable[[str], None]) -> dict:
    """`principal_start` for a stacked `model` (its encoder and bar decoder
    are the 2-bar `donor`'s) from up to PRINCIPAL_WINDOWS training windows
    (untransposed); returns what the card says of it, measured on
    VALID_WINDOWS fixed valid windows."""
    donor.eval()
    rows = np.random.default_rng(1234).permutation(len(train.windows))[:PRINCIPAL_WINDOWS]
    kept = principal_start(model, donor, bar_encodings(model, train, rows, progress))
    picks = np.random.default_rng(1234).choice(len(valid.windows), replace=False,
                                               size=min(VALID_WINDOWS, len(valid.windows)))
    checks = bar_encodings(model, valid, picks)
    figure = code_loss(model, donor, checks, beta, free_bits)
    accuracy = bar_accuracy(model, checks[:ACCURACY_WINDOWS],
                            valid.batch_of(picks[:ACCURACY_WINDOWS]))
    progress(f"principal start: {kept} components; valid code loss {figure:.1f}, bars played "
             f"back {accuracy:.3f}")
    return {"method": "summary and conductor set to the principal components of the 2-bar "
                      "model's bar codes of the untransposed training windows, z whitened (see "
                      "mtools.training.stacked)",
            "set": [name for name, _ in model.named_parameters()
                    if name.startswith(("summary", "conductor"))],
            "training_windows": len(rows), "components": kept, "z_scale": START_SCALE,
            "valid_windows": len(picks), "valid_code_loss": round(figure, 2),
            "valid_bar_accuracy_teacher_forced": round(accuracy, 4)}
