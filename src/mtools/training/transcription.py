"""Training Onsets and Frames on rendered audio of an instrument (piano or
drums, see `mtools.training.renders`): random crops of the training renders,
the paper's loss (onset, frame and offset binary cross-entropy, velocity
squared error on the true onsets), validation on crops of the held-out
soundfont's renders, export to one ONNX graph checked against torch, and a
card whose figures are note-level scores on whole held-out performances
(`mtools.training.transcription_metrics`)."""

from __future__ import annotations

import functools
import json
import shlex
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.errors import InputFormatError, RuntimeUnavailableError, UsageError
from mtools.models.onsets_frames import GRAPH_INPUTS, GRAPH_OUTPUTS
from mtools.models.registry import write_card
from mtools.models.transcription import CLASS_THRESHOLDS
from mtools.training import corpora
from mtools.training.audio_augment import MEL_AUGMENTATION, MelAugmentation, augment_mel
from mtools.training.export import architecture, export_checked, export_onnx, run_card, \
    whole_export
from mtools.training.loop import TrainConfig, Trainer, load_best, loop_words, resumable
from mtools.training.nets import OnsetsFramesNet
from mtools.training.render_sources import Instrument
from mtools.training.warm_start import warm_start_folded
from mtools.training.widen import narrower_donor, widen_onsets_frames

Progress = Callable[[str], None]
DESCRIPTIONS = {"piano": "Piano audio → notes with velocities (Onsets and Frames, CPU-sized)",
                "drums": "Drum audio → GM drum hits with velocities (Onsets and Frames drums, "
                         "CPU-sized)"}
CROP_S = 5.12  # seconds per training crop (160 piano frames)
LOOP = TrainConfig(batch_size=8, crop_steps=160, learning_rate=6e-4, eval_every=500,
                   valid_crops=96, patience=8)
# Rendered audio for training and validation. Validation stays at 1 h whatever --hours:
# the card's held-out pieces are the valid pieces that part leaves (renders.valid_pieces).
DEFAULT_HOURS = (12.0, 1.0)
SPLITS = {"piano": "by piece: 10% of ASAP pieces (sha1 of the folder, repeat variants "
                   "together) are validation, rendered with a soundfont training never hears",
          "drums": "Groove MIDI's own train/validation split; validation rendered with a "
                   "drum kit training never hears (the card's figures also on a second "
                   "one, metrics.other_soundfonts)"}
# Network sizes by --config. "" (1.1 M parameters) is the first bundled one;
# "wide" (5.3 M): the paper's convolution widths (Hawthorne et al. 2018: 32
# and 64 channels), a wider acoustic layer and LSTMs. The small one
# underfits: on clean renders of performances it trained on, with a
# soundfont it trained on, its note F1 is 0.86 (README, Transcription).
NETWORKS = {"": {}, "wide": {"channels": (32, 64), "acoustic": 768, "lstm": 192}}
EVAL_PIECES = 12  # whole held-out performances the card's note figures come from
SELECTION_PIECES = 8  # performances of the cached valid part the thresholds are chosen on
CALIBRATION_CROPS = 64  # training crops that measure a warm start's batch norms again
ONSET_WEIGHT_CAP = 4.0  # --balance-onsets raises no key's onset weight above this


class CropBatches:
    """Batches for `Trainer` from a RenderSet: tensors mel (batch, frames,
    mel_bins) and onset, frame, offset, velocity (batch, frames, keys).
    With `mel_augmentation` (training batches), each crop's log-mel gets a
    timbre change of its own (augment_mel over the bands at `centres_hz`)."""

    def __init__(self, renders, config: TrainConfig,
                 mel_augmentation: MelAugmentation | None = None,
                 centres_hz: np.ndarray | None = None):
        if mel_augmentation is not None and centres_hz is None:
            raise ValueError("mel augmentation needs the bands' centre frequencies")
        self.renders, self.config = renders, config
        self.mel_augmentation, self.centres_hz = mel_augmentation, centres_hz

    def batch(self, rng: np.random.Generator):
        crops = self.renders.batch(rng, self.config.batch_size, self.config.crop_steps)
        if self.mel_augmentation is not None:
            crops["mel"] = np.stack([augment_mel(mel, self.centres_hz, rng, self.mel_augmentation)
                                     for mel in crops["mel"]])
        return tuple(torch.from_numpy(np.ascontiguousarray(crops[name], np.float32))
                     for name in ("mel", "onset", "frame", "offset", "velocity"))

    def fixed_batches(self, count: int, seed: int = 1234):
        rng = np.random.default_rng(seed)
        return [self.batch(rng) for _ in range(max(1, count // self.config.batch_size))]


def transcription_loss(model: OnsetsFramesNet, batch, onset_weight: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE of onsets, frames and offsets over every (frame, key) cell,
    plus the velocity squared error averaged over the true onsets; the
    weight is the batch's number of frames. `onset_weight` (keys,)
    multiplies each key's true-onset cells in the onset BCE (see
    onset_pos_weights)."""
    mel, onset, frame, offset, velocity = batch
    onset_logits, frame_logits, offset_logits, velocity_out = model(mel)
    bce = nn.functional.binary_cross_entropy_with_logits
    if onset_weight is not None:
        onset_weight = onset_weight.to(onset_logits.device)
    loss = (bce(onset_logits, onset, pos_weight=onset_weight) + bce(frame_logits, frame)
            + bce(offset_logits, offset))
    loss = loss + (onset * (velocity_out - velocity) ** 2).sum() / onset.sum().clamp(min=1.0)
    return loss, torch.tensor(float(mel.shape[0] * mel.shape[1]))


@dataclass(frozen=True)
class TranscriptionRequest:
    instrument: Instrument
    out_dir: Path
    run_dir: Path
    loop: TrainConfig = LOOP
    network: dict | None = None
    hours: tuple[float, float] = DEFAULT_HOURS
    fresh: bool = False
    config: str = ""  # a key of NETWORKS
    init_from: Path | None = None  # an export of this network to start a new run from
    init_spec: str | None = None  # how --init-from named it (the card's command repeats it)
    mel_augmentation: MelAugmentation | None = MEL_AUGMENTATION  # per training crop
    balance_onsets: float | None = None  # onset_pos_weights' share; None: the run's own (new: 0)

    @property
    def file_stem(self) -> str:
        """NAME or NAME-CONFIG: the exported file's name and its run folder's."""
        return "-".join(filter(None, (self.instrument.model, self.config)))


def default_run_dir(instrument: Instrument, config: str = "") -> Path:
    return corpora.cache_dir() / "runs" / "-".join(filter(None, (instrument.model, config)))


def model_ref(request: TranscriptionRequest) -> str:
    """NAME or NAME:CONFIG, as --model names the exported file's card."""
    return ":".join(filter(None, (request.instrument.model, request.config)))


def network_of(config: str, lstm: int | None = None) -> dict:
    """OnsetsFramesNet keywords of a --config (and --hidden, the LSTM width)."""
    if config not in NETWORKS:
        known = ", ".join(repr(name) if not name else name for name in NETWORKS)
        raise UsageError(f"unknown transcription config {config!r}", hint=f"one of: {known}")
    return {**NETWORKS[config], **({"lstm": lstm} if lstm is not None else {})}


def crop_frames(instrument: Instrument) -> int:
    """Frames per training crop: CROP_S at the instrument's frame rate."""
    return round(CROP_S / instrument.front_end.frame_s)


def onset_pos_weights(onset: np.ndarray, share: float) -> np.ndarray:
    """Per key, the weight of its true onsets in the onset loss: a key with
    under `share` of the training onsets gets sqrt(share / its share), at
    most ONSET_WEIGHT_CAP (a key with none gets the cap); the rest 1. So a
    drum class heard rarely (crash, open hi-hat) is not left under the
    threshold for the sake of the common ones. `onset` is (frames, keys);
    a share of 0 weighs every key 1."""
    if share <= 0:
        return np.ones(onset.shape[1], np.float32)
    counts = onset.sum(axis=0, dtype=np.int64)  # no copy of a memory-mapped array
    if not counts.sum():
        raise InputFormatError("the training renders hold no onsets to balance")
    shares = counts / counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.sqrt(share / shares)
    return np.clip(weights, 1.0, ONSET_WEIGHT_CAP).astype(np.float32)


ONSET_WEIGHTING_FILE = "onset_weighting.json"  # in the run folder: its share and weights


def run_onset_weighting(request: TranscriptionRequest, onset: np.ndarray
                        ) -> tuple[TranscriptionRequest, np.ndarray | None]:
    """The request with the --balance-onsets share its run trains with, and
    the onset loss weights (None: all 1). A run with a checkpoint keeps the
    share and weights its folder recorded (none recorded: 0), and a
    different share asked of it is refused, since its validation losses
    would no longer compare. A new run computes them from the training
    onsets (onset_pos_weights) and, if it will train, records them."""
    path = request.run_dir / ONSET_WEIGHTING_FILE
    if resumable(request.run_dir) is not None:
        record = json.loads(path.read_text()) if path.is_file() else {"balance_onsets": 0.0}
        share = float(record["balance_onsets"])
        if request.balance_onsets not in (None, share):
            raise UsageError(f"the run in {request.run_dir} trained with --balance-onsets "
                             f"{share:g}, not {request.balance_onsets:g}",
                             hint="resume it with the same share, or start over with --fresh")
        weights = record.get("weights")
        return (replace(request, balance_onsets=share),
                None if weights is None else np.asarray(weights, np.float32))
    share = request.balance_onsets or 0.0
    weights = onset_pos_weights(onset, share) if share else None
    if request.loop.max_steps > 0:
        request.run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"balance_onsets": share, "weights": None if weights is None
                                    else [round(float(w), 6) for w in weights]}) + "\n")
    return replace(request, balance_onsets=share), weights


def train_transcriber(request: TranscriptionRequest, progress: Progress = lambda m: None) -> Path:
    """Render the data if needed, train (or resume), export, measure on
    held-out performances and write the card; returns the .onnx path."""
    from mtools.training import renders

    instrument = request.instrument
    if request.balance_onsets is not None and not 0.0 <= request.balance_onsets <= 1.0:
        raise UsageError(f"--balance-onsets takes a share from 0 to 1, not {request.balance_onsets}")
    if request.fresh and request.run_dir.exists():
        shutil.rmtree(request.run_dir)
    train_hours, valid_hours = request.hours
    if request.loop.max_steps > 0:  # --export-only trains on, and renders, nothing
        renders.build_renders(
            instrument, hours_train=train_hours, hours_valid=valid_hours,
            progress=lambda done_s, total_s, what: progress(f"rendering {what} ({done_s}/{total_s} s)"))
    else:  # the card's command names the hours the run trained on: those cached
        request = replace(request, hours=renders.cached_hours(instrument) or request.hours)
    train = renders.load_renders("train", instrument)
    valid = renders.load_renders("valid", instrument)
    progress(f"{len(train.segments)} training and {len(valid.segments)} validation segments")
    request, onset_weight = run_onset_weighting(request, train.onset)
    if onset_weight is not None:
        raised = [f"{instrument.keys.pitch_of(k)} {w:.2f}" for k, w in enumerate(onset_weight)
                  if w > 1]
        progress("onset loss weights by key: " + (", ".join(raised) or "all 1 (no key has "
                 f"under {request.balance_onsets:g} of the training onsets)"))
    available_test_soundfonts(instrument, progress)  # warn now of a card figure it cannot measure
    model = OnsetsFramesNet(instrument.front_end.mel_bins, instrument.keys.keys,
                            **network_of(request.config), **(request.network or {}))
    init = warm_start_folded(request.run_dir, model, request.init_from, request.init_spec,
                             parity_error, progress, lambda: [batch[:1] for batch in CropBatches(
                                 train, request.loop).fixed_batches(CALIBRATION_CROPS)],
                             narrower_donor(model, request.init_from), widen_onsets_frames)
    if init is not None and request.init_spec is None:  # resumed: the run still started there
        request = replace(request, init_spec=init.get("spec") or init["file"])
    trainer = Trainer(model, model.kind,
                      CropBatches(train, request.loop, request.mel_augmentation,
                                  instrument.front_end.band_centres_hz),
                      CropBatches(valid, request.loop), request.loop, request.run_dir,
                      extra={"spec": instrument.model}, progress=lambda history, message: progress(message),
                      loss_fn=functools.partial(
                          transcription_loss, onset_weight=None if onset_weight is None
                          else torch.from_numpy(onset_weight)),
                      validate_first=init is not None)
    if request.loop.max_steps > 0:
        note_mel_augmentation(request.run_dir, request.mel_augmentation, trainer.history.step)
    history = trainer.run()
    request = replace(request, loop=trainer.config)  # the rate the run started at
    best, trained_with = load_best(request.run_dir)
    return export_transcriber(replace(request, loop=trained_with), best, history, progress, init,
                              onset_weight)


MEL_AUGMENTATION_FILE = "mel_augmentation.json"  # in the run folder: since which step


def note_mel_augmentation(run_dir: Path, settings: MelAugmentation | None, step: int) -> None:
    """Record in the run folder that training from `step` on uses
    `settings` (None: no per-crop augmentation), unless the record before
    `step` already says so. Records from `step` on are dropped: a run
    resumed from an earlier checkpoint trains those steps again."""
    every = mel_augmentation_records(run_dir)
    kept = [r for r in every if r["step"] < step]
    current = None if settings is None else json.loads(json.dumps(asdict(settings)))  # as read
    if not kept or kept[-1]["settings"] != current:
        kept.append({"step": step, "settings": current})
    if kept != every:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MEL_AUGMENTATION_FILE).write_text(json.dumps(kept, indent=1) + "\n")


def mel_augmentation_records(run_dir: Path) -> list[dict]:
    """[{"step", "settings"}] in order; empty for a run from before the
    record existed (none of its steps had per-crop augmentation)."""
    path = run_dir / MEL_AUGMENTATION_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def export_graph(model: OnsetsFramesNet, path: Path) -> None:
    """The network as one ONNX file with dynamic batch and frames."""
    axes = {0: "batch", 1: "frames"}
    dynamic = {name: axes for name in (*GRAPH_INPUTS, *GRAPH_OUTPUTS)}
    example = (torch.zeros(2, 40, model.config["mel_bins"]),)
    export_onnx(model.eval(), example, Path(path), list(GRAPH_INPUTS), list(GRAPH_OUTPUTS), dynamic)


def parity_error(model: OnsetsFramesNet, path: Path, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| over the outputs for random log-mel
    input of a batch and length the export did not see."""
    from mtools.runtime import load_session

    mel = np.random.default_rng(seed).normal(-6.0, 3.0, size=(3, 77, model.config["mel_bins"]))
    mel = mel.astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(mel))
    session = load_session(path, inputs=list(GRAPH_INPUTS), outputs=list(GRAPH_OUTPUTS),
                           device="cpu")
    got = session.run({"mel": mel})
    return max(float(np.abs(got[name] - want.numpy()).max())
               for name, want in zip(GRAPH_OUTPUTS, expected))


def export_transcriber(request: TranscriptionRequest, model: OnsetsFramesNet, history,
                       progress: Progress, init: dict | None = None,
                       onset_weight: np.ndarray | None = None) -> Path:
    from mtools.models.onsets_frames import OnsetsFrames
    from mtools.models.registry import resolve_model
    from mtools.training.renders import valid_pieces
    from mtools.training.transcription_metrics import PROTOCOL, choose_thresholds, pieces_figures

    progress(f"rendering {SELECTION_PIECES} validation performances to choose thresholds on")
    selection = valid_pieces(SELECTION_PIECES, request.instrument, selection=True)
    request.out_dir.mkdir(parents=True, exist_ok=True)
    path = request.out_dir / f"{request.file_stem}.onnx"
    with whole_export(path):
        error = export_checked(model, path, export_graph, parity_error)
        card = _card(request, model, history)
        if init is not None:
            card["training"]["initialised_from"] = init
        if onset_weight is not None:
            card["training"]["onset_weighting"] = onset_weighting_card(
                request.instrument.keys, request.balance_onsets, onset_weight)
        write_card(card, path)
        net = OnsetsFrames.from_ref(resolve_model(str(path)), device="cpu")
        progress(f"choosing decoding thresholds on {len(selection)} validation performances")
        chosen = choose_thresholds(net, selection)
        card["encoding"]["decoding"] = {**chosen, "chosen_on": (
            "the performances of the cached validation renders (whose loss selects the "
            "checkpoint), rendered whole and clean with the held-out soundfont; metrics come "
            "from performances of other pieces")}
        write_card(card, path)
        net = OnsetsFrames.from_ref(resolve_model(str(path)), device="cpu")
        progress(f"transcribing {EVAL_PIECES} held-out performances for the card "
                 f"(onset threshold {chosen.get(CLASS_THRESHOLDS, chosen['onset_threshold'])}, "
                 f"frame {chosen['frame_threshold']}, harmonic {chosen.get('harmonic_threshold', 0.0)})")
        pieces = valid_pieces(EVAL_PIECES, request.instrument)
        card["metrics"] = {**pieces_figures(net, pieces), "split": "valid",
                           "soundfont": request.instrument.valid_soundfont,
                           "protocol": PROTOCOL, "parity_max_abs_error": float(f"{error:.2e}"),
                           "measured_by": "mtools train (at export); reproduce: mtools eval "
                                          f"--model {model_ref(request)} {request.instrument.corpus} "
                                          "--split valid [--soundfont NAME]"}
        if request.instrument.test_soundfonts:
            progress("transcribing them rendered with " + ", ".join(request.instrument.test_soundfonts)
                     + ", also held out")
        card["metrics"].update(other_soundfont_figures(net, request.instrument, progress))
        write_card(card, path)
    progress(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {card['metrics']}")
    return path


def onset_weighting_card(keys, share: float, weights: np.ndarray) -> dict:
    """The card's record of a run's --balance-onsets: the share, the cap
    and each key's weight, named by its pitch."""
    return {"balance_onsets": share, "cap": ONSET_WEIGHT_CAP,
            "weights": {str(keys.pitch_of(k)): round(float(w), 3) for k, w in enumerate(weights)},
            "note": "each key's true onsets weigh this much in the onset loss (BCE pos_weight): "
                    "sqrt(balance_onsets / the key's share of the training onsets), from 1 to "
                    "the cap; validation losses are weighted the same way"}


def available_test_soundfonts(instrument: Instrument,
                              progress: Progress = lambda m: None) -> tuple[str, ...]:
    """The instrument's further held-out soundfonts this machine has (or
    can fetch); each one missing is reported and left out, so a card
    without its figures never costs the training run."""
    from mtools.training.renders import soundfont_path

    found = []
    for name in instrument.test_soundfonts:
        try:
            soundfont_path(name)
        except RuntimeUnavailableError as error:
            progress(f"warning: {name} is unavailable, the card will not score it: {error}")
        else:
            found.append(name)
    return tuple(found)


def other_soundfont_figures(net, instrument: Instrument,
                           progress: Progress = lambda m: None, valid_part=None) -> dict:
    """{"other_soundfonts": {name: figures}}: the card's held-out
    performances rendered with each further held-out soundfont of the
    instrument this machine has; empty without one. `valid_part` as for
    renders.valid_pieces (a card's; None: the cached renders')."""
    from mtools.training.renders import valid_pieces
    from mtools.training.transcription_metrics import pieces_figures

    figures = {name: pieces_figures(net, valid_pieces(EVAL_PIECES, instrument, soundfont=name,
                                                      valid_part=valid_part))
               for name in available_test_soundfonts(instrument, progress)}
    return {"other_soundfonts": figures} if figures else {}


def _card(request: TranscriptionRequest, model: OnsetsFramesNet, history) -> dict:
    from mtools.training.renders import cached_manifest

    instrument = request.instrument
    manifest = cached_manifest(instrument)  # load_renders found it
    return {
        "name": instrument.model, "config": request.config, "task": "transcribe",
        "default": instrument.name == "piano", "description": DESCRIPTIONS[instrument.name],
        "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
        "hyperparameters": {**model.config, "architecture": architecture(model)},
        "encoding": {"front_end": instrument.front_end.to_card(), **instrument.keys.to_card(),
                     "labels": "notes lengthened by the sustain pedal (as heard); onset on "
                               "the note's nearest frame, offset on its end's"},
        "training": {
            "datasets": [f"{instrument.corpus} (rendered)"], "renders": manifest,
            "split": SPLITS[instrument.name],
            "mel_augmentation": {
                "from_steps": mel_augmentation_records(request.run_dir),
                "note": "a timbre change (EQ curve and gain over the mel bands) drawn for "
                        "each training crop, with these settings from each listed step on; "
                        "steps before the first listed one had none (compare best_step); "
                        "`command` applies the current settings from its first step"},
            "best_valid_loss": round(history.best_valid, 4),
            **run_card(history, request.loop, reproduce_command(request)),
        },
        "metrics": {},
    }


def reproduce_command(request: TranscriptionRequest) -> str:
    words = ["mtools", "train", request.instrument.model]
    words += ["--config", request.config] if request.config else []
    if request.init_from is not None or request.init_spec is not None:
        words += ["--init-from", request.init_spec or request.init_from.name]
    words += ["--hours", f"{request.hours[0]:g}", "--max-minutes", f"{request.loop.max_minutes:g}",
              "--out", "DIR"]
    words += ["--balance-onsets", f"{request.balance_onsets:g}"] if request.balance_onsets else []
    words += loop_words(request.loop, LOOP)
    lstm = network_of(request.config).get("lstm", OnsetsFramesNet().config["lstm"])
    if (request.network or {}).get("lstm") not in (None, lstm):
        words += ["--hidden", str(request.network["lstm"])]
    return " ".join(shlex.quote(word) for word in words)
