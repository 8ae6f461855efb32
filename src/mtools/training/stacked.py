"""A 16-bar MusicVAE built on a trained 2-bar one, so it trains in hours on
a CPU rather than days on a GPU.

The 2-bar model already maps a 2-bar window to a z (its "bar code") from
which its decoder plays the window's first bar back (mel_2bar: 0.966 of
the steps of a bar, measured on 200 valid 16-bar windows). A stacked
16-bar model (nets.MusicVAENet with `stacked`) keeps that encoder and
decoder, and adds what joins the bars: a summary LSTM over the bar
encodings gives the 16-bar z, and the conductor (plus a linear layer)
turns z back into one bar code per bar.

`fit_conductor` trains those new parts alone, against the 2-bar model's
own codes: per window, the squared distance of each bar's code from the
2-bar posterior mean in units of that posterior's scale (the dimensions
the decoder reads are the ones the posterior is sure of), summed over
bars and dimensions, plus the loss's usual beta · max(KL − free bits, 0).
It needs no decoder pass, so a step costs one no-gradient encoder pass
and a small network. Ordinary end-to-end training (`Trainer`, the notes'
NLL) then goes on from there."""

from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

PASSES = 12  # over the training windows, at most
EVALS_PER_PASS = 2
PATIENCE = 3  # evaluations without a better validation loss
VALID_WINDOWS = 512
LEARNING_RATE = 1e-3


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters()
            if name.startswith(("summary", "to_mu", "to_sigma", "conductor"))]


def code_loss(model: nn.Module, donor: nn.Module, encoder_inputs: torch.Tensor, beta: float,
              free_bits: float, sample: bool) -> torch.Tensor:
    """Mean over windows of the code distance plus the KL charge (see
    the module doc); z drawn from the posterior when `sample`, else its
    mean."""
    with torch.no_grad():
        encodings = model.bar_encodings(encoder_inputs)
        code_mu = donor.to_mu(encodings)
        code_sigma = nn.functional.softplus(donor.to_sigma(encodings))
    mu, sigma = model.summarize(encodings)
    z = mu + sigma * torch.randn_like(sigma) if sample else mu
    codes = model.embeddings(z).reshape(code_mu.shape)
    distance = (0.5 * ((codes - code_mu) / code_sigma.clamp(min=1e-3)) ** 2)
    distance = distance.reshape(len(mu), -1).sum(1)
    kl = (0.5 * (mu ** 2 + sigma ** 2 - 1) - torch.log(sigma.clamp(min=1e-8))).sum(1)
    return (distance + beta * torch.clamp(kl - free_bits, min=0)).mean()


def fit_conductor(model: nn.Module, donor: nn.Module, train, valid, beta: float,
                  free_bits: float, progress: Callable[[str], None], seed: int = 0) -> dict:
    """Train the summary, z and conductor layers of a stacked `model`
    (its encoder and bar decoder are the 2-bar `donor`'s) on the donor's
    bar codes: `train` and `valid` are WindowBatches. Keeps the weights
    of the best validation loss; returns what the card says of it."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = _trainable(model)
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    per_pass = max(1, len(train.windows) // train.config.batch_size)
    every = max(1, per_pass // EVALS_PER_PASS)
    checks = [batch[0] for batch in valid.fixed_batches(VALID_WINDOWS)]
    best, best_state, best_step, waited, log = np.inf, None, 0, 0, []
    started = time.monotonic()
    donor.eval()
    for step in range(1, PASSES * per_pass + 1):
        model.train()
        loss = code_loss(model, donor, train.batch(rng)[0], beta, free_bits, sample=True)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        if step % every and step != PASSES * per_pass:
            continue
        model.eval()
        with torch.no_grad():
            figure = float(np.mean([code_loss(model, donor, x, beta, free_bits, sample=False)
                                    for x in checks]))
        log.append({"step": step, "train": round(float(loss), 3), "valid": round(figure, 3)})
        progress(f"conductor on bar codes: step {step}: train {float(loss):.2f} "
                 f"valid {figure:.2f} (best {min(best, figure):.2f})")
        if figure < best:
            best, best_step, waited = figure, step, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    model.load_state_dict(best_state)
    return {"method": "summary, z and conductor layers trained alone on the 2-bar model's "
                      "bar codes (see mtools.training.stacked)",
            "steps": log[-1]["step"], "best_step": best_step,
            "best_valid_code_loss": round(best, 3), "batch_size": train.config.batch_size,
            "learning_rate": LEARNING_RATE, "seconds": round(time.monotonic() - started),
            "log": log}
