"""`mtools train`: train a model from data, export it to ONNX with its card."""

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt

HELP = """Train a model on data and export it (ONNX + model card).

Data sources: music21:folk (the folk tunes of music21's corpus), nottingham
and groove (from $MTOOLS_DATA or ../shared/data), or a folder/file of MIDI,
JSONL, ABC or MusicXML. Coconet trains on chorales: jsb (the JSB chorales'
train part; its valid part selects and measures), js_fakes, or a
Coconet-style .npz with train and valid parts. MusicVAE trains on every
bar-aligned window of the melodies (mel_2bar, mel_16bar), drum tracks
(drums_2bar, groovae, groovae_tap) or trios (trio_16bar: the lead sheets'
melodies with bass and drums that MMA plays on their chords, needs
apt-get install mma; bass_2bar and trio_drums_2bar: their bass lines or drum
parts alone, the bundled 2-bar models trio_16bar is built on).
onsets_frames trains on ASAP piano performances rendered to audio with
several soundfonts and room/microphone/noise augmentation (--hours of it,
rendered once and cached; one soundfont and 10% of the pieces are held out);
onsets_frames_drums the same way on Groove MIDI's drum performances; their
--config picks the network's size ("" the first one, 1.1 M parameters;
wide, 5.3 M).
Parsed data is cached under $MTOOLS_CACHE/data (default ~/.cache/mtools);
checkpoints go to --run-dir (default $MTOOLS_CACHE/runs/NAME) every few
minutes and when the run is stopped (Ctrl-C, SIGTERM), and a stopped run
resumes from there. Files of the data that cannot be read are named and
left out. The exported model goes to
--out as NAME-CONFIG.onnx with its card; use it with --model PATH, or put
the folder on $MTOOLS_MODEL_PATH. Needs the train extra (torch).

Examples:

\b
  mtools train melody_rnn --config basic_rnn --out models/
  mtools train melody_rnn --config lookback_rnn --data nottingham --data my_tunes/ --out models/
  mtools train melody_rnn --max-minutes 30 --out models/   # resumes next time
  mtools train drums_rnn --config attention_kit --max-minutes 65 --out models/
  mtools train coconet --data jsb --max-minutes 120 --out models/
  mtools train coconet --data jsb --data js_fakes --init-from coconet --run-dir ft/ --out models/
  mtools train music_vae --config drums_2bar --data groove --out models/
  mtools train music_vae --config drums_2bar --init-from music_vae:drums_2bar --run-dir ft/ --out models/
  mtools train improv_rnn --init-from improv_rnn:attention_improv --dropout 0.2 --run-dir ft/ --out models/
  mtools train music_vae --config drums_2bar --learning-rate 3e-4 --out models/   # resume slower
  mtools train music_vae --config mel_16bar --init-from music_vae:mel_2bar --max-steps 0 --out models/
  mtools train music_vae --config bass_2bar --init-from music_vae:mel_2bar --out models/
  mtools train music_vae --config trio_16bar --init-from music_vae:mel_2bar \\
      --init-from music_vae:bass_2bar --init-from music_vae:trio_drums_2bar \\
      --max-steps 0 --out models/
  mtools train onsets_frames --hours 12 --max-minutes 240 --out models/
  mtools train onsets_frames --config wide --max-minutes 150 --out models/   # 5.3 M parameters
  mtools train onsets_frames --config wide --init-from onsets_frames:wide --run-dir ft/ \\
      --out models/   # train the bundled model on
  mtools train onsets_frames --config wide --init-from models/onsets_frames.onnx \\
      --run-dir ft/ --out models/   # widened from a small export
  mtools train onsets_frames_drums --hours 4 --out models/
  mtools train onsets_frames_drums --init-from onsets_frames_drums --balance-onsets 0.1 \\
      --run-dir ft/ --out models/   # rare drum classes weigh more
"""


PARSING = "parsing "  # the progress lines of corpus parsing (see mtools.training.run)


def _positive(value: float | None) -> float | None:
    """Option callback: a finite number above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a number above 0")
    return value


def train(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The family to train, e.g. melody_rnn.")],
    config: Annotated[Optional[str], typer.Option(
        "--config", metavar="CONFIG", help="The configuration (default: the family's default).")] = None,
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", metavar="SOURCE", help="A data source; repeat for several (default: the model's own).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", metavar="DIR", help="Where the .onnx and its card are written.")] = Path("models"),
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", metavar="DIR", help="Checkpoint folder (resumed when it holds a run).")] = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Discard the run folder's checkpoints and start over.")] = False,
    max_minutes: Annotated[Optional[float], typer.Option(
        "--max-minutes", callback=opt.finite, min=0.0, metavar="M", help="Stop when the run has trained M minutes in all (a resumed run counts its earlier minutes), then export.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        "--max-steps", min=0, metavar="N", help="Stop after N optimizer steps in all.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, metavar="N",
                                                      help="Crops per optimizer step.")] = None,
    hidden: Annotated[Optional[int], typer.Option("--hidden", min=1, metavar="N",
                                                  help="LSTM units per layer (coconet: filters; music_vae: encoder and decoder; onsets_frames: each direction).")] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", min=1, metavar="N",
                                                  help="LSTM layers (coconet: convolution layers; music_vae: decoder layers).")] = None,
    dropout: Annotated[Optional[float], typer.Option(
        "--dropout", callback=opt.finite, min=0.0, max=0.9, metavar="P",
        help="Event RNNs and music_vae: dropout between layers while training (default: the "
             "config's; the exported network is the same either way).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        "--learning-rate", callback=_positive, metavar="LR",
        help="Adam's learning rate (default: the model's). On a resumed run it replaces the "
             "rate the plateau decay had reached, from the step it resumes at (the card lists "
             "such changes).")] = None,
    hours: Annotated[Optional[float], typer.Option(
        "--hours", callback=opt.finite, min=0.01, metavar="H",
        help="onsets_frames: hours of rendered training audio (validation: always 1 h, so "
             "the held-out pieces the card is measured on stay the same).")] = None,
    balance_onsets: Annotated[Optional[float], typer.Option(
        "--balance-onsets", callback=opt.finite, min=0.0, max=1.0, metavar="SHARE",
        help="onsets_frames, onsets_frames_drums: a key (drum class) whose share of the "
             "training onsets is under SHARE has its onsets weigh sqrt(SHARE / share) in the "
             "onset loss, at most 4x, so rare ones (crash, open hi-hat) are learned too; e.g. "
             "0.1 for drums (8 classes), 0.01 for piano (88 keys). Default: a new run 0 (all "
             "weigh 1), a resumed run its own.")] = None,
    init_from: Annotated[Optional[list[str]], typer.Option(
        "--init-from", metavar="MODEL",
        help="Start a new run from the weights of this export (a bundled name such as "
             "music_vae:drums_2bar, coconet or onsets_frames, or an .onnx path; int8 and "
             "float16 weights are read back as floats; batch norms, folded into the "
             "convolutions at export, are measured again on training crops) instead of at "
             "random; checked by parity, ignored when the run folder holds a run to resume. "
             "A wider onsets_frames (--config wide) starts from a narrower export as the same "
             "function, each unit copied (Net2Net); a deeper coconet starts from one with "
             "fewer blocks the same way, each new block the identity. "
             "mel_16bar starts from a 2-bar melody model: it takes the encoder, bar decoder "
             "and output layer, and its summary and conductor start at the principal "
             "components of the 2-bar model's codes of the training windows (--max-steps 0: "
             "that start alone, as bundled). trio_16bar starts the same way from three 2-bar "
             "models, one --init-from each, in order: melody, bass, drums.")] = None,
    sampling_rate: Annotated[Optional[float], typer.Option(
        "--scheduled-sampling-rate", callback=opt.finite, min=0.0, metavar="K",
        help="music_vae: scheduled sampling's inverse-sigmoid rate (the chance of a true "
             "decoder input at step s is K / (K + exp(s / K)); 0 = always the true input; "
             "default: the config's).")] = None,
    export_only: Annotated[bool, typer.Option(
        "--export-only",
        help="Export the run's best checkpoint without training more. Weights saved since the "
             "last validation are scored first and become the best if they beat it (so stop a "
             "run that is still training before exporting from its folder).")] = False,
    device: Annotated[str, typer.Option(
        "--device", metavar="DEVICE",
        help="Where torch trains: auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or "
             "cuda:N. Checkpoints have the same format either way (a run may resume on "
             "another device); --seed repeats a run exactly on the CPU only.")] = "auto",
    seed: opt.Seed = None,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    import sys

    from mtools.training.loop import TrainConfig
    from mtools.training.run import TrainRequest, default_run_dir, train_model, with_limits
    from mtools.training.tasks import find_spec

    def say(message: str) -> None:
        if quiet or (message.startswith(PARSING) and not sys.stderr.isatty()):
            return  # a file-by-file count is for a terminal, not for a log (952 lines)
        print(f"mtools train: {message}", file=sys.stderr, flush=True)

    _check_family(model)
    device = _train_device(device)
    inits = list(init_from or [])  # music_vae's trio takes one per part; the rest one
    init_from = inits[0] if inits else None
    if model != "music_vae" and sampling_rate is not None:
        from mtools.errors import UsageError
        raise UsageError("--scheduled-sampling-rate applies to music_vae only")
    if model in ("coconet", "onsets_frames", "onsets_frames_drums") and dropout is not None:
        from mtools.errors import UsageError
        raise UsageError(f"--dropout does not apply to {model}")
    if balance_onsets is not None and model not in ("onsets_frames", "onsets_frames_drums"):
        from mtools.errors import UsageError
        raise UsageError(f"--balance-onsets does not apply to {model}")
    if len(inits) > 1 and model != "music_vae":
        from mtools.errors import UsageError
        raise UsageError(f"--init-from names one model for {model}, not {len(inits)}")
    if hours is not None and model not in ("onsets_frames", "onsets_frames_drums"):
        from mtools.errors import UsageError
        raise UsageError(f"--hours does not apply to {model}",
                         hint="it is the rendered audio of the transcription models")
    _check_out(out)  # before any parsing or training: the export would fail only at the end
    from mtools.training import corpora
    corpora.report_unreadable(lambda why: say(f"warning: left out {why}"))

    try:
        limits = {"max_minutes": max_minutes, "max_steps": 0 if export_only else max_steps,
                  "batch_size": batch_size, "seed": seed, "device": device,
                  "learning_rate": learning_rate, "resume_learning_rate": learning_rate}
        if model == "coconet":
            network = {k: v for k, v in {"filters": hidden, "layers": layers}.items() if v is not None}
            _train_coconet(data, out, run_dir, fresh, limits, network, say, init_from)
            return
        from mtools.training.render_sources import INSTRUMENTS

        if model in INSTRUMENTS:
            from mtools.training.transcription import DEFAULT_HOURS

            if layers is not None:
                from mtools.errors import UsageError
                raise UsageError(f"{model} has one LSTM layer per head: --layers does not apply")
            network = {"lstm": hidden} if hidden is not None else {}
            hours_pair = (hours or DEFAULT_HOURS[0], DEFAULT_HOURS[1])
            _train_transcriber(INSTRUMENTS[model], config or "", out, run_dir, fresh, limits,
                               network, hours_pair, say, init_from, balance_onsets)
            return
        if model == "music_vae":
            network = {k: v for k, v in {"enc_hidden": hidden, "dec_hidden": hidden,
                                         "dec_layers": layers, "dropout": dropout}.items()
                       if v is not None}
            _train_music_vae(config, data, out, run_dir, fresh, limits, network, say, inits,
                             sampling_rate)
            return
        spec = find_spec(model, config)
        loop = with_limits(TrainConfig(), **limits)
        network = {k: v for k, v in {"hidden": hidden, "layers": layers, "dropout": dropout}.items()
                   if v is not None}
        init = _init_path(init_from)
        request = TrainRequest(spec, tuple(data or spec.default_sources), out,
                               run_dir or default_run_dir(spec), loop, network, fresh, init, init_from)
        train_model(request, progress=say)
    finally:
        corpora.report_unreadable(None)


def _check_family(model: str) -> None:
    """An unknown family is a usage error naming every trainable one."""
    from mtools.errors import UsageError
    from mtools.training.render_sources import INSTRUMENTS
    from mtools.training.tasks import model_specs

    families = {spec.split(":")[0] for spec in model_specs()} | {"coconet", "music_vae"} \
        | set(INSTRUMENTS)
    if model not in families:
        raise UsageError(f"no trainable model {model!r}",
                         hint=f"train one of {', '.join(sorted(families))}; --config picks "
                              "its configuration")


def _check_out(out: Path) -> None:
    """--out must be a folder, or a place where one can be made."""
    from mtools.errors import UsageError

    for place in (out, *out.parents):
        if place.is_dir():
            return
        if place.exists():
            raise UsageError(f"--out {out}: {place} is a file, not a folder")


def _init_path(init_from: str | None):
    """The .onnx file `--init-from` names (a registry name or a path), or None."""
    if init_from is None:
        return None
    from mtools.models.registry import resolve_model

    return resolve_model(init_from).onnx_path


def _train_device(device: str) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"; others as given,
    a UsageError when torch cannot use them."""
    import torch

    from mtools.errors import UsageError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise UsageError(f"--device {device}: torch sees {count} CUDA GPU(s) here",
                             hint="--device cpu (torch " + torch.__version__ + ")")
    return device


def _train_coconet(data, out, run_dir, fresh, limits, network, say, init_from) -> None:
    from mtools.training.coconet import DEFAULT_SOURCES, LOOP, CoconetRequest, default_run_dir, \
        train_coconet
    from mtools.training.run import with_limits

    loop = with_limits(LOOP, **limits)
    init = _init_path(init_from)
    request = CoconetRequest(tuple(data or DEFAULT_SOURCES), out, run_dir or default_run_dir(),
                             loop, network, fresh, init, init_from)
    train_coconet(request, progress=say)


def _train_transcriber(instrument, config, out, run_dir, fresh, limits, network, hours,
                       say, init_from, balance_onsets) -> None:
    from mtools.training.run import with_limits
    from mtools.training.transcription import LOOP, TranscriptionRequest, crop_frames, \
        default_run_dir, network_of, train_transcriber

    network_of(config)  # an unknown config stops here, before any rendering
    loop = with_limits(LOOP, **limits, crop_steps=crop_frames(instrument))
    request = TranscriptionRequest(instrument, out, run_dir or default_run_dir(instrument, config),
                                   loop, network or None, hours, fresh, config,
                                   _init_path(init_from), init_from,
                                   balance_onsets=balance_onsets)
    train_transcriber(request, progress=say)


def _train_music_vae(config, data, out, run_dir, fresh, limits, network, say, inits,
                     sampling_rate) -> None:
    from mtools.training.music_vae import LOOP, VaeRequest, default_run_dir, train_music_vae
    from mtools.training.vae_windows import find_config
    from mtools.training.run import with_limits

    vae = find_config(config)
    loop = with_limits(LOOP, **limits)
    one = inits[0] if len(inits) == 1 else None  # several: one per part of a trio
    request = VaeRequest(vae, tuple(data or vae.default_sources), out,
                         run_dir or default_run_dir(vae), loop, network, fresh,
                         init_from=_init_path(one), init_spec=one, sampling_rate=sampling_rate,
                         parts_from=tuple((_init_path(spec), spec) for spec in inits
                                          if len(inits) > 1))
    train_music_vae(request, progress=say)


train.__doc__ = HELP
