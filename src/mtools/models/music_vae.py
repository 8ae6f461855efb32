"""MusicVAE (Roberts et al. 2018, "A Hierarchical Latent Vector Model for
Learning Long-Term Structure in Music"): a window of music ↔ a latent
vector z. Encoding takes the posterior mean; decoding runs the LSTM
decoder step by step in numpy around the ONNX graph, batched over z rows.

A window is (steps,) int class ids on a 16th-note grid:
- melody: 0 no event (the note or rest goes on), 1 note off, 2 + pitch -
  min_pitch (Magenta's 90-class melody one-hot over MIDI 21..108);
- drums: the bitmask of the 9 drum classes struck at the step (512 classes),
  fed to the network as 9 bits;
- trio: a melody id, a bass id (both as melody ids) and a drum bitmask per
  step, packed into one int (melody + classes · (bass + classes · drums));
  the decoder gives one softmax per part (hierdec-trio_16bar's three
  outputs from one decoder);
or, for grooves (GrooVAE, Gillick et al. 2019), (steps, 27) float frames:
per drum class whether it is struck, its velocity / 127 and its offset from
the step (in half steps, -1..1). A groove model's encoder reads the frames
as its `encoder` mode says: "full", "quantized" (hits only: humanize) or
"tap" (every hit folded onto one channel, no velocity: drumify).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mtools.models.encoding import MELODY_SPECIAL_IDS, melody_event_ids, melody_ids_to_events
from mtools.models.events import NUM_DRUM_CLASSES, NUM_DRUM_SETS
from mtools.models.sampling import log_softmax, sample_categorical

GRAPH_INPUTS = ("sequence", "z", "embedding", "step_inputs", "state_h", "state_c")
GRAPH_OUTPUTS = ("mu", "sigma", "embeddings", "state_h0", "state_c0", "logits", "state_h_out",
                 "state_c_out")
KINDS = ("melody", "drums", "groove", "trio")
TRIO_PARTS = ("melody", "bass", "drums")
ENCODER_MODES = ("full", "quantized", "tap")
GROOVE_SIZE = 3 * NUM_DRUM_CLASSES  # hits, velocities, offsets
BAR_STEPS = 16  # a 4/4 bar of 16ths: windows are padded to whole bars
NO_EVENT_ID = 0  # melody: the note or rest goes on


@dataclass(frozen=True)
class VaeSpace:
    """What a window is: kind ("melody", "drums" or "groove"), its length in
    steps, the grid, (melody) the pitch range min_pitch..max_pitch
    inclusive, (groove) what the encoder reads, and (melody) the line of an
    input it reads: "" the top line, "bass" the bass line (as a trio's)."""

    kind: str = "melody"
    steps: int = 32
    steps_per_quarter: int = 4
    min_pitch: int = 21
    max_pitch: int = 108
    encoder: str = "full"
    line: str = ""

    @property
    def pitch_classes(self) -> int:
        """Melody (and trio bass) ids: no event, note off, each pitch."""
        return self.max_pitch - self.min_pitch + 1 + MELODY_SPECIAL_IDS

    @property
    def segments(self) -> tuple[int, ...]:
        """The decoder's classes per part, each part its own softmax (a
        groove: its 27 values)."""
        pitched = self.pitch_classes
        return {"drums": (NUM_DRUM_SETS,), "groove": (GROOVE_SIZE,),
                "trio": (pitched, pitched, NUM_DRUM_SETS)}.get(self.kind, (pitched,))

    @property
    def num_classes(self) -> int:
        """The decoder's outputs per step (classes; a groove's 27 values)."""
        return sum(self.segments)

    @property
    def input_size(self) -> int:
        return {"drums": NUM_DRUM_CLASSES, "groove": GROOVE_SIZE,
                "trio": 2 * self.pitch_classes + NUM_DRUM_CLASSES}.get(self.kind, self.num_classes)

    def parts(self, ids: np.ndarray) -> np.ndarray:
        """(..., steps) ids → (..., steps, parts) int64 ids of each part
        (one part unless a trio)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind != "trio":
            return ids[..., None]
        pitched = self.pitch_classes
        return np.stack([ids % pitched, ids // pitched % pitched, ids // pitched ** 2], axis=-1)

    def pack(self, parts: np.ndarray) -> np.ndarray:
        """The inverse of `parts`."""
        parts = np.asarray(parts, dtype=np.int64)
        if self.kind != "trio":
            return parts[..., 0]
        pitched = self.pitch_classes
        return parts[..., 0] + pitched * (parts[..., 1] + pitched * parts[..., 2])

    @classmethod
    def from_card(cls, encoding: dict) -> VaeSpace:
        return cls(str(encoding["kind"]), int(encoding["steps"]),
                   int(encoding["steps_per_quarter"]), int(encoding.get("min_pitch", 21)),
                   int(encoding.get("max_pitch", 108)), str(encoding.get("encoder", "full")),
                   str(encoding.get("line", "")))

    def to_card(self) -> dict:
        card = {"kind": self.kind, "steps": self.steps, "steps_per_quarter": self.steps_per_quarter,
                "num_classes": self.num_classes, "input_size": self.input_size}
        if self.kind == "melody":
            card.update(min_pitch=self.min_pitch, max_pitch=self.max_pitch,
                        class_ids="0 no event, 1 note off, 2 + pitch - min_pitch")
            if self.line:
                card["line"] = self.line
        elif self.kind == "drums":
            card.update(class_ids="bitmask of the drum classes struck at the step; "
                                  "the network reads the 9 bits")
        elif self.kind == "trio":
            card.update(min_pitch=self.min_pitch, max_pitch=self.max_pitch,
                        parts=list(TRIO_PARTS), segments=list(self.segments),
                        class_ids="melody + 90 (bass + 90 drums): melody and bass as "
                                  "0 no event, 1 note off, 2 + pitch - min_pitch; drums the "
                                  "bitmask of the classes struck; one softmax per part")
        else:
            card.update(encoder=self.encoder,
                        frames="per step, for each of the 9 drum classes: struck (0/1), "
                               "velocity / 127, offset from the step in half steps (-1..1)")
        return card

    def features(self, ids: np.ndarray) -> np.ndarray:
        """(batch, steps) ids → (batch, steps, input_size) float32 inputs
        (groove frames are their own features)."""
        if self.kind == "groove":
            return np.asarray(ids, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "drums":
            return _drum_bits(ids)
        if self.kind == "trio":
            melody, bass, drums = np.moveaxis(self.parts(ids), -1, 0)
            one_hot = np.eye(self.pitch_classes, dtype=np.float32)
            return np.concatenate([one_hot[melody], one_hot[bass], _drum_bits(drums)], axis=-1)
        return np.eye(self.num_classes, dtype=np.float32)[ids]

    def encoder_features(self, windows: np.ndarray) -> np.ndarray:
        """What the encoder reads of windows: their features, or for a
        groove model the frames as its encoder mode says."""
        frames = self.features(windows)
        if self.kind != "groove" or self.encoder == "full":
            return frames
        n = NUM_DRUM_CLASSES
        hits = frames[..., :n]
        if self.encoder == "quantized":
            return np.concatenate([hits, np.zeros_like(frames[..., n:])], axis=-1)
        loudest = frames[..., n:2 * n].argmax(axis=-1)[..., None]
        taps = np.zeros_like(frames)
        taps[..., 0] = hits.max(axis=-1)
        taps[..., 2 * n] = np.take_along_axis(frames[..., 2 * n:], loudest, axis=-1)[..., 0]
        return taps

    def ids_from_events(self, events: np.ndarray) -> np.ndarray:
        """A line's events (melody events or drum bitmasks; a trio's
        (steps, 3) melody, bass and drum events) → class ids; melody
        pitches outside the range move by octaves into it."""
        events = np.asarray(events, dtype=np.int64)
        if self.kind == "drums":
            return events.copy()
        if self.kind == "trio":
            melodic = replace(self, kind="melody")
            return self.pack(np.stack([melodic.ids_from_events(events[:, 0]),
                                       melodic.ids_from_events(events[:, 1]), events[:, 2]],
                                      axis=-1))
        pitched = events >= 0
        folded = events.copy()
        while np.any(pitched & (folded < self.min_pitch)):
            folded = np.where(pitched & (folded < self.min_pitch), folded + 12, folded)
        while np.any(pitched & (folded > self.max_pitch)):
            folded = np.where(pitched & (folded > self.max_pitch), folded - 12, folded)
        return melody_event_ids(folded, self.min_pitch, self.max_pitch + 1)

    def events_from_ids(self, ids: np.ndarray) -> np.ndarray:
        """Class ids → events ((steps, 3) for a trio)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "trio":
            parts = self.parts(ids)
            return np.stack([melody_ids_to_events(parts[..., 0], self.min_pitch),
                             melody_ids_to_events(parts[..., 1], self.min_pitch), parts[..., 2]],
                            axis=-1)
        return ids.copy() if self.kind == "drums" else melody_ids_to_events(ids, self.min_pitch)

    def has_notes(self, ids: np.ndarray) -> np.ndarray:
        """Per row of (..., steps) ids: whether any note starts (melody) or
        any drum is struck."""
        ids = np.asarray(ids)
        if self.kind == "groove":
            return ids[..., :NUM_DRUM_CLASSES].max(axis=(-2, -1)) > 0
        if self.kind == "trio":
            parts = self.parts(ids)
            starts = (parts[..., :2] >= MELODY_SPECIAL_IDS).any(axis=-1) | (parts[..., 2] > 0)
            return starts.any(axis=-1)
        starts = ids >= MELODY_SPECIAL_IDS if self.kind == "melody" else ids > 0
        return starts.any(axis=-1)


def _drum_bits(ids: np.ndarray) -> np.ndarray:
    return ((ids[..., None] >> np.arange(NUM_DRUM_CLASSES)) & 1).astype(np.float32)


def windows_of(events: np.ndarray, space: VaeSpace, hop: int) -> np.ndarray:
    """Every window of `space.steps` steps starting on multiples of `hop`
    that has a note in it, as ids (n, steps) int16 (a trio's int32), the
    events padded with silence to whole bars and hops first (so the last
    bars count, whatever the hop); a window that begins inside a held
    melody note starts by striking that note again."""
    ids = space.ids_from_events(events)
    unit = math.lcm(hop, BAR_STEPS)
    ids = np.concatenate([ids, np.zeros(-len(ids) % unit, ids.dtype)])  # id 0: nothing new
    rows = []
    for start in range(0, len(ids) - space.steps + 1, hop):
        row = restrike(ids, start, space)
        if space.has_notes(row):
            rows.append(row)
    dtype = np.int32 if space.kind == "trio" else np.int16
    if not rows:
        return np.zeros((0, space.steps), dtype)
    return np.stack(rows).astype(dtype)


def groove_frames(track, start: int, steps: int) -> np.ndarray:
    """(steps, 27) frames of a DrumTrack (with offsets) from `start`,
    padded with silence past its end."""
    frames = np.zeros((steps, GROOVE_SIZE), np.float32)
    events = np.asarray(track.events[start:start + steps], np.int64)
    n, count = NUM_DRUM_CLASSES, len(events)
    hits = (events[:, None] >> np.arange(n)) & 1
    frames[:count, :n] = hits
    frames[:count, n:2 * n] = track.velocities[start:start + count] / 127.0 * hits
    if track.offsets is not None:
        frames[:count, 2 * n:] = np.clip(track.offsets[start:start + count] * 2, -1, 1) * hits
    return frames


def frames_to_hits(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groove frames (steps, 27) → bitmask events (steps,), MIDI velocities
    (steps, 9) and offsets in steps (steps, 9), zero where nothing is struck."""
    n = NUM_DRUM_CLASSES
    hits = frames[:, :n] > 0.5
    events = (hits.astype(np.int64) << np.arange(n)).sum(axis=1)
    velocities = np.where(hits, np.clip(np.rint(frames[:, n:2 * n] * 127), 1, 127), 0)
    offsets = np.where(hits, frames[:, 2 * n:] / 2, 0.0)
    return events, velocities.astype(np.uint8), offsets.astype(np.float32)


def restrike(ids: np.ndarray, start: int, space: VaeSpace) -> np.ndarray:
    """ids[start:start + steps], the held note (if any) struck at its start
    (a trio's melody and bass each)."""
    if space.kind == "trio":
        parts = space.parts(ids)
        melodic = replace(space, kind="melody")
        return space.pack(np.stack([restrike(parts[:, 0], start, melodic),
                                    restrike(parts[:, 1], start, melodic),
                                    parts[start:start + space.steps, 2]], axis=-1))
    row = np.array(ids[start:start + space.steps], dtype=np.int64)
    if space.kind == "melody" and start > 0 and len(row) and row[0] == NO_EVENT_ID:
        marked = np.flatnonzero(ids[:start] != 0)
        if len(marked) and ids[marked[-1]] >= MELODY_SPECIAL_IDS:
            row[0] = ids[marked[-1]]
    return row


def slerp(a: np.ndarray, b: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Spherical interpolation between vectors a and b (straight when they
    are parallel) at each fraction in [0, 1] → (len(fractions), dim)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    fractions = np.asarray(fractions, np.float64)[:, None]
    cosine = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return (1 - fractions) * a + fractions * b
    return (np.sin((1 - fractions) * omega) * a + np.sin(fractions * omega) * b) / np.sin(omega)


class MusicVae:
    """A MusicVAE graph and its space: `encode` windows to posterior means
    and scales, `decode` latent rows to windows. The decoder plays `bars`
    bars, each from its own embedding (z itself when there is one bar)."""

    def __init__(self, session, space: VaeSpace, z_size: int, layers: int, hidden: int,
                 bars: int = 1, embedding_size: int | None = None, encoder_steps: int = 1):
        self.session, self.space = session, space
        self.z_size, self.layers, self.hidden = z_size, layers, hidden
        self.bars, self.embedding_size = bars, embedding_size or z_size
        self.encoder_steps = encoder_steps  # the fewest steps its encoder reads (ONNX Runtime
        # runs it on every call, whatever the outputs asked for)

    @classmethod
    def from_ref(cls, ref, *, device: str | None = None, threads: int | None = None) -> MusicVae:
        h = ref.card.hyperparameters
        bars = int(h.get("bars", 1))
        return cls(ref.load_session(device=device, threads=threads),
                   VaeSpace.from_card(ref.card.encoding), int(h["z_size"]),
                   int(h["dec_layers"]), int(h["dec_hidden"]), bars,
                   int(h["z_size"]) if bars == 1 else int(h["conductor_hidden"]),
                   bars if h.get("stacked") else 1)  # a stacked encoder reads whole bars

    @property
    def bar_steps(self) -> int:
        return self.space.steps // self.bars

    def _feeds(self, batch: int, **given) -> dict[str, np.ndarray]:
        feeds = {"sequence": np.zeros((1, self.encoder_steps, self.space.input_size), np.float32),
                 "z": np.zeros((1, self.z_size), np.float32),
                 "embedding": np.zeros((batch, self.embedding_size), np.float32),
                 "step_inputs": np.zeros((batch, 1, self.space.input_size), np.float32),
                 "state_h": np.zeros((self.layers, batch, self.hidden), np.float32),
                 "state_c": np.zeros((self.layers, batch, self.hidden), np.float32)}
        feeds.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in given.items()})
        return feeds

    def encode(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, steps) ids (or groove frames) → posterior mean and scale,
        each (batch, z)."""
        out = self.session.run(self._feeds(1, sequence=self.space.encoder_features(ids)),
                               outputs=["mu", "sigma"])
        return out["mu"], out["sigma"]

    def embeddings(self, z: np.ndarray) -> np.ndarray:
        """(batch, z) → (batch, bars, embedding_size)."""
        return self.session.run(self._feeds(1, z=z), outputs=["embeddings"])["embeddings"]

    def initial_state(self, embedding: np.ndarray) -> dict[str, np.ndarray]:
        out = self.session.run(self._feeds(len(embedding), embedding=embedding),
                               outputs=["state_h0", "state_c0"])
        return {"state_h": out["state_h0"], "state_c": out["state_c0"]}

    def teacher_forced_logits(self, z: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Logits (batch, steps, classes) of every step given the true
        previous steps of its bar."""
        batch = len(z)
        embedding = self.embeddings(z).reshape(batch * self.bars, -1)
        features = self.space.features(ids)
        per_bar = features.reshape(batch * self.bars, self.bar_steps, -1)
        previous = np.concatenate([np.zeros_like(per_bar[:, :1]), per_bar[:, :-1]], axis=1)
        out = self.session.run(self._feeds(len(embedding), embedding=embedding,
                                           step_inputs=previous, **self.initial_state(embedding)),
                               outputs=["logits"])["logits"]
        return out.reshape(batch, self.space.steps, -1)

    def space_split(self, logits: np.ndarray) -> list[np.ndarray]:
        """(..., num_classes) logits → one array per part's softmax."""
        return np.split(logits, np.cumsum(self.space.segments)[:-1], axis=-1)

    def decode(self, z: np.ndarray, *, temperature: float = 0.5,
               rng: np.random.Generator | None = None,
               hits: np.ndarray | None = None) -> np.ndarray:
        """Latent rows (batch, z) → windows (batch, steps) of ids, or groove
        frames (batch, steps, 27); a temperature of 0 (or no rng) takes the
        most likely class (or hit) at every step. `hits` (batch, steps, 9)
        bool fixes a groove's hits: the model then only plays them."""
        z = np.asarray(z, np.float32)
        if not len(z):
            return (np.zeros((0, self.space.steps, GROOVE_SIZE), np.float32)
                    if self.space.kind == "groove" else np.zeros((0, self.space.steps), np.int64))
        # Each bar starts afresh from its embedding: all bars of all rows run as one batch.
        embedding = self.embeddings(z).reshape(len(z) * self.bars, self.embedding_size)
        if hits is not None:
            hits = hits.reshape(len(embedding), self.bar_steps, -1)
        greedy = temperature <= 0 or rng is None
        rows = []
        state = self.initial_state(embedding)
        previous = np.zeros((len(embedding), 1, self.space.input_size), np.float32)
        for step in range(self.bar_steps):
            out = self.session.run(self._feeds(len(embedding), embedding=embedding,
                                               step_inputs=previous, **state),
                                   outputs=["logits", "state_h_out", "state_c_out"])
            logits = out["logits"][:, 0]
            if self.space.kind == "groove":
                forced = None if hits is None else hits[:, step]
                rows.append(groove_step(logits, temperature, None if greedy else rng, forced))
            else:
                parts = [seg.argmax(axis=1) if greedy
                         else sample_categorical(log_softmax(seg, temperature), rng)
                         for seg in self.space_split(logits)]
                rows.append(self.space.pack(np.stack(parts, axis=-1)))
            state = {"state_h": out["state_h_out"], "state_c": out["state_c_out"]}
            previous = self.space.features(rows[-1][:, None])
        played = np.stack(rows, axis=1)  # (rows · bars, bar steps, ...)
        return played.reshape(len(z), self.bars * self.bar_steps, *played.shape[2:])


def groove_step(outputs: np.ndarray, temperature: float, rng: np.random.Generator | None,
                hits: np.ndarray | None = None) -> np.ndarray:
    """A groove decoder's outputs (batch, 27) → frames: hits where
    sigmoid(logit / temperature) wins a draw (or is over 1/2 without rng),
    or the given `hits` (batch, 9); velocity sigmoid(v) and offset tanh(o)
    where struck, else 0."""
    n = NUM_DRUM_CLASSES
    if hits is not None:
        hits = np.asarray(hits, bool)
    elif rng is None:
        hits = outputs[:, :n] > 0
    else:
        p = 1 / (1 + np.exp(-outputs[:, :n] / max(temperature, 1e-6)))
        hits = rng.random(p.shape) < p
    velocity = 1 / (1 + np.exp(-outputs[:, n:2 * n]))
    offset = np.tanh(outputs[:, 2 * n:])
    return np.concatenate([hits, velocity * hits, offset * hits], axis=1).astype(np.float32)


def kl_divergence(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """KL(N(mu, sigma) || N(0, I)) per row, in nats (float64)."""
    mu, sigma = mu.astype(np.float64), np.maximum(sigma.astype(np.float64), 1e-12)
    return (0.5 * (mu ** 2 + sigma ** 2 - 1) - np.log(sigma)).sum(axis=-1)


def vae_figures(model: MusicVae, windows: np.ndarray) -> dict:
    """The card's figures: groove_figures for grooves, else
    reconstruction_figures."""
    if model.space.kind == "groove":
        return groove_figures(model, windows)
    return reconstruction_figures(model, windows)


def groove_figures(model: MusicVae, windows: np.ndarray, batch: int = 256) -> dict:
    """How well a groove model plays frames (n, steps, 27) from what its
    encoder reads, decoding greedily from the posterior mean as its command
    does. Humanize (a "quantized" encoder) keeps the true hits, so only how
    they are played is scored; drumify chooses hits, scored by precision,
    recall and F1 against the drummer's. Velocity (MIDI units) and offset
    (16ths) mean absolute errors are over the true hits the model plays,
    next to two do-nothing baselines on the same hits: every hit at its
    class's mean velocity over these windows, every hit on the grid. Drumify
    also gets a baseline for its hits: at every tap, each drum that these
    windows strike at more than half of their hits on that 16th of the bar
    (`by_position`: kick on the downbeats, hi-hat throughout, and so on;
    fitted on the windows it is scored on, so it flatters itself). Also the
    mean KL (nats per window)."""
    n = NUM_DRUM_CLASSES
    forced = model.space.encoder == "quantized"
    true_hits = windows[..., :n] > 0.5
    class_mean = (windows[..., n:2 * n] * true_hits).sum(axis=(0, 1)) / \
        np.maximum(true_hits.sum(axis=(0, 1)), 1)
    found = made = right = 0
    velocity_error = offset_error = base_velocity = base_offset = kl = 0.0
    for first in range(0, len(windows), batch):
        frames = np.asarray(windows[first:first + batch], np.float32)
        truth = frames[..., :n] > 0.5
        mu, sigma = model.encode(frames)
        decoded = model.decode(mu, temperature=0, hits=truth if forced else None)
        guess = decoded[..., :n] > 0.5
        both = truth & guess
        found, made, right = found + truth.sum(), made + guess.sum(), right + both.sum()
        velocity_error += np.abs(decoded[..., n:2 * n] - frames[..., n:2 * n])[both].sum() * 127
        offset_error += np.abs(decoded[..., 2 * n:] - frames[..., 2 * n:])[both].sum() / 2
        base_velocity += np.abs(class_mean - frames[..., n:2 * n])[both].sum() * 127
        base_offset += np.abs(frames[..., 2 * n:])[both].sum() / 2
        kl += kl_divergence(mu, sigma).sum()
    hits = max(right, 1)
    figures = {"windows": int(len(windows)), "hits": int(found)}
    if not forced:
        figures.update(_hit_scores("hit", right, made, found))
        guess = _hits_by_position(true_hits)
        figures.update(_hit_scores("by_position_hit", (guess & true_hits).sum(), guess.sum(),
                                   found))
    return {**figures, "velocity_mae": round(float(velocity_error / hits), 2),
            "velocity_mae_class_mean": round(float(base_velocity / hits), 2),
            "offset_mae_steps": round(float(offset_error / hits), 4),
            "offset_mae_on_grid": round(float(base_offset / hits), 4),
            "kl_per_window": round(float(kl) / len(windows), 2)}


def _hit_scores(prefix: str, right: int, made: int, found: int) -> dict:
    precision, recall = right / max(made, 1), right / max(found, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {f"{prefix}_precision": round(float(precision), 4),
            f"{prefix}_recall": round(float(recall), 4), f"{prefix}_f1": round(float(f1), 4)}


def _hits_by_position(true_hits: np.ndarray, steps_per_bar: int = 16) -> np.ndarray:
    """groove_figures' baseline: true_hits (n, steps, classes) → the guessed
    hits at every step with a tap (any true hit)."""
    tapped = true_hits.any(axis=-1)  # (n, steps)
    position = np.arange(true_hits.shape[1]) % steps_per_bar
    likely = np.zeros((steps_per_bar, true_hits.shape[2]), bool)
    for p in range(steps_per_bar):
        at = true_hits[:, position == p][tapped[:, position == p]]  # (taps, classes)
        if len(at):
            likely[p] = at.mean(axis=0) > 0.5
    return tapped[..., None] & likely[position][None]


def reconstruction_figures(model: MusicVae, windows: np.ndarray, batch: int = 256) -> dict:
    """The MusicVAE paper's two reconstruction accuracies on windows
    (n, steps): z is each window's posterior mean; `teacher_forced` is the
    share of steps whose most likely class is the true one given the true
    previous steps, `sampled` the share of steps a greedy free-running decode
    gets right. As most steps of a melody hold a note (class 0), the same
    two shares over only the steps where something happens (a note starts or
    stops, a drum is struck) follow. Also the mean KL (nats per window) and
    teacher-forced NLL (nats per step). A trio's shares are over (step,
    part) cells, each part's own following; its NLL sums the parts."""
    space = model.space
    width = len(space.segments)
    right_tf, right_free = np.zeros(width), np.zeros(width)
    event_tf, event_free, event_cells = np.zeros(width), np.zeros(width), np.zeros(width)
    kl = nll = 0.0
    for first in range(0, len(windows), batch):
        ids = np.asarray(windows[first:first + batch], np.int64)
        truth = space.parts(ids)  # (batch, steps, parts)
        mu, sigma = model.encode(ids)
        logps = [log_softmax(seg) for seg in model.space_split(model.teacher_forced_logits(mu, ids))]
        nll -= sum(np.take_along_axis(logp, truth[..., k:k + 1], axis=2).sum()
                   for k, logp in enumerate(logps))
        events = truth != NO_EVENT_ID
        hit_tf = np.stack([logp.argmax(axis=2) for logp in logps], axis=-1) == truth
        hit_free = space.parts(model.decode(mu, temperature=0)) == truth
        right_tf += hit_tf.sum(axis=(0, 1))
        right_free += hit_free.sum(axis=(0, 1))
        event_tf += (hit_tf & events).sum(axis=(0, 1))
        event_free += (hit_free & events).sum(axis=(0, 1))
        event_cells += events.sum(axis=(0, 1))
        kl += kl_divergence(mu, sigma).sum()
    cells = windows.size  # steps: each part of a trio has as many
    figures = {"windows": int(len(windows)),
               "accuracy_teacher_forced": round(float(right_tf.sum()) / (cells * width), 4),
               "accuracy_sampled": round(float(right_free.sum()) / (cells * width), 4),
               "event_accuracy_teacher_forced":
                   round(float(event_tf.sum()) / max(float(event_cells.sum()), 1.0), 4),
               "event_accuracy_sampled":
                   round(float(event_free.sum()) / max(float(event_cells.sum()), 1.0), 4),
               "kl_per_window": round(float(kl) / len(windows), 2),
               "nll_per_step": round(float(nll) / cells, 4)}
    if space.kind == "trio":
        for k, part in enumerate(TRIO_PARTS):
            figures[f"{part}_accuracy_teacher_forced"] = round(float(right_tf[k]) / cells, 4)
            figures[f"{part}_accuracy_sampled"] = round(float(right_free[k]) / cells, 4)
    return figures
