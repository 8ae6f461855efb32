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

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.errors import UsageError
from mtools.training.loop import resumable
from mtools.training.music_vae import VaeRequest, WindowBatches, donor_network, kl_charge, \
    parity_error
from mtools.training.nets import MusicVAENet, PartsVAENet
from mtools.training.warm_start import card_beside, export_note, load_export, warm_start

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
    for bar encodings (..., 2 · enc_hidden)."""
    flat = encodings.float().reshape(-1, encodings.shape[-1])
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
    return _whitened_start(model, mu.double().reshape(len(encodings), -1) / scale, scale)


def principal_axes(units: torch.Tensor, most: int) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """The mean (dims,), and the spread (keep,) and axes (dims, keep) of
    the up to `most` largest principal components of rows `units` (n,
    dims), the largest first; components with next to no spread (fewer
    rows than dimensions) are left out. An eigenvector's sign is
    arbitrary: each axis's largest entry is made positive, so that the same
    data gives the same axes on any machine."""
    mean = units.mean(dim=0)
    spread, axes = torch.linalg.eigh(torch.cov(units.T, correction=0))
    spread = spread.flip(0).clamp(min=0).sqrt()
    keep = min(most, int((spread > SPREAD_FLOOR * spread[0]).sum()))
    axes = axes.flip(1)[:, :keep]
    axes = axes * torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return mean, spread[:keep], axes


@torch.no_grad()
def _whitened_start(model: nn.Module, units: torch.Tensor, scale: torch.Tensor | float) -> int:
    """Summary: the principal components of `units` (windows, summary
    inputs / scale), whitened; conductor: the inverse map; z's scale
    START_SCALE. Returns how many components z holds."""
    mean, spread, axes = principal_axes(units, model.config["z_size"])
    keep = len(spread)
    scale = torch.as_tensor(scale, dtype=torch.float64).expand(len(mean))
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


# A stacked model of parts (nets.PartsVAENet, trio_16bar): one 2-bar donor per part.
PARTS_HINT = ("--init-from once per part, in order: melody, bass, drums (say music_vae:mel_2bar "
              "music_vae:bass_2bar music_vae:trio_drums_2bar)")
PART_MODULES = (("encoder", "encoders"), ("to_mu", "to_mu"), ("to_state", "to_state"),
                ("decoder", "decoders"), ("head", "heads"))  # a donor's module → the parts'


def start_from(request: VaeRequest, model: nn.Module, batches: tuple,
               progress: Callable[[str], None]) -> dict | None:
    """A run's --init-from: a model of parts takes one 2-bar model per part
    (or its own export whole), any other network what warm_start gives it;
    a new stacked model then takes its principal start. The note the card
    keeps (None: the run started at random)."""
    if isinstance(model, PartsVAENet) and (request.parts_from or request.init_from is None):
        init, donors = warm_parts(request.run_dir, model, request.parts_from, progress)
        if donors is not None:
            _note_start(request, init, start_parts(model, donors, *batches, progress))
        return init
    fresh_start = resumable(request.run_dir) is None
    if isinstance(model, PartsVAENet) and fresh_start \
            and "parts" not in card_beside(request.init_from).get("hyperparameters", {}):
        raise UsageError(f"{request.init_from.name} is not a model of parts: "
                         f"{request.config.spec} starts from one 2-bar model per part, or "
                         "from its own export", hint=PARTS_HINT)
    donor = donor_network(model, request.init_from) if isinstance(model, MusicVAENet) else None
    init = warm_start(request.run_dir, model, request.init_from, request.init_spec, parity_error,
                      progress, donor=donor)
    if fresh_start and donor is not None and model.config.get("stacked"):
        config = request.config
        _note_start(request, init, start_stacked(model, donor, *batches, config.beta,
                                                  config.free_bits, progress))
    return init


def _note_start(request: VaeRequest, init: dict, start: dict) -> None:
    """Add a principal start to the run's init note (and its file)."""
    init["principal_start"] = start
    init["kept_initialised"] = [name for name in init["kept_initialised"]
                                if name not in start["set"]]
    (request.run_dir / "init_from.json").write_text(json.dumps(init, indent=1) + "\n")


def part_donor(model: nn.Module, index: int, path: Path) -> nn.Module:
    """The flat 2-bar network of the export at `path` (built from its card,
    weights not yet loaded) that part `index` of `model` can stand on;
    UsageError when it is anything else or its sizes do not fit the part."""
    part = model.config["parts"][index]
    card = card_beside(path)
    given = card.get("hyperparameters", {})
    if given.get("bars", 1) != 1 or given.get("stacked") or "parts" in given or not given:
        raise UsageError(f"{path} is not a 2-bar MusicVAE with its card: each part of "
                         f"{model.config['bars']} bars stands on one", hint=PARTS_HINT)
    wants = {"input_size": part["inputs"][1] - part["inputs"][0],
             "num_classes": part["classes"][1] - part["classes"][0], "z_size": part["z_size"],
             "enc_hidden": part["enc_hidden"], "dec_hidden": part["dec_hidden"],
             "dec_layers": model.config["dec_layers"]}
    differ = [f"{key} {given.get(key)} (the part's: {value})" for key, value in wants.items()
              if given.get(key) != value]
    if differ:
        raise UsageError(f"{path.name} does not fit the {part['name']} part: its "
                         f"{', '.join(differ)}", hint=PARTS_HINT)
    line = card.get("encoding", {}).get("line", "")
    if line and line != part["name"]:  # (a melody model has none: it may start a bass part)
        raise UsageError(f"{path.name} is a {line} model, not one for the {part['name']} part",
                         hint=PARTS_HINT)
    return MusicVAENet(**{**wants, "dropout": given.get("dropout", 0.0)})


@torch.no_grad()
def take_part(model: nn.Module, index: int, donor: nn.Module) -> list[str]:
    """Copy a part's 2-bar donor into part `index` of `model`; the names set."""
    mine = model.state_dict()
    taken = {}
    for name, value in donor.state_dict().items():
        module, _, rest = name.partition(".")
        target = dict(PART_MODULES).get(module)
        if target is not None:
            taken[f"{target}.{index}.{rest}"] = value
    model.load_state_dict({**mine, **taken})
    return list(taken)


def warm_parts(run_dir: Path, model: nn.Module, inits: tuple, progress: Callable[[str], None]
               ) -> tuple[dict | None, list[nn.Module] | None]:
    """warm_start for a model of parts: with no run in `run_dir` to resume,
    each part takes its 2-bar donor (inits: (path, spec) per part, in the
    parts' order), proved by parity; returns the note the card keeps and
    the donors. A resumed run: its note and no donors."""
    note_path = run_dir / "init_from.json"
    if resumable(run_dir) is not None:
        if inits:
            progress(f"{run_dir} holds a run: resuming it (--init-from starts a new one)")
        return (json.loads(note_path.read_text()) if note_path.exists() else None), None
    note_path.unlink(missing_ok=True)
    if not inits:
        return None, None
    parts = model.config["parts"]  # (train_music_vae has checked there is one init a part)
    donors, notes, took = [], [], []
    for index, (path, spec) in enumerate(inits):
        donor = part_donor(model, index, path)
        error, quantized = load_export(donor, path, parity_error)
        notes.append({"part": parts[index]["name"], **export_note(path, spec, error, quantized)})
        took += take_part(model, index, donor)
        donors.append(donor.eval())
        progress(f"the {parts[index]['name']} part starts from {path} (parity {error:.1e})")
    note = {"parts": notes, "took": took,
            "kept_initialised": [name for name in model.state_dict() if name not in took]}
    run_dir.mkdir(parents=True, exist_ok=True)
    note_path.write_text(json.dumps(note, indent=1) + "\n")
    return note, donors


@torch.no_grad()
def parts_principal_start(model: nn.Module, donors: list[nn.Module],
                          encodings: list[torch.Tensor]) -> int:
    """principal_start for a model of parts: each part's `squeeze` keeps
    the top `squeeze` principal components of its bar codes (each code
    dimension divided by its median 2-bar posterior scale; not whitened,
    so a unit means as much in every part), `unsqueeze` the inverse; the
    summary and conductor are then the whitened principal components of
    all bars' squeezed codes and the inverse. `encodings`: per part
    (windows · bars, 2 · enc_hidden). Returns how many components z holds."""
    bars, size = model.config["bars"], model.config["squeeze"]
    squeezed = []
    for k, (donor, part_encodings) in enumerate(zip(donors, encodings)):
        mu, sigma = donor_codes(donor, part_encodings)
        scale = sigma.median(dim=0).values.double()
        mean, _, axes = principal_axes(mu.double() / scale, size)
        weight = torch.zeros(size, len(scale), dtype=torch.float64)
        weight[:axes.shape[1]] = (axes / scale[:, None]).T
        model.squeeze[k].weight.copy_(weight)
        model.squeeze[k].bias.copy_(-(weight * scale) @ mean)
        model.unsqueeze[k].weight.copy_(weight.T * scale[:, None] ** 2)
        model.unsqueeze[k].bias.copy_(mean * scale)
        squeezed.append(((mu.double() / scale - mean) @ (weight * scale).T).reshape(-1, bars, size))
    return _whitened_start(model, torch.cat(squeezed, dim=2).reshape(len(squeezed[0]), -1), 1.0)


def start_parts(model: nn.Module, donors: list[nn.Module], train: WindowBatches,
                valid: WindowBatches, progress: Callable[[str], None]) -> dict:
    """`parts_principal_start` from up to PRINCIPAL_WINDOWS training
    windows (untransposed); returns what the card says of it, with each
    part's bars played back (teacher-forced) from z's mean on
    ACCURACY_WINDOWS fixed valid windows."""
    rows = np.random.default_rng(1234).permutation(len(train.windows))[:PRINCIPAL_WINDOWS]
    encodings = part_bar_encodings(model, train, rows, progress)
    kept = parts_principal_start(model, donors, encodings)
    del encodings
    picks = np.random.default_rng(1234).choice(len(valid.windows), replace=False,
                                               size=min(ACCURACY_WINDOWS, len(valid.windows)))
    inputs, features, targets = valid.batch_of(picks)
    with torch.no_grad():
        logits = model.eval().teacher_forced(model.encode(inputs)[0], features)
    groups = logits.split([stop - start for start, stop in
                           (part["classes"] for part in model.config["parts"])], dim=2)
    played = {f"{part['name']}_valid_bar_accuracy_teacher_forced":
              round(float((group.argmax(dim=2) == targets[..., k]).float().mean()), 4)
              for k, (part, group) in enumerate(zip(model.config["parts"], groups))}
    progress(f"principal start: {kept} components; bars played back {played}")
    return {"method": "each part's code squeezed to its principal components, then summary and "
                      "conductor set to the principal components of all bars' squeezed codes "
                      "of the untransposed training windows, z whitened (see "
                      "mtools.training.stacked.parts_principal_start)",
            "set": [name for name, _ in model.named_parameters()
                    if name.startswith(("squeeze", "unsqueeze", "summary", "conductor"))],
            "training_windows": len(rows), "components": kept, "z_scale": START_SCALE,
            "valid_windows": len(picks), **played}


@torch.no_grad()
def part_bar_encodings(model: nn.Module, windows: WindowBatches, picks: np.ndarray,
                       progress: Callable[[str], None]) -> list[torch.Tensor]:
    """Per part (len(picks) · bars, 2 · enc_hidden): bar_encodings of a
    model of parts."""
    model.eval()
    rows = []
    for start in range(0, len(picks), CHUNK):
        chunk = picks[start:start + CHUNK]
        rows.append(model.bar_encodings(windows.batch_of(chunk)[0]))
        if (start // CHUNK) % 25 == 24:
            progress(f"principal start: reading the bars of {start + len(chunk)}/{len(picks)} "
                     "training windows")
    return [torch.cat(part) for part in zip(*rows)]
