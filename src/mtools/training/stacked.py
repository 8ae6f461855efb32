"""A 16-bar MusicVAE built on a trained 2-bar one, so it trains in an
hour on a CPU rather than days on a GPU.

The 2-bar model already maps a 2-bar window to a z (its "bar code") from
which its decoder plays the window's first bar back (mel_2bar: 0.985 of
the steps of a bar, teacher-forced, on 64 valid 16-bar windows: scratch).
A stacked 16-bar model (nets.MusicVAENet with `stacked`) keeps that
encoder and decoder, and adds what joins the bars: the summary, a linear
map from the 16 bar codes to z, and the conductor, a linear map from z
back to 16 bar codes.

`fit_conductor` fits those new parts alone, against the 2-bar model's own
codes. It starts them at the principal components of the training
windows' codes (`principal_start`: each code dimension in units of the
2-bar posterior's typical scale; z whitened, so the data's z is about
N(0, I)), then trains them on, with z's learned scale, on: per window, the
squared distance of each bar's code from the 2-bar posterior mean in
units of that posterior's scale (the dimensions the decoder reads are the
ones the posterior is sure of), summed over bars and dimensions, plus the
loss's usual beta · max(KL − free bits, 0). It needs no decoder pass, so a
step costs a small network. Ordinary end-to-end training (`Trainer`, the
notes' NLL) can go on from there."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.training.loop import save_checkpoint
from mtools.training.music_vae import WindowBatches, kl_charge

PASSES = 60  # over the training windows, at most
PATIENCE = 4  # evaluations (one a pass) without a better validation loss
VALID_WINDOWS = 512
ACCURACY_WINDOWS = 64  # valid windows whose bars are played back at each evaluation
LEARNING_RATE = 1e-4  # small: the phase starts at the principal components
CHUNK = 64  # windows encoded at a time
PRINCIPAL_WINDOWS = 8192  # training windows the principal components are taken from
START_SCALE = 0.05  # z's posterior scale to begin with
SPREAD_FLOOR = 1e-3  # of the largest component's: smaller ones are not part of z


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters()
            if name.startswith(("summary", "conductor"))]


@torch.no_grad()
def bar_encodings(model: nn.Module, windows: WindowBatches, picks: np.ndarray,
                  progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """(len(picks), bars, 2 · enc_hidden) float16: the encoder's reading of
    each bar's window of the picked windows, untransposed. The encoder is
    the 2-bar model's and does not train here, so this is done once."""
    model.eval()
    rows = []
    for start in range(0, len(picks), CHUNK):
        inputs = windows.batch_of(picks[start:start + CHUNK])[0]
        rows.append(model.bar_encodings(inputs).reshape(len(inputs), model.config["bars"], -1)
                    .half())
        if progress is not None and (start // CHUNK) % 50 == 49:
            progress(f"conductor on bar codes: reading the bars of {start + len(inputs)}"
                     f"/{len(picks)} training windows")
    return torch.cat(rows)


@torch.no_grad()
def donor_codes(donor: nn.Module, encodings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-bar posterior's mean and scale, (windows · bars, its z_size),
    for bar encodings (windows, bars, 2 · enc_hidden)."""
    flat = encodings.float().reshape(-1, encodings.shape[2])
    return donor.to_mu(flat), nn.functional.softplus(donor.to_sigma(flat))


@torch.no_grad()
def principal_start(model: nn.Module, donor: nn.Module, encodings: torch.Tensor) -> None:
    """Set the summary to the top z_size principal components of the bar
    codes of `encodings` (each code dimension divided by its median 2-bar
    posterior scale, so a unit means as much to the decoder everywhere),
    each component divided by its spread (z whitened), and the conductor
    to the inverse map; z's scale to START_SCALE."""
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


def code_loss(model: nn.Module, donor: nn.Module, encodings: torch.Tensor, beta: float,
              free_bits: float, sample: bool) -> torch.Tensor:
    """Mean over windows of the code distance plus the KL charge (see
    the module doc) for bar encodings (windows, bars, 2 · enc_hidden); z
    drawn from the posterior when `sample`, else its mean."""
    code_mu, code_sigma = donor_codes(donor, encodings)
    mu, sigma = model.summarize(encodings.float().reshape(-1, encodings.shape[2]))
    z = mu + sigma * torch.randn_like(sigma) if sample else mu
    codes = model.embeddings(z).reshape(code_mu.shape)
    distance = 0.5 * ((codes - code_mu) / code_sigma.clamp(min=1e-3)) ** 2
    distance = distance.reshape(len(mu), -1).sum(1)
    return (distance + kl_charge(mu, sigma, beta, free_bits)).mean()


@torch.no_grad()
def bar_accuracy(model: nn.Module, encodings: torch.Tensor, batch) -> float:
    """Share of steps whose most likely class, given z's mean and the true
    previous steps of its bar, is the true one (the card's
    accuracy_teacher_forced, on these windows)."""
    _, features, targets = batch
    mu, _ = model.summarize(encodings.float().reshape(-1, encodings.shape[2]))
    logits = model.teacher_forced(mu, features)
    return float((logits.argmax(dim=2) == targets[..., 0]).float().mean())


def _encodings(model: nn.Module, train: WindowBatches, valid: WindowBatches,
               run_dir: Path, progress: Callable[[str], None]):
    """The bar encodings of every training window and of the fixed valid
    check windows, read once and kept in the run folder (ENCODINGS) until
    the phase ends, so a stopped run does not read them again."""
    picks = np.random.default_rng(1234).choice(len(valid.windows), replace=False,
                                               size=min(VALID_WINDOWS, len(valid.windows)))
    path = run_dir / ENCODINGS
    if path.exists():
        kept = torch.load(path, weights_only=True)
        if len(kept["train"]) == len(train.windows) and np.array_equal(kept["picks"], picks):
            return kept["train"], kept["checks"], picks
    encodings = bar_encodings(model, train, np.arange(len(train.windows)), progress)
    checks = bar_encodings(model, valid, picks)
    save_checkpoint({"train": encodings, "checks": checks, "picks": torch.from_numpy(picks)},
                    path)
    return encodings, checks, picks


ENCODINGS = "bar_encodings.pt"  # removed when the phase ends
STATE = "conductor_fit.pt"  # the phase's checkpoint, written after every pass


def fit_conductor(model: nn.Module, donor: nn.Module, train: WindowBatches,
                  valid: WindowBatches, beta: float, free_bits: float,
                  progress: Callable[[str], None], run_dir: Path, seed: int = 0,
                  train_more: bool = True) -> dict:
    """Fit the summary, z's scale and the conductor of a stacked `model`
    (its encoder and bar decoder are the 2-bar `donor`'s) to the donor's
    bar codes of the training windows (untransposed: their encodings are
    read once): principal components first, then training. Checkpointed in `run_dir` after every pass and resumed
    from there; keeps the weights of the best validation loss and returns
    what the card says of them. `train_more` False (an --export-only
    call) takes the best weights so far and trains nothing."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    donor.eval()
    params = _trainable(model)
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    at = {"step": 0, "best": float("inf"), "best_state": None, "best_step": 0, "waited": 0,
          "log": [], "seconds": 0.0, "done": False}
    if (run_dir / STATE).exists():
        at = torch.load(run_dir / STATE, weights_only=False)
        model.load_state_dict(at["model"])
        optimizer.load_state_dict(at["optimizer"])
        rng.bit_generator.state = at["rng"]
        torch.set_rng_state(at["torch_rng"])  # z's draws
        progress(f"conductor on bar codes: resuming at step {at['step']}")
    started = time.monotonic() - at["seconds"]
    if not at["done"] and train_more:
        _fit(model, donor, train, valid, beta, free_bits, progress, run_dir, rng, optimizer,
             params, at, started)
    if at["done"]:
        (run_dir / ENCODINGS).unlink(missing_ok=True)
    if at["best_state"] is not None:
        model.load_state_dict(at["best_state"])
    log = at["log"]
    return {"method": "summary and conductor started at the principal components of the 2-bar "
                      "model's bar codes, then trained alone on those codes of the "
                      "untransposed training windows (see mtools.training.stacked)",
            "steps": log[-1]["step"] if log else 0, "best_step": at["best_step"],
            **({} if at["done"] else {"stopped": "before the phase ended (an --export-only "
                                                "call while it ran)"}),
            "best_valid_code_loss": round(at["best"], 2), "batch_size": train.config.batch_size,
            "learning_rate": LEARNING_RATE, "seconds": round(at["seconds"]), "log": log}


def _fit(model, donor, train, valid, beta, free_bits, progress, run_dir, rng, optimizer, params,
         at: dict, started: float) -> None:
    encodings, checks, picks = _encodings(model, train, valid, run_dir, progress)
    heard_batch = valid.batch_of(picks[:ACCURACY_WINDOWS])
    size = train.config.batch_size
    per_pass = max(1, len(encodings) // size)

    def evaluate(step: int, train_loss: float | None) -> bool:
        """Log the valid figures, keep the best weights, checkpoint; True
        when the phase is over."""
        model.eval()
        with torch.no_grad():
            figure = float(np.mean([float(code_loss(model, donor, checks[i:i + size], beta,
                                                    free_bits, sample=False))
                                    for i in range(0, len(checks), size)]))
        accuracy = bar_accuracy(model, checks[:ACCURACY_WINDOWS], heard_batch)
        at["log"].append({"step": step, **({} if train_loss is None else
                                           {"train": round(train_loss, 2)}),
                          "valid": round(figure, 2), "accuracy_teacher_forced": round(accuracy, 4)})
        progress(f"conductor on bar codes: step {step}: "
                 + ("" if train_loss is None else f"train {train_loss:.1f} ")
                 + f"valid {figure:.1f} (best {min(at['best'], figure):.1f}), bars played back "
                   f"{accuracy:.3f}")
        if figure < at["best"]:
            at.update(best=figure, best_step=step, waited=0,
                      best_state=copy.deepcopy(model.state_dict()))
        else:
            at["waited"] += 1
        at.update(step=step, seconds=time.monotonic() - started,
                  done=at["waited"] >= PATIENCE or step + per_pass > PASSES * per_pass)
        save_checkpoint({**at, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                        run_dir / STATE)
        return at["done"]

    if at["step"] == 0 and not at["log"]:
        rows = np.random.default_rng(1234).permutation(len(encodings))[:PRINCIPAL_WINDOWS]
        principal_start(model, donor, encodings[torch.from_numpy(rows)])
        if evaluate(0, None):
            return
    for step in range(at["step"] + 1, PASSES * per_pass + 1):
        model.train()
        rows = torch.from_numpy(rng.integers(len(encodings), size=size))
        loss = code_loss(model, donor, encodings[rows], beta, free_bits, sample=True)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        if step % per_pass == 0 and evaluate(step, float(loss)):
            return
    at["done"] = True
