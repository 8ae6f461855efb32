"""Transcribing audio with an Onsets and Frames graph, in bounded memory:
audio is read in blocks, turned into log-mel frames as it arrives, and the
network runs on chunks of frames with context on both sides whose outputs
are dropped, so a one-hour recording never sits in memory as audio or as
a spectrogram. Only the per-frame predictions are kept (float16).

    model = OnsetsFrames.from_ref(resolve_model("onsets_frames"))
    with open_audio("song.wav") as audio:
        score = transcribe_source(model, audio, TranscribeOptions())
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from mtools.errors import ModelNotFoundError
from mtools.models.transcription import DRUM_INSTRUMENT, DecodeOptions, FrontEnd, KeySpace, \
    decode_notes, sigmoid
from mtools.score import InstrumentInfo, Score, Tempo, make_score

TASK = "transcribe"
GRAPH_INPUTS = ("mel",)
GRAPH_OUTPUTS = ("onset_logits", "frame_logits", "offset_logits", "velocity")
CHUNK_FRAMES = 512  # frames the network sees at once, before context (16.4 s at hop 512)
CONTEXT_FRAMES = 32  # frames either side whose outputs are dropped (1 s): recurrent warm-up
BLOCK_S = 30.0  # seconds of audio decoded and resampled at a time
KEPT_HEADS = ("onset", "frame", "velocity")  # what decoding reads; offsets only train the frames

Progress = Callable[[float, float], None]  # (seconds of audio done, seconds in all)


class OnsetsFrames:
    """An Onsets and Frames graph with its front end and keys (from the card)."""

    def __init__(self, session, front_end: FrontEnd, keys: KeySpace, spec: str = "",
                 decode: DecodeOptions = DecodeOptions(0.5, 0.5)):
        self.session, self.front_end, self.keys, self.spec = session, front_end, keys, spec
        self.decode = decode  # the thresholds its card chose on validation audio

    @classmethod
    def from_ref(cls, ref, *, device: str | None = None, threads: int | None = None) -> OnsetsFrames:
        if (tuple(ref.card.inputs), tuple(ref.card.outputs)) != (GRAPH_INPUTS, GRAPH_OUTPUTS):
            raise ModelNotFoundError(f"model {ref.card.spec} is not an Onsets and Frames graph: "
                                     f"its card names {ref.card.inputs} → {ref.card.outputs}")
        encoding = ref.card.encoding
        keys = KeySpace.from_card(encoding)
        try:
            decode = DecodeOptions.from_card(encoding)
            if decode.class_onset_thresholds is not None:
                decode.onset_thresholds(keys.keys)  # one per output, each in [0, 1]
        except (TypeError, ValueError) as error:
            raise ModelNotFoundError(f"model {ref.card.spec}: its card's decoding thresholds "
                                     f"are unusable: {error}") from None
        return cls(ref.load_session(device=device, threads=threads), FrontEnd.from_card(encoding),
                   keys, ref.card.spec, decode)

    def run(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """(batch, frames, mel_bins) log-mel → the KEPT_HEADS' (batch,
        frames, keys) predictions in [0, 1] (velocity as velocity / 127)."""
        out = self.session.run({"mel": np.ascontiguousarray(mel, np.float32)},
                               outputs=("onset_logits", "frame_logits", "velocity"))
        return {"onset": sigmoid(out["onset_logits"]), "frame": sigmoid(out["frame_logits"]),
                "velocity": np.clip(out["velocity"], 0.0, 1.0)}

    def predict(self, mel_blocks: Iterable[np.ndarray], *, chunk: int = CHUNK_FRAMES,
                context: int = CONTEXT_FRAMES) -> Iterator[dict[str, np.ndarray]]:
        """Predictions for a stream of log-mel blocks (n, mel_bins), as
        consecutive (m, keys) blocks covering every frame once. Each chunk
        runs with up to `context` real frames either side."""
        if chunk < 1 or not 0 <= context <= chunk:
            raise ValueError(f"need chunk >= 1 and 0 <= context <= chunk, got {chunk}, {context}")
        pending = np.zeros((0, self.front_end.mel_bins), np.float32)
        left = 0  # frames of context at the head of `pending`
        for block in mel_blocks:
            pending = np.concatenate([pending, block])
            while len(pending) >= left + chunk + context:
                yield _crop(self.run(pending[None, :left + chunk + context]), left, chunk)
                pending = pending[chunk + left - context:]
                left = context
        if len(pending) > left:
            yield _crop(self.run(pending[None]), left, len(pending) - left)

    def predict_all(self, mel_blocks: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        """The decoder's predictions (onset, frame, velocity) of a whole
        stream, (frames, keys) float16 each: ~60 MB an hour of piano."""
        parts = list(self.predict(mel_blocks))
        if not parts:
            return {name: np.zeros((0, self.keys.keys), np.float16) for name in KEPT_HEADS}
        return {name: np.concatenate([p[name] for p in parts]) for name in KEPT_HEADS}


def _crop(probs: dict[str, np.ndarray], start: int, length: int) -> dict[str, np.ndarray]:
    return {name: value[0, start:start + length].astype(np.float16) for name, value in probs.items()}


@dataclass(frozen=True)
class TranscribeOptions:
    """model: the model spec or path; device: where it runs; decode:
    thresholds and shortest note; program: the GM program of the notes
    written; block_s: seconds of audio read at a time."""

    model: str = "onsets_frames"
    device: str | None = None
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    program: int = 0
    block_s: float = BLOCK_S


@functools.lru_cache(maxsize=4)
def load_transcriber(model: str, device: str | None) -> OnsetsFrames:
    """The model, loaded once per process (a batch transcribes many files)."""
    from mtools.models.registry import resolve_model

    ref = resolve_model(model, task=TASK)
    return OnsetsFrames.from_ref(ref, device=device)


def transcribe_input(source, options: TranscribeOptions, progress: Progress | None = None) -> Score:
    """Transcribe one `mtools.io.streams.Input` (a file or stdin)."""
    from mtools.io.audio import open_audio

    model = load_transcriber(options.model, options.device)
    stream = source.open_binary() if source.path is None else source.path
    with open_audio(stream, name=source.name) as audio:
        return transcribe_source(model, audio, options, progress)


def transcribe_source(model: OnsetsFrames, audio, options: TranscribeOptions = TranscribeOptions(),
                      progress: Progress | None = None) -> Score:
    """Transcribe an open `mtools.io.audio.AudioSource` (any rate, any
    channels) into a Score of one piano (or drum) track at 120 qpm;
    `progress(done_s, total_s)` hears of each block of audio read."""
    front_end = model.front_end

    def blocks():
        done = 0.0
        for block in audio.blocks(front_end.sample_rate_hz, options.block_s):
            yield block
            done += len(block) / front_end.sample_rate_hz
            if progress is not None:
                progress(done, audio.duration_s)

    return predictions_to_score(model.predict_all(front_end.stream(blocks())), model, options,
                                audio.duration_s)


def predictions_to_score(probs: dict[str, np.ndarray], model: OnsetsFrames,
                         options: TranscribeOptions, duration_s: float) -> Score:
    notes = decode_notes(probs, model.front_end, model.keys, options.decode.over(model.decode),
                         program=options.program)
    end = max([duration_s] + [n.end_s for n in notes])
    track = (InstrumentInfo(DRUM_INSTRUMENT, "drums") if model.keys.is_drums
             else InstrumentInfo(0, "piano"))
    return make_score(notes, tempos=(Tempo(0.0, 120.0),), total_s=end, instrument_infos=(track,),
                      provenance={"model": model.spec})
