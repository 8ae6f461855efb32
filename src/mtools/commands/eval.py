"""`mtools eval`: score a model on data."""

from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt

HELP = """Score a model on data (--model, default melody_rnn): NLL per step
and next-event accuracy (event models), Coconet's frame-wise NLL,
MusicVAE's reconstruction accuracy, or transcription F1.

DATA is a folder or file of MIDI/JSONL/ABC/MusicXML, or a corpus name
(music21:folk, nottingham, groove). --split picks the pieces the training
split set aside for validation (valid), the training pieces (train), or
everything (all, the default for your own folders). The figures are those
the model cards record: NLL in nats per predicted event (all classes that
decode to the same event summed), and how often the most likely event is
the true one. For coconet, DATA is jsb (the JSB chorales), js_fakes, a
Coconet-style .npz, or four-part MIDI/JSONL; it prints the frame-wise NLL
(nats per 16th-note frame, random frame and voice order; see the model
card for the protocol) and the NLL per note. For music_vae it prints the
reconstruction accuracies of every 2-bar window (teacher-forced and free
running from the posterior mean) and the KL term. For onsets_frames
(`mtools eval transcribe ...` picks it), DATA is audio with its reference
MIDI: --ref REF.mid per audio file, or a folder where each audio file has
a MIDI file of the same name beside it, or asap (held-out ASAP
performances rendered with the held-out soundfont, none of a piece the
model's card says it chose on; groove for the drum model; --soundfont
picks another held-out soundfont or kit, such as SalamanderGrandPianoV3, a
recorded grand piano fetched on first use); it prints mir_eval's note
precision/recall/F1 (onsets within 50 ms), with offsets, with velocities,
and frame F1, averaged over pieces. Prints one JSON object (--json) or a
short table.

Examples:

\b
  mtools eval --model melody_rnn:basic_rnn nottingham --split valid
  mtools eval --model melody_rnn my_tunes/ --json | jq .nll_per_step
  mtools eval --model coconet jsb --split valid
  mtools eval --model music_vae:drums_2bar groove --split valid
  mtools eval transcribe --ref piano.mid piano.wav
  mtools eval transcribe recordings/ --json | jq .note_f1
  mtools eval transcribe --ref piano.mid piano.wav --onset-threshold 0.4
  mtools eval transcribe --ref piano.mid piano.wav --harmonic-threshold 0   # keep every onset
  mtools eval --model onsets_frames_drums groove --split valid   # figures per drum class too
  mtools eval --model onsets_frames_drums groove --split valid --soundfont hydrogen:ForzeeStereo
  mtools eval --model onsets_frames asap --split valid --soundfont SalamanderGrandPianoV3
"""


SAMPLES = 32  # --samples' default


def eval_(
    data: Annotated[list[str], typer.Argument(metavar="DATA", help="Folders, files or corpus names.")],
    model: opt.Model = None,
    split: Annotated[str, typer.Option(
        "--split", metavar="PART", help="valid, train or all (pieces of the fixed split).")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    samples: Annotated[Optional[int], typer.Option(
        "--samples", min=1, metavar="N",
        help=f"coconet: Monte Carlo draws per piece for the frame-wise NLL (default {SAMPLES}).")] = None,
    references: Annotated[Optional[list[str]], typer.Option(
        "--ref", metavar="MIDI",
        help="transcription: the reference MIDI of each audio input, in order.")] = None,
    onset_threshold: Annotated[Optional[float], typer.Option(
        "--onset-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="transcription: decode with this onset threshold (default: the model's; it "
             "replaces a drum model's per-class ones for every class).")] = None,
    frame_threshold: Annotated[Optional[float], typer.Option(
        "--frame-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="transcription: decode with this frame threshold (default: the model's).")] = None,
    harmonic_threshold: Annotated[Optional[float], typer.Option(
        "--harmonic-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="transcription: decode with this harmonic threshold (default: the model's).")] = None,
    soundfont: Annotated[Optional[str], typer.Option(
        "--soundfont", metavar="NAME",
        help="transcription on asap or groove: render the held-out performances with this "
             "held-out soundfont or kit (default: the validation one; the model card "
             "names the others).")] = None,
    device: opt.DeviceOpt = None,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    import sys

    from mtools.errors import UsageError
    from mtools.models.registry import resolve_model
    from mtools.models.sequence import load_event_rnn
    from mtools.models.transcription import DecodeOptions
    from mtools.training.evaluate import evaluate_sources
    from mtools.training.tasks import find_spec

    if split not in ("valid", "train", "all"):
        raise UsageError(f"--split must be valid, train or all, not {split!r}")
    if "-" in data:
        raise UsageError("eval reads files, folders or corpus names, not standard input",
                         hint="name the file")
    if data and data[0] == "transcribe":  # `mtools eval transcribe ...`: the task's default model
        data = data[1:]
        model = model or "onsets_frames"
        if not data:
            raise UsageError("name the audio to score", hint="see mtools eval --help")
    model = model or "melody_rnn"
    ref = resolve_model(model)
    if samples is not None and ref.card.name != "coconet":
        raise UsageError("--samples is for coconet's frame-wise NLL")
    if ref.card.task == "transcribe":
        thresholds = DecodeOptions(onset_threshold, frame_threshold,
                                   harmonic_threshold=harmonic_threshold)
        figures = {"model": ref.card.spec, "data": data,
                   **transcription_figures(ref, data, references or [], split,
                                            device.value if device else None, thresholds,
                                            quiet, soundfont)}
        _print(figures, as_json)
        return
    if references or soundfont or any(t is not None for t in (onset_threshold, frame_threshold,
                                                              harmonic_threshold)):
        raise UsageError("--ref, --soundfont and the thresholds are for transcription models")
    if ref.card.name == "coconet":
        figures = {"model": ref.card.spec, "data": data, "split": split,
                   **_coconet_figures(ref, data, split, device.value if device else None,
                                     samples or SAMPLES)}
        _print(figures, as_json)
        _fail_on_unreadable(data)
        return
    if ref.card.name == "music_vae":
        figures = {"model": ref.card.spec, "data": data, "split": split,
                   **music_vae_figures(ref, data, split, device.value if device else None,
                                     quiet)}
        _print(figures, as_json)
        _fail_on_unreadable(data)
        return
    spec = find_spec(ref.card.name, ref.card.config or None)
    def parsing(done, total, what):
        print(f"\rmtools eval: parsing {done}/{total}", end="", file=sys.stderr, flush=True)

    progress = parsing if not quiet and sys.stderr.isatty() else None
    figures = {"model": ref.card.spec, "data": data, "split": split,
               **evaluate_sources(load_event_rnn(ref, device=device.value if device else None),
                                  spec, data, split, progress)}
    if progress is not None:
        print(file=sys.stderr)  # end the progress line
    if not figures.get("events"):
        from mtools.errors import InputFormatError
        raise InputFormatError(f"nothing in the {split} part of {' '.join(data)} that "
                               f"{ref.card.spec} can score (no readable line for it)",
                               hint=None if split == "all" else
                               "the fixed split may have put every piece in the other part: "
                               "try --split all")
    _print(figures, as_json)
    _fail_on_unreadable(data)


def _fail_on_unreadable(data: list[str]) -> None:
    """After the figures: each file of the folders and files named that
    could not be read, one line each on stderr, then exit 65 (a batch keeps
    going past a bad file and says so; the figures leave it out). The data
    sets' own odd files (named corpora) are left out quietly, as training
    leaves them."""
    from mtools.commands._batch import say
    from mtools.errors import InputFormatError
    from mtools.training.corpora import is_named_source, unreadable_files

    bad = [why for source in data if not is_named_source(source)
           for why in unreadable_files(source)]
    for why in bad:
        say(why)
    if bad:
        raise InputFormatError(f"{len(bad)} input file{'s' if len(bad) > 1 else ''} could not "
                               "be read: the figures above leave "
                               f"{'them' if len(bad) > 1 else 'it'} out")


def _print(figures: dict, as_json: bool) -> None:
    import json

    from mtools.io.streams import write_stdout

    if as_json:
        write_stdout(json.dumps(figures) + "\n")
    else:  # a nested figure (a drum model's by_class) gets a row per entry
        rows = [(f"{key} {sub}", _words(inner)) for key, value in figures.items()
                if isinstance(value, dict) for sub, inner in value.items()]
        rows = [(key, value) for key, value in figures.items() if not isinstance(value, dict)] + rows
        width = max(len(key) for key, _ in rows)
        write_stdout("".join(f"{key:>{width}}  {value}\n" for key, value in rows))


def _words(value) -> str:
    """A dict as 'key value key value', anything else as str()."""
    return " ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)


def _coconet_figures(ref, data: list[str], split: str, device, samples: int) -> dict:
    from mtools.errors import InputFormatError
    from mtools.models.coconet import Coconet, framewise_figures
    from mtools.training.chorales import load_chorales

    chorales = [c for source in data for c in load_chorales(source, split)]
    if not chorales:
        raise InputFormatError(f"no four-part pieces in the {split} part of {' '.join(data)}")
    net = Coconet.from_ref(ref, device=device)
    return framewise_figures(net, chorales, samples)


def music_vae_figures(ref, data: list[str], split: str, device, quiet: bool = False) -> dict:
    from dataclasses import replace

    from mtools.errors import InputFormatError
    from mtools.models.music_vae import MusicVae, VaeSpace, vae_figures
    from mtools.training.vae_windows import find_config, load_windows

    config = replace(find_config(ref.card.config), space=VaeSpace.from_card(ref.card.encoding))
    windows = load_windows(config, data, split)
    if not len(windows):
        raise InputFormatError(f"no {ref.card.config} windows in the {split} part of "
                               f"{' '.join(data)}")
    if not quiet:
        _warn_other_mma(ref, data)
    return vae_figures(MusicVae.from_ref(ref, device=device), windows)


def _warn_other_mma(ref, data: list[str]) -> None:
    """A warning when a trio model's card was measured on trios of another
    MMA version than the ones just read (MMA makes the bass and drums)."""
    from mtools.training.trios import cached_mma_version

    card_mma = ref.card.training.get("trio_mma")
    if not card_mma:
        return
    from mtools.commands._batch import say

    for source in data:
        made_by = cached_mma_version(source)
        if made_by != card_mma:
            say(f"warning: {ref.card.spec}'s card was measured on trios made by mma {card_mma}; "
                f"those of {source} here were made by "
                f"{'mma ' + made_by if made_by else 'an unrecorded mma'}: figures may differ")


def transcription_figures(ref, data: list[str], references: list[str], split: str,
                           device, thresholds, quiet: bool = False,
                           soundfont: str | None = None) -> dict:
    from mtools.errors import UsageError
    from mtools.models.onsets_frames import OnsetsFrames
    from mtools.models.transcription import CLASS_THRESHOLDS, THRESHOLDS
    from mtools.training.render_sources import INSTRUMENTS
    from mtools.training.transcription_metrics import audio_pairs, pieces_figures

    net = OnsetsFrames.from_ref(ref, device=device)
    net.decode = thresholds.over(net.decode)
    used = {name: getattr(net.decode, name) for name in THRESHOLDS}
    if net.decode.class_onset_thresholds is not None:  # by pitch, as by_class names them
        used[CLASS_THRESHOLDS] = {str(net.keys.pitch_of(index)): threshold for index, threshold
                                  in enumerate(net.decode.class_onset_thresholds)}
    instrument = INSTRUMENTS.get(ref.card.name)
    if instrument is not None and data == [instrument.corpus]:
        from mtools.training.renders import cached_manifest, card_valid_part, valid_pieces
        from mtools.training.transcription import EVAL_PIECES

        if split == "train":
            raise UsageError(f"{instrument.corpus} is scored on held-out performances only",
                             hint="--split valid")
        if soundfont is not None and soundfont not in instrument.held_out():
            raise UsageError(f"{soundfont} is not a held-out soundfont of {instrument.model}",
                             hint="held out: " + ", ".join(instrument.held_out()))
        chosen_on = card_valid_part(ref.card)
        if chosen_on is None and cached_manifest(instrument) is None and not quiet:
            from mtools.commands._batch import say

            say(f"warning: {ref.card.spec}'s card names no validation performances and none "
                "are cached: the held-out ones may include pieces it was chosen on")
        return {**used, "soundfont": soundfont or instrument.valid_soundfont,
                **pieces_figures(net, valid_pieces(EVAL_PIECES, instrument, soundfont=soundfont,
                                                   valid_part=chosen_on))}
    if soundfont is not None:
        corpora = ", ".join(sorted(i.corpus for i in INSTRUMENTS.values()))
        raise UsageError("--soundfont renders a corpus's held-out performances",
                         hint=f"name the corpus ({corpora})")
    rate = net.front_end.sample_rate_hz
    return {**used, **pieces_figures(net, _checked_lengths(
        audio_pairs(data, references, rate), rate, quiet))}


def _checked_lengths(pairs, sample_rate_hz: int, quiet: bool):
    """The (name, reference, audio) pairs, with a warning for each reference
    whose notes go on past the end of its audio (they can only be missed:
    often the wrong reference, or a clip of a longer recording)."""
    from mtools.commands._batch import say

    for name, reference, audio in pairs:
        seconds = len(audio) / sample_rate_hz
        late = sum(n.start_s >= seconds for n in reference.notes)
        if late and not quiet:
            say(f"{name}: warning: {late} of the reference's {len(reference.notes)} notes "
                f"start after the audio ends ({seconds:.1f} s); they count as missed")
        yield name, reference, audio


eval_.__doc__ = HELP
