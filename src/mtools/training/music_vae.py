"""Training MusicVAE: every bar-aligned window of the training melodies or
drum tracks, melodies transposed at random; the loss is the reconstruction
cross-entropy summed over a window's steps plus beta times the KL
divergence above a free-bits allowance in nats (Magenta's `max_beta` and
`free_bits`, which Magenta counts in bits).
Export writes one graph (encoder, decoder start state and decoder steps,
see `mtools.models.music_vae`) and checks it against torch; the card holds
the reconstruction accuracies measured on the valid split."""

from __future__ import annotations

import inspect
import math
import shlex
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.errors import InputFormatError, UsageError
from mtools.models.events import NUM_DRUM_CLASSES
from mtools.models.music_vae import GRAPH_INPUTS, GRAPH_OUTPUTS, TRIO_PARTS, VaeSpace
from mtools.models.registry import model_stem, write_card
from mtools.training import corpora
from mtools.training.export import architecture, export_checked, export_onnx, run_card, \
    whole_export
from mtools.training.loop import TrainConfig, Trainer, data_names, load_best, loop_words, \
    resumable
from mtools.training.nets import MusicVAENet, PartsVAENet
from mtools.training.trios import cached_mma_version
from mtools.training.warm_start import card_beside
from mtools.training.vae_windows import DEFAULT_CONFIG, TRANSPOSE, VaeConfig, load_windows, \
    transpose_ids

Progress = Callable[[str], None]
NETWORK = {"z_size": 256, "enc_hidden": 256, "dec_hidden": 256, "dec_layers": 2}
LOOP = TrainConfig(batch_size=64, eval_every=250, valid_crops=1024, patience=8)


class WindowBatches:
    """Batches for `Trainer`: (encoder inputs, decoder features, targets)
    tensors of random windows, melodies (and a trio's bass) transposed at
    random when `transpose`. Targets are class ids per part (batch, steps,
    parts), or a groove's frames."""

    def __init__(self, windows: np.ndarray, space: VaeSpace, config: TrainConfig,
                 transpose: bool = True):
        kind = np.float32 if space.kind == "groove" else np.int64
        self.windows, self.space, self.config = np.asarray(windows, kind), space, config
        self.transpose = transpose and space.kind in ("melody", "trio")

    def _batch(self, ids: np.ndarray):
        space = self.space
        targets = ids if space.kind == "groove" else space.parts(ids)
        return (torch.from_numpy(space.encoder_features(ids)), torch.from_numpy(space.features(ids)),
                torch.from_numpy(targets))

    def batch(self, rng: np.random.Generator):
        ids = self.windows[rng.integers(len(self.windows), size=self.config.batch_size)]
        if self.transpose:
            ids = transpose_ids(ids, rng.integers(-TRANSPOSE, TRANSPOSE + 1, size=len(ids)),
                                self.space)
        return self._batch(ids)

    def batch_of(self, rows: np.ndarray):
        """The windows at `rows`, untransposed."""
        return self._batch(self.windows[rows])

    def fixed_batches(self, count: int, seed: int = 1234):
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(self.windows), size=min(count, len(self.windows)), replace=False)
        size = self.config.batch_size
        return [self._batch(self.windows[picks[i:i + size]]) for i in range(0, len(picks), size)]


@dataclass
class VaeLoss:
    """Per window: reconstruction loss (summed over steps) + beta ·
    max(KL − free_bits, 0); the mean over windows. The reconstruction loss
    is the class NLL (a trio's summed over its parts' softmaxes), or for
    grooves the hits' binary cross-entropy plus the squared errors of
    velocity and offset where the true frame has a hit. Training draws z
    from the posterior; validation uses its mean, so the figure is steady.

    Scheduled sampling (`sampling_rate` k > 0, one-softmax spaces): while
    training, each step's decoder input is the true previous step with
    probability k / (k + exp(step / k)) (Magenta's inverse-sigmoid
    schedule) and otherwise a class drawn from the decoder's own
    prediction for that step, made by a first teacher-forced pass without
    gradients (the two-pass form of Duckworth et al. 2019); the loss is
    always against the true steps. The Trainer reports the step through
    `start_step`. `feature_table` (classes, input_size): each class's
    decoder features. A model trained so is validated as it will be used:
    the reconstruction term is the NLL of the true steps while the decoder
    runs free from z's mean, fed its own most likely classes (so the best
    checkpoint is the one that reconstructs best when sampled)."""

    beta: float
    free_bits: float
    groove: bool = False
    segments: tuple[int, ...] = ()  # classes per part; () = one softmax over all
    sampling_rate: float = 0.0
    feature_table: torch.Tensor | None = None
    step: int = 0

    @property
    def validation(self) -> str:
        """How the validation figure is made: "free-running" or "teacher-forced"."""
        return "free-running" if self.feature_table is not None else "teacher-forced"

    def start_step(self, step: int) -> None:
        self.step = step

    def true_input_probability(self) -> float:
        k = self.sampling_rate
        return 1.0 if k <= 0 else k / (k + math.exp(min(self.step / k, 700.0)))

    def __call__(self, model: MusicVAENet, batch) -> tuple[torch.Tensor, torch.Tensor]:
        encoder_inputs, features, targets = batch
        mu, sigma = model.encode(encoder_inputs)
        z = mu + sigma * torch.randn_like(sigma) if model.training else mu
        table = self.feature_table
        if table is not None and model.training:
            outputs = model.teacher_forced(z, self._scheduled(model, z, features, targets[..., 0]))
        elif table is not None:
            outputs = model.free_running(z, features.shape[1], table.to(z.device))
        else:
            outputs = model.teacher_forced(z, features)
        if self.groove:
            recon = groove_loss(outputs, targets)
        else:
            groups = torch.split(outputs, list(self.segments or (outputs.shape[2],)), dim=2)
            recon = sum(nn.functional.cross_entropy(group.transpose(1, 2), targets[..., k],
                                                    reduction="none").sum(1)
                        for k, group in enumerate(groups))
        loss = recon + kl_charge(mu, sigma, self.beta, self.free_bits)
        return loss.mean(), torch.tensor(float(len(targets)))

    def _scheduled(self, model: MusicVAENet, z: torch.Tensor, features: torch.Tensor,
                   truth: torch.Tensor) -> torch.Tensor:
        keep = self.true_input_probability()
        if keep >= 1.0:
            return features
        with torch.no_grad():
            logits = model.teacher_forced(z.detach(), features)
            drawn = torch.distributions.Categorical(logits=logits).sample()
        chosen = torch.where(torch.rand(truth.shape, device=truth.device) < keep, truth, drawn)
        return self.feature_table.to(features.device)[chosen]


def kl_charge(mu: torch.Tensor, sigma: torch.Tensor, beta: float,
              free_bits: float) -> torch.Tensor:
    """Per window: beta · max(KL(N(mu, sigma²) || N(0, I)) − free_bits, 0)."""
    kl = (0.5 * (mu ** 2 + sigma ** 2 - 1) - torch.log(sigma.clamp(min=1e-8))).sum(1)
    return beta * torch.clamp(kl - free_bits, min=0)


def scheduled_loss(config: VaeConfig) -> VaeLoss:
    """The loss `config` trains with (see VaeLoss); scheduled sampling is
    for one-softmax spaces (melody, drums), a UsageError elsewhere."""
    space = config.space
    table = None
    if config.sampling_rate > 0 and space.kind not in ("melody", "drums"):
        raise UsageError(f"{config.spec}: scheduled sampling is for melody and drum windows, "
                         f"not {space.kind}s", hint="drop --scheduled-sampling-rate")
    if config.sampling_rate > 0:
        table = torch.from_numpy(space.features(np.arange(space.num_classes)[None])[0])
    return VaeLoss(config.beta, config.free_bits, groove=space.kind == "groove",
                   segments=space.segments, sampling_rate=config.sampling_rate,
                   feature_table=table)


def groove_loss(outputs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per window (batch,): hits' BCE + velocity and offset squared errors
    on the true hits, all summed over steps and classes."""
    n = frames.shape[2] // 3
    hits = frames[..., :n]
    bce = nn.functional.binary_cross_entropy_with_logits(outputs[..., :n], hits, reduction="none")
    velocity = (torch.sigmoid(outputs[..., n:2 * n]) - frames[..., n:2 * n]) ** 2
    offset = (torch.tanh(outputs[..., 2 * n:]) - frames[..., 2 * n:]) ** 2
    return (bce + hits * (velocity + offset)).sum(dim=(1, 2))


@dataclass(frozen=True)
class VaeRequest:
    config: VaeConfig
    sources: tuple[str, ...]
    out_dir: Path
    run_dir: Path
    loop: TrainConfig = LOOP
    network: dict | None = None
    fresh: bool = False
    init_from: Path | None = None  # a float export of this network to start a new run from
    init_spec: str | None = None  # how the user named it (a bundled name or a path)
    parts_from: tuple = ()  # a model of parts: (export, spec) of each part's 2-bar model
    sampling_rate: float | None = None  # None: the config's


def default_run_dir(config: VaeConfig) -> Path:
    return corpora.cache_dir() / "runs" / model_stem("music_vae", config.name)


def train_music_vae(request: VaeRequest, progress: Progress = lambda message: None) -> Path:
    """Train (or resume), export, measure on valid and write the card."""
    config = request.config
    parts = len(TRIO_PARTS) if dict(config.network).get("part_z_size") else 0
    if len(request.parts_from) not in {0, parts}:  # before --fresh empties the run folder
        raise UsageError(f"{config.spec} starts from "
                         f"{f'{parts} 2-bar models' if parts else 'one export'}, not "
                         f"{len(request.parts_from)}",
                         hint="--init-from once per part, in order: melody, bass, drums"
                         if parts else None)
    if request.fresh and request.run_dir.exists():
        shutil.rmtree(request.run_dir)
    request, loss = _schedule(request)
    report = lambda done, total, what: progress(f"parsing {what} ({done}/{total})")  # noqa: E731
    train = load_windows(config, request.sources, "train", report)
    valid = load_windows(config, request.sources, "valid", report)
    if not len(train) or not len(valid):
        raise InputFormatError(f"{config.spec}: the data gave {len(train)} training and {len(valid)} "
                               "validation windows; both must be non-empty",
                               hint="a split needs pieces in both parts: give more data")
    progress(f"{len(train)} training and {len(valid)} validation windows")
    space = config.space
    model = build_network(config, request.network)
    fresh_start = resumable(request.run_dir) is None
    batches = (WindowBatches(train, space, request.loop),
               WindowBatches(valid, space, request.loop, transpose=False))
    from mtools.training.stacked import start_from  # it imports this module

    init = start_from(request, model, batches, progress)
    if fresh_start and init is None and model.config.get("stacked"):
        progress(f"{config.spec} starts at random without --init-from (its encoders and "
                 "decoders are meant to be 2-bar models)")
    if init is not None and "parts" in init:  # (resumed: it still started there)
        request = replace(request, init_from=None, init_spec=None,
                          parts_from=tuple((Path(note["file"]), note["spec"])  # (a label)
                                           for note in init["parts"]))
    elif init is not None and request.init_spec is None:
        request = replace(request, init_spec=init.get("spec") or init["file"])
    trainer = Trainer(model, model.kind, *batches, request.loop, request.run_dir,
                      extra={"spec": config.spec, "data": data_names(request.sources),
                             "validation": loss.validation, "sampling_rate": request.sampling_rate},
                      progress=lambda history, message: progress(message), loss_fn=loss,
                      validate_first=init is not None)
    history = trainer.run()
    request = replace(request, loop=trainer.config)  # the rate the run started at
    best, trained_with = load_best(request.run_dir)
    return export_music_vae(replace(request, loop=trained_with), best, history, len(train), valid,
                            progress, init)


HIERARCHY_KEYS = ("bars", "conductor_hidden", "dropout", "stacked", "pad_hot")  # may differ
# (and a stacked model's z: the 2-bar z is its conductor_hidden)
FRESH = ("conductor", "summary")  # what a 16-bar model adds to a 2-bar one


def build_network(config: VaeConfig, overrides: dict | None = None) -> MusicVAENet | PartsVAENet:
    """A config's untrained network, `overrides` (say {"dec_hidden": 8})
    over its defaults. A stacked trio is a PartsVAENet whose parts have
    the network's enc_hidden, dec_hidden and part_z_size (each part's
    2-bar z)."""
    space = config.space
    network = {**NETWORK, **dict(config.network), **(overrides or {})}
    if network.get("stacked"):  # its encoder pads the last bar's window with "nothing new"
        nothing = space.encoder_features(np.zeros((1, 1), int))[0, 0]
        network["pad_hot"] = tuple(int(i) for i in np.flatnonzero(nothing))
    if network.get("stacked") and space.kind == "trio":
        sizes = {key: network.pop(key) for key in ("enc_hidden", "dec_hidden", "part_z_size")}
        return PartsVAENet(space.input_size, space.num_classes, trio_parts(space, sizes),
                           **network)
    return MusicVAENet(space.input_size, space.num_classes, **network)


def trio_parts(space: VaeSpace, sizes: dict) -> list[dict]:
    """PartsVAENet's parts for a trio space: each part's columns of the
    input features and of the logits, and its 2-bar model's sizes."""
    inputs = np.cumsum([0, space.pitch_classes, space.pitch_classes, NUM_DRUM_CLASSES])
    classes = np.cumsum([0, *space.segments])
    return [{"name": name, "inputs": [int(inputs[k]), int(inputs[k + 1])],
             "classes": [int(classes[k]), int(classes[k + 1])], "z_size": sizes["part_z_size"],
             "enc_hidden": sizes["enc_hidden"], "dec_hidden": sizes["dec_hidden"]}
            for k, name in enumerate(TRIO_PARTS)]


def donor_network(model: MusicVAENet, init_from: Path | None) -> MusicVAENet | None:
    """The network of the `--init-from` export when it is `model` with
    another decoder hierarchy (its card's hyperparameters say so; keys an
    older card lacks take the network's defaults): a 16-bar model then
    takes a 2-bar one's encoder, bar decoder and output layer, and only
    its conductor (and a stacked model's summary) starts afresh (see
    warm_start.take_matching); a stacked model's z may differ from the
    2-bar one's. None otherwise: the same network loads whole, and any
    other difference is refused there. UsageError when more than those
    would start afresh (the bar decoder's embedding is not the size of
    the file's), or when a stacked model is offered anything but a flat
    2-bar model to stand on."""
    card = card_beside(init_from) if init_from is not None else {}
    if not card:
        return None
    defaults = {name: parameter.default for name, parameter
                in inspect.signature(MusicVAENet).parameters.items()}
    given = card.get("hyperparameters", {})
    theirs = {key: given.get(key, defaults.get(key)) for key in model.config}
    differ = {key for key, value in model.config.items() if theirs[key] != value}
    hierarchy = set(HIERARCHY_KEYS) | ({"z_size"} if model.config.get("stacked") else set())
    if any(value is None or value is inspect.Parameter.empty for value in theirs.values()) \
            or not differ - {"dropout"} or differ - hierarchy:
        return None
    if model.config.get("stacked") and (theirs["bars"] != 1 or theirs.get("stacked")):
        raise UsageError(f"{init_from} is a {theirs['bars']}-bar model; a stacked model stands "
                         "on a 2-bar one", hint="--init-from music_vae:mel_2bar")
    donor = MusicVAENet(**theirs)
    shapes = {name: value.shape for name, value in donor.state_dict().items()}
    unfit = [name for name, value in model.state_dict().items()
             if not name.startswith(FRESH) and shapes.get(name) != value.shape]
    if unfit:
        raise UsageError(f"{init_from} has a bar decoder for embeddings of "
                         f"{donor.embedding_size}, this network's conductor gives "
                         f"{model.embedding_size}: {', '.join(unfit)} would start at random",
                         hint="start from a model whose z is as wide as this conductor")
    return donor


def _schedule(request: VaeRequest) -> tuple[VaeRequest, VaeLoss]:
    """The request with its scheduled-sampling rate settled (given, else the
    one the run folder's run trained with, else the config's) and its loss.
    A run validated one way cannot resume validated the other: its best
    figure would not compare (a free-running NLL is far above a teacher-
    forced one, so the old best would never be beaten)."""
    path = resumable(request.run_dir)
    earlier = torch.load(path, weights_only=True, map_location="cpu") if path else {}
    if request.sampling_rate is None and "sampling_rate" in earlier:
        request = replace(request, sampling_rate=earlier["sampling_rate"])
    config = request.config
    loss = scheduled_loss(config if request.sampling_rate is None
                          else replace(config, sampling_rate=request.sampling_rate))
    validated = earlier.get("validation", "teacher-forced")
    if path is not None and validated != loss.validation:
        raise UsageError(f"{request.run_dir} holds a run validated {validated}, and this one "
                         f"would be validated {loss.validation} (scheduled sampling on or off)",
                         hint="pass --fresh, or start a new --run-dir with --init-from")
    return request, loss


def export_graph(model: MusicVAENet, path: Path) -> None:
    """The network as one ONNX file (see MusicVAENet.forward), atomically."""
    c = model.config
    layers, hidden = c["dec_layers"], c["dec_hidden"]
    steps = 2 * c["bars"] if c.get("stacked") else 3  # a stacked encoder reads whole bars
    example = (torch.zeros(2, steps, c["input_size"]), torch.zeros(2, c["z_size"]),
               torch.zeros(2, model.embedding_size), torch.zeros(2, 3, c["input_size"]),
               torch.zeros(layers, 2, hidden), torch.zeros(layers, 2, hidden))
    dynamic = {"sequence": {0: "windows", 1: "steps"}, "mu": {0: "windows"},
               "sigma": {0: "windows"}, "z": {0: "latents"}, "embeddings": {0: "latents"},
               "embedding": {0: "batch"}, "step_inputs": {0: "batch", 1: "time"},
               "logits": {0: "batch", 1: "time"}}
    for name in ("state_h", "state_c", "state_h0", "state_c0", "state_h_out", "state_c_out"):
        dynamic[name] = {1: "batch"}
    export_onnx(model.eval(), example, Path(path), list(GRAPH_INPUTS), list(GRAPH_OUTPUTS), dynamic)


def parity_error(model: MusicVAENet, path: Path, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| over every output, for random inputs
    with batch and lengths the export did not see."""
    from mtools.runtime import load_session

    rng = np.random.default_rng(seed)
    c = model.config
    shapes = [(5, 32, c["input_size"]), (4, c["z_size"]), (3, model.embedding_size),
              (3, 7, c["input_size"]), (c["dec_layers"], 3, c["dec_hidden"]),
              (c["dec_layers"], 3, c["dec_hidden"])]
    inputs = [rng.normal(size=shape).astype(np.float32) * 0.5 for shape in shapes]
    with torch.no_grad():
        expected = model.eval()(*(torch.from_numpy(x) for x in inputs))
    session = load_session(path, inputs=list(GRAPH_INPUTS), outputs=list(GRAPH_OUTPUTS),
                           device="cpu")
    got = session.run(dict(zip(GRAPH_INPUTS, inputs)))
    return max(float(np.abs(got[name] - want.numpy()).max())
               for name, want in zip(GRAPH_OUTPUTS, expected))


def export_music_vae(request: VaeRequest, model: MusicVAENet, history, train_windows: int,
                     valid: np.ndarray, progress: Progress, init: dict | None = None) -> Path:
    from mtools.models.music_vae import MusicVae, vae_figures
    from mtools.models.registry import resolve_model

    config = request.config
    request.out_dir.mkdir(parents=True, exist_ok=True)
    path = request.out_dir / f"{model_stem('music_vae', config.name)}.onnx"
    with whole_export(path):
        error = export_checked(model, path, export_graph, parity_error)
        card = _card(request, model, history, train_windows, len(valid))
        if init is not None:
            card["training"]["initialised_from"] = init
        write_card(card, path)
        progress(f"measuring reconstruction on {len(valid)} validation windows")
        net = MusicVae.from_ref(resolve_model(str(path)), device="cpu")
        card["metrics"] = {**vae_figures(net, valid), "split": "valid",
                           "parity_max_abs_error": float(f"{error:.2e}"),
                           "protocol": GROOVE_PROTOCOL if config.space.kind == "groove"
                           else RECONSTRUCTION_PROTOCOL,
                           "measured_by": "mtools train (at export); reproduce: mtools eval --model "
                                          f"{config.spec} {' '.join(request.sources)} --split valid"}
        write_card(card, path)
    progress(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {card['metrics']}")
    return path


RECONSTRUCTION_PROTOCOL = (
    "Every window of the valid pieces (bar-aligned, untransposed, empty ones left out) is "
    "encoded to its posterior mean z. accuracy_teacher_forced: share of steps whose most likely "
    "class given z and the true previous steps is the true class. accuracy_sampled: share of "
    "steps right when the decoder runs free from z, taking its most likely class at every step. "
    "event_accuracy_*: the same over only the steps where a note starts or stops (melody) or a "
    "drum is struck (drums). A trio counts (step, part) cells, and <part>_accuracy_* each "
    "part's steps alone; its nll_per_step sums the parts. "
    "kl_per_window: KL(q(z|x) || N(0, I)) in nats; nll_per_step: teacher-forced, nats.")


TRIO_DATA = (
    "no trio corpus exists here: each 4/4 or 2/4 lead sheet of the datasets (its melody and "
    "a chord per step) had its chords played by MMA (Debian's mma) in 2 of 25 standard-library "
    "grooves with a drum kit and a bass (mtools.training.trios.GROOVES, chosen per tune by a "
    "hash); the trio is the tune's melody, MMA's bass line and MMA's drums on the 16th grid. "
    "The bass and drums are therefore MMA's pattern-based accompaniment, not players'. Since "
    "trios FORMAT 3 MMA's random timing, volumes and skips are seeded per tune and groove "
    "(the same data on every machine with the same mma: trio_mma names the version).")


GROOVE_PROTOCOL = (
    "Every 2-bar window of the valid drum tracks (bar-aligned, with at least one hit) is "
    "encoded from what the encoder reads (quantized hits for humanize, taps for drumify) to its "
    "posterior mean and decoded greedily, as the command does: humanize plays the true hits "
    "(only velocity and timing are the model's); drumify chooses hits (a hit where p > 1/2), "
    "scored by hit_precision/recall/f1 against the drummer's. velocity_mae (MIDI units) and "
    "offset_mae_steps (16ths) over the true hits played; baselines on the same hits: every hit "
    "at its class's mean velocity over the windows, every hit exactly on the grid. "
    "kl_per_window in nats.")


def _trios_mma(sources) -> str | None:
    """The MMA version that made the sources' cached trios ("21.09"; versions
    joined by " / " if they differ), None where unrecorded."""
    versions = sorted({version for version in map(cached_mma_version, sources) if version})
    return " / ".join(versions) or None


def _card(request: VaeRequest, model: MusicVAENet, history, train_windows: int,
          valid_windows: int) -> dict:
    config = request.config
    rate = config.sampling_rate if request.sampling_rate is None else request.sampling_rate
    return {
        "name": "music_vae", "config": config.name, "task": config.task,
        "default": config.name == DEFAULT_CONFIG, "description": config.description,
        "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
        "hyperparameters": {**model.config, "architecture": architecture(model),
                            "beta": config.beta, "free_bits_nats": config.free_bits,
                            **({"scheduled_sampling": f"inverse sigmoid, rate {rate:g} (see "
                                "mtools.training.music_vae.VaeLoss)"} if rate > 0 else {})},
        "encoding": config.space.to_card(),
        "training": {
            "datasets": list(request.sources),
            **({"trio_data": TRIO_DATA, "trio_mma": _trios_mma(request.sources)}
               if config.space.kind == "trio" or config.trio_part else {}),
            "split": "the pieces' fixed train/valid split (see mtools.training.corpora); "
                     "windows of train pieces train, windows of valid pieces select and measure",
            "windows": f"{config.space.steps} steps starting on every 16-step bar line of pieces "
                       "whose bar divides 16 steps (training windows: every "
                       f"{config.train_hop} steps), each piece padded with silence to whole "
                       "bars; a window starting inside a held note strikes it; melodies "
                       f"transposed by up to ±{TRANSPOSE} semitones while training",
            "train_windows": train_windows, "valid_windows": valid_windows,
            "best_valid_loss_per_window": round(history.best_valid, 4),
            "valid_loss": "free-running" if rate > 0 else "teacher-forced",
            **run_card(history, request.loop, reproduce_command(request)),
        },
        "metrics": {},
    }


def reproduce_command(request: VaeRequest) -> str:
    words = ["mtools", "train", "music_vae", "--config", request.config.name]
    for source in request.sources:
        words += ["--data", source]
    words += loop_words(request.loop, LOOP)
    network = request.network or {}
    if network.get("dec_hidden", NETWORK["dec_hidden"]) != NETWORK["dec_hidden"]:
        words += ["--hidden", str(network["dec_hidden"])]
    if network.get("dec_layers", NETWORK["dec_layers"]) != NETWORK["dec_layers"]:
        words += ["--layers", str(network["dec_layers"])]
    if "dropout" in network:
        words += ["--dropout", f"{network['dropout']:g}"]
    if request.sampling_rate is not None:
        words += ["--scheduled-sampling-rate", f"{request.sampling_rate:g}"]
    if request.init_from is not None or request.init_spec is not None:
        words += ["--init-from", request.init_spec or request.init_from.name]
    for path, spec in request.parts_from:
        words += ["--init-from", spec or path.name]
    if request.loop.max_steps == 0:  # the start alone (a stacked model's principal start)
        words += ["--max-steps", "0", "--out", "DIR"]
    else:
        words += ["--max-minutes", f"{request.loop.max_minutes:g}", "--out", "DIR"]
    return " ".join(shlex.quote(word) for word in words)
