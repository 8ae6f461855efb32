"""Standard MIDI files ⇄ Score, written for speed and exact round trips.

Reading walks the bytes once in a tight loop (no per-message objects), then
converts ticks to seconds for all events at once with numpy. Writing places
every time back on the file's own `ticks_per_quarter` grid through the same
tempo map, so MIDI → Score → MIDI keeps every note, tempo and program to the
tick.

Instruments follow note_seq/pretty_midi: notes of one (track, channel) pair
form one instrument index; each note carries the program in force on its
channel when it started. Drums are channel 10 (index 9).
"""

from __future__ import annotations

import json
import struct
from collections import deque

import numpy as np

from mtools.errors import InputFormatError
from mtools.score import (ChordSymbol, ControlChange, InstrumentInfo, KeySignature, Note,
                          PitchBend, Score, Tempo, TimeSignature, DEFAULT_QPM)

DRUM_CHANNEL = 9
MICROSECONDS_PER_MINUTE = 60_000_000
CHORD_TEXT_PREFIX = "chord:"  # chord symbols travel as MIDI text events "chord:Am7"
# What made a score (model, seed, ...: Score.provenance) travels as one text
# event at tick 0, "mtools:" and a JSON object, as it does under JSONL's key.
PROVENANCE_TEXT_PREFIX = "mtools:"
_META_TEXT, _META_TRACK_NAME, _META_MARKER = 0x01, 0x03, 0x06
_META_END, _META_TEMPO, _META_TIME_SIG, _META_KEY_SIG = 0x2F, 0x51, 0x58, 0x59


class _Track:
    """Raw events of one MTrk chunk, in ticks, collected by the parser."""

    __slots__ = ("notes", "ccs", "bends", "name", "channels_used", "end_tick")

    def __init__(self):
        self.notes: list[tuple] = []  # (start_tick, end_tick, pitch, velocity, channel, program)
        self.ccs: list[tuple] = []  # (tick, channel, number, value, program)
        self.bends: list[tuple] = []  # (tick, channel, bend, program)
        self.name = ""
        self.channels_used: list[int] = []
        self.end_tick = 0


class _Conductor:
    """Tempo, meter, key and text events from any track, in ticks."""

    def __init__(self):
        self.tempos: list[tuple[int, int]] = []  # (tick, microseconds per quarter)
        self.time_sigs: list[tuple[int, int, int]] = []
        self.key_sigs: list[tuple[int, int, int]] = []
        self.chords: list[tuple[int, str]] = []
        self.title = ""
        self.provenance: dict = {}


def _truncated(track_index: int) -> InputFormatError:
    return InputFormatError(f"truncated MIDI: track {track_index} ends in the middle of an event")


def _read_header(data: bytes) -> tuple[int, int, int]:
    if len(data) < 14 or data[:4] != b"MThd":
        raise InputFormatError("not a MIDI file (no MThd header)")
    length, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if length < 6 or fmt > 2:
        raise InputFormatError(f"unsupported MIDI header (format {fmt}, length {length})")
    return 8 + length, ntracks, division


def _parse_track(data: bytes, pos: int, end: int, index: int, conductor: _Conductor) -> _Track:
    """Parse one MTrk body data[pos:end] into a _Track (ticks, raw channels)."""
    track = _Track()
    notes, ccs, bends = track.notes, track.ccs, track.bends
    open_notes: dict[int, deque] = {}  # (channel << 7 | pitch) -> FIFO of (tick, velocity, program)
    programs = [0] * 16
    used = [False] * 16
    tick = 0
    status = 0
    try:
        while pos < end:
            # Variable-length delta time.
            byte = data[pos]; pos += 1
            delta = byte & 0x7F
            while byte & 0x80:
                byte = data[pos]; pos += 1
                delta = (delta << 7) | (byte & 0x7F)
            tick += delta
            byte = data[pos]
            if byte & 0x80:
                pos += 1
                if byte < 0xF0:
                    status = byte
                else:
                    pos = _parse_system(data, pos, byte, tick, track, conductor, index)
                    if pos < 0:
                        break
                    continue
            elif not status:
                raise InputFormatError(f"bad MIDI: track {index} has data with no status byte")
            kind = status & 0xF0
            channel = status & 0x0F
            if kind == 0x90 or kind == 0x80:
                pitch = data[pos]; velocity = data[pos + 1]; pos += 2
                key = (channel << 7) | pitch
                if kind == 0x90 and velocity:
                    used[channel] = True
                    queue = open_notes.get(key)
                    if queue is None:
                        queue = open_notes[key] = deque()
                    queue.append((tick, velocity, programs[channel]))
                else:
                    queue = open_notes.get(key)
                    if queue:
                        start, vel, program = queue.popleft()
                        notes.append((start, tick, pitch, vel, channel, program))
            elif kind == 0xB0:
                ccs.append((tick, channel, data[pos], data[pos + 1], programs[channel]))
                used[channel] = True
                pos += 2
            elif kind == 0xC0:
                programs[channel] = data[pos]; pos += 1
            elif kind == 0xE0:
                bends.append((tick, channel, (data[pos] | (data[pos + 1] << 7)) - 8192,
                              programs[channel]))
                pos += 2
            elif kind == 0xD0:
                pos += 1
            else:  # 0xA0 polyphonic aftertouch
                pos += 2
    except IndexError:
        raise _truncated(index) from None
    if pos > end:
        raise _truncated(index)
    track.end_tick = tick
    # Keys still held at the end of the track are released there.
    for key, queue in open_notes.items():
        for start, vel, program in queue:
            if tick > start:
                notes.append((start, tick, key & 0x7F, vel, key >> 7, program))
    track.channels_used = [c for c in range(16) if used[c]]
    return track


def _parse_system(data, pos, byte, tick, track, conductor, index) -> int:
    """Parse a meta or sysex event whose status byte was `byte`; returns the
    position after it, or -1 at End of Track."""
    if byte == 0xFF:
        meta = data[pos]
        length, pos = _read_varlen(data, pos + 1)
        body = data[pos:pos + length]
        if len(body) < length:
            raise _truncated(index)
        pos += length
        if meta == _META_TEMPO and length == 3:
            microseconds = (body[0] << 16) | (body[1] << 8) | body[2]
            if not microseconds:
                raise InputFormatError(f"bad MIDI: track {index} sets a tempo of 0 "
                                       f"microseconds per quarter note (at tick {tick})")
            conductor.tempos.append((tick, microseconds))
        elif meta == _META_TIME_SIG and length >= 2:
            conductor.time_sigs.append((tick, body[0], 2 ** body[1]))
        elif meta == _META_KEY_SIG and length >= 2:
            sharps = body[0] - 256 if body[0] > 127 else body[0]
            conductor.key_sigs.append((tick, sharps, body[1]))
        elif meta == _META_TRACK_NAME:
            track.name = body.decode("latin-1").strip()
        elif meta in (_META_TEXT, _META_MARKER):
            text = body.decode("latin-1")
            if text.startswith(CHORD_TEXT_PREFIX):
                conductor.chords.append((tick, text[len(CHORD_TEXT_PREFIX):].strip()))
            elif text.startswith(PROVENANCE_TEXT_PREFIX) and meta == _META_TEXT:
                conductor.provenance = _provenance(text[len(PROVENANCE_TEXT_PREFIX):])
        elif meta == _META_END:
            return -1
        return pos
    if byte in (0xF0, 0xF7):
        length, pos = _read_varlen(data, pos)
        return pos + length
    # System common / real-time bytes carry no delta-time payload we keep.
    return pos


def _read_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]; pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _ticks_to_seconds(ticks: np.ndarray, tempos: list[tuple[int, int]], division: int):
    """Seconds for each tick under the tempo map. ticks: (n,) int64."""
    if division & 0x8000:  # SMPTE: frames per second x ticks per frame, no tempo
        fps = 256 - (division >> 8)
        return ticks / float(fps * (division & 0xFF))
    change_ticks, seconds_at_change, seconds_per_tick = _tempo_segments(tempos, division)
    seg = np.searchsorted(change_ticks, ticks, side="right") - 1
    return seconds_at_change[seg] + (ticks - change_ticks[seg]) * seconds_per_tick[seg]


def _tempo_segments(tempos, division):
    """Piecewise-linear tick→seconds map: start tick, start second and
    seconds per tick of each constant-tempo segment."""
    points = sorted(tempos)
    if not points or points[0][0] > 0:
        points.insert(0, (0, round(MICROSECONDS_PER_MINUTE / DEFAULT_QPM)))
    change_ticks = np.array([t for t, _ in points], dtype=np.int64)
    seconds_per_tick = np.array([us for _, us in points], dtype=np.float64) / (1e6 * division)
    spans = np.diff(change_ticks) * seconds_per_tick[:-1]
    seconds_at_change = np.concatenate([[0.0], np.cumsum(spans)])
    return change_ticks, seconds_at_change, seconds_per_tick


def midi_to_score(data: bytes) -> Score:
    """Parse a Standard MIDI File (format 0, 1 or 2) into a Score.

    Raises InputFormatError for anything that is not a complete MIDI file."""
    pos, ntracks, division = _read_header(data)
    if division == 0:
        raise InputFormatError("bad MIDI header: zero ticks per quarter")
    conductor = _Conductor()
    tracks: list[_Track] = []
    while pos + 8 <= len(data) and len(tracks) < ntracks:
        chunk, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        body_start = pos + 8
        pos = body_start + length
        if chunk != b"MTrk":
            continue
        if pos > len(data):
            raise InputFormatError(f"truncated MIDI: track {len(tracks)} is cut short "
                                   f"({len(data) - body_start} of {length} bytes)")
        tracks.append(_parse_track(data, body_start, pos, len(tracks), conductor))
    if len(tracks) < ntracks:
        raise InputFormatError(f"truncated MIDI: header announces {ntracks} tracks, "
                               f"found {len(tracks)}")
    return _assemble(tracks, conductor, division)


def _assemble(tracks: list[_Track], conductor: _Conductor, division: int) -> Score:
    """Turn raw tick events into a Score with times in seconds."""
    # Instrument index per (track, channel), in order of appearance.
    instrument_of: dict[tuple[int, int], int] = {}
    infos = []
    for t, track in enumerate(tracks):
        for channel in track.channels_used:
            instrument_of[(t, channel)] = len(instrument_of)
            if track.name:
                infos.append(InstrumentInfo(instrument_of[(t, channel)], track.name))
    if tracks and tracks[0].name and not tracks[0].channels_used:
        conductor.title = tracks[0].name

    def seconds(ticks: list[int]) -> list[float]:
        return _ticks_to_seconds(np.asarray(ticks, dtype=np.int64), conductor.tempos,
                                 division).tolist()

    notes = _assemble_notes(tracks, instrument_of, seconds)
    ccs, bends = _assemble_controls(tracks, instrument_of, seconds)
    tempo_points = sorted(conductor.tempos)
    tempos = [Tempo(s, MICROSECONDS_PER_MINUTE / us) for s, (_, us)
              in zip(seconds([t for t, _ in tempo_points]), tempo_points)]
    tempos = [t for i, t in enumerate(tempos)
              if i + 1 == len(tempos) or tempos[i + 1].time_s > t.time_s]  # last at a tick wins
    time_sigs = [TimeSignature(s, num, den) for s, (_, num, den)
                 in zip(seconds([e[0] for e in conductor.time_sigs]), conductor.time_sigs)]
    key_sigs = [KeySignature(s, (7 * sharps) % 12 if not minor else (7 * sharps + 9) % 12,
                             1 if minor else 0)
                for s, (_, sharps, minor) in zip(seconds([e[0] for e in conductor.key_sigs]),
                                                 conductor.key_sigs)]
    chords = [ChordSymbol(s, fig) for s, (_, fig)
              in zip(seconds([e[0] for e in conductor.chords]), conductor.chords)]
    total_s = max([n.end_s for n in notes] + [0.0])
    return Score(notes=tuple(notes), tempos=tuple(tempos),
                 time_signatures=tuple(sorted(time_sigs, key=lambda e: e.time_s)),
                 key_signatures=tuple(sorted(key_sigs, key=lambda e: e.time_s)),
                 chords=tuple(sorted(chords, key=lambda e: e.time_s)),
                 control_changes=tuple(ccs), pitch_bends=tuple(bends),
                 instrument_infos=tuple(infos),
                 ticks_per_quarter=division if not division & 0x8000 else 220,
                 total_s=total_s, title=conductor.title, provenance=conductor.provenance)


def _assemble_notes(tracks, instrument_of, seconds) -> list[Note]:
    raw = []
    for t, track in enumerate(tracks):
        for start, end, pitch, vel, channel, program in track.notes:
            raw.append((start, end, pitch, vel, channel, program, instrument_of[(t, channel)]))
    raw.sort(key=lambda r: (r[0], r[6], r[2], r[1]))
    starts = seconds([r[0] for r in raw])
    ends = seconds([r[1] for r in raw])
    return [Note(r[2], r[3], s, e, r[5], r[6], r[4] == DRUM_CHANNEL)
            for r, s, e in zip(raw, starts, ends)]


def _assemble_controls(tracks, instrument_of, seconds):
    raw_cc, raw_bend = [], []
    for t, track in enumerate(tracks):
        for tick, channel, number, value, program in track.ccs:
            raw_cc.append((tick, instrument_of[(t, channel)], number, value, program,
                           channel == DRUM_CHANNEL))
        for tick, channel, bend, program in track.bends:
            instrument = instrument_of.setdefault((t, channel), len(instrument_of))
            raw_bend.append((tick, instrument, bend, program, channel == DRUM_CHANNEL))
    raw_cc.sort(key=lambda r: r[0])
    raw_bend.sort(key=lambda r: r[0])
    ccs = [ControlChange(s, r[2], r[3], r[4], r[1], r[5])
           for r, s in zip(raw_cc, seconds([r[0] for r in raw_cc]))]
    bends = [PitchBend(s, r[2], r[3], r[1], r[4])
             for r, s in zip(raw_bend, seconds([r[0] for r in raw_bend]))]
    return ccs, bends


# --- writing -------------------------------------------------------------------

# Order of events that share a tick: releases first (so a re-struck key is not
# cut), then program, controllers and bends, then onsets, then releases of
# zero-length notes (which must follow their own onset).
_MAX_VARLEN = 0x0FFFFFFF  # the largest four-byte variable-length quantity
_ORDER_OFF, _ORDER_PROGRAM, _ORDER_CC, _ORDER_BEND, _ORDER_ON, _ORDER_LATE_OFF = range(6)


class _TickMap:
    """Seconds → ticks under a score's tempo map, on its own tick grid."""

    def __init__(self, tempos, ticks_per_quarter: int):
        points = [(t.time_s, t.qpm) for t in tempos if t.qpm > 0]
        if not points or points[0][0] > 1e-9:
            points.insert(0, (0.0, DEFAULT_QPM))  # MIDI's tempo before any tempo event
        self.times_s = np.array([p[0] for p in points])
        self.ticks_per_s = np.array([p[1] for p in points]) * ticks_per_quarter / 60.0
        spans = np.diff(self.times_s) * self.ticks_per_s[:-1]
        self.ticks_at = np.concatenate([[0.0], np.cumsum(spans)])

    def ticks(self, seconds) -> np.ndarray:
        seconds = np.asarray(seconds, dtype=np.float64)
        if not np.isfinite(seconds).all():
            raise InputFormatError("a time in the score is not a finite number: no MIDI file "
                                   "can hold it")
        seg = np.maximum(np.searchsorted(self.times_s, seconds + 1e-9, side="right") - 1, 0)
        with np.errstate(over="ignore"):  # a time past any tick count: refused just below
            exact = self.ticks_at[seg] + (seconds - self.times_s[seg]) * self.ticks_per_s[seg]
        # past int64 the tick count would wrap round
        if exact.size and not (np.isfinite(exact).all() and exact.max() <= _MAX_TICKS):
            raise InputFormatError(f"a time of {float(seconds.max()):g} s is more than a MIDI "
                                   "file can hold")
        return np.maximum(np.rint(exact), 0).astype(np.int64)


_MAX_TICKS = 2.0 ** 62  # ticks from the start, well inside int64


def _varlen(value: int) -> bytes:
    if not 0 <= value <= _MAX_VARLEN:
        raise InputFormatError(f"a time gap of {value} ticks is more than a MIDI file can hold")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track_chunk(events: list[tuple]) -> bytes:
    """events: (tick, order, payload bytes); returns a complete MTrk chunk."""
    events.sort(key=lambda e: (e[0], e[1]))
    body = bytearray()
    last = 0
    for tick, _, payload in events:
        body += _varlen(tick - last)
        body += payload
        last = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def _meta(kind: int, body: bytes) -> bytes:
    return bytes([0xFF, kind]) + _varlen(len(body)) + body


def _key_signature_bytes(key: KeySignature) -> bytes:
    major_tonic = key.key if key.mode != 1 else (key.key + 3) % 12
    sharps = (7 * major_tonic) % 12
    if sharps > 6:
        sharps -= 12
    return _meta(_META_KEY_SIG, bytes([sharps & 0xFF, 1 if key.mode == 1 else 0]))


def _provenance(text: str) -> dict:
    """A provenance text event's JSON object; {} for anything else (text
    another program happened to start the same way)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        return {}
    return value if isinstance(value, dict) else {}


def _conductor_events(score: Score, tmap: _TickMap) -> list[tuple]:
    events = []
    if score.title:
        events.append((0, 0, _meta(_META_TRACK_NAME, score.title.encode("latin-1", "replace"))))
    if score.provenance:
        text = PROVENANCE_TEXT_PREFIX + json.dumps(score.provenance, separators=(",", ":"))
        events.append((0, 0, _meta(_META_TEXT, text.encode("latin-1", "replace"))))
    for tempo, tick in zip(score.tempos, tmap.ticks([t.time_s for t in score.tempos])):
        us = min(max(round(MICROSECONDS_PER_MINUTE / tempo.qpm), 1), 0xFFFFFF)
        events.append((int(tick), 1, _meta(_META_TEMPO, us.to_bytes(3, "big"))))
    for sig, tick in zip(score.time_signatures,
                         tmap.ticks([t.time_s for t in score.time_signatures])):
        power = max(sig.denominator, 1).bit_length() - 1
        events.append((int(tick), 1, _meta(_META_TIME_SIG,
                                           bytes([sig.numerator & 0xFF, power, 24, 8]))))
    for key, tick in zip(score.key_signatures,
                         tmap.ticks([k.time_s for k in score.key_signatures])):
        events.append((int(tick), 1, _key_signature_bytes(key)))
    for chord, tick in zip(score.chords, tmap.ticks([c.time_s for c in score.chords])):
        text = (CHORD_TEXT_PREFIX + chord.figure).encode("latin-1", "replace")
        events.append((int(tick), 2, _meta(_META_TEXT, text)))
    return events


def _channel_for(groups: list[tuple]) -> dict[tuple, int]:
    """MIDI channel per (instrument, program, is_drum) group: drums on 9,
    the rest a channel each while the other 15 channels last. With more
    groups than that, no channel plays two programs while there are no
    more programs than channels (one would take the channel over): each
    program gets channels in proportion to its groups, and its groups take
    turns on them."""
    melodic = [c for c in range(16) if c != DRUM_CHANNEL]
    pitched = [group for group in groups if not group[2]]
    channels = {group: DRUM_CHANNEL for group in groups if group[2]}
    programs = list(dict.fromkeys(group[1] for group in pitched))
    if len(pitched) <= len(melodic):  # a channel each
        return {**channels, **dict(zip(pitched, melodic))}
    if len(programs) > len(melodic):  # some programs must share: a channel per program
        return {**channels, **{group: melodic[programs.index(group[1]) % len(melodic)]
                               for group in pitched}}
    counts = {program: sum(g[1] == program for g in pitched) for program in programs}
    shares = dict.fromkeys(programs, 1)
    for _ in range(len(melodic) - len(programs)):  # the next channel to the most crowded
        shares[max(programs, key=lambda p: counts[p] / shares[p])] += 1
    first, taken = {}, 0
    for program in programs:
        first[program], taken = taken, taken + shares[program]
    turn = dict.fromkeys(programs, 0)
    for group in pitched:
        program = group[1]
        channels[group] = melodic[first[program] + turn[program] % shares[program]]
        turn[program] += 1
    return channels


def score_to_midi(score: Score) -> bytes:
    """Write a Score as a format-1 Standard MIDI File at the score's own
    ticks_per_quarter: a conductor track (tempo, meter, key, chords) and one
    track per (instrument, program, drum) group."""
    tpq = int(score.ticks_per_quarter) or 220
    tmap = _TickMap(score.tempos, tpq)
    names = {info.instrument: info.name for info in score.instrument_infos}
    groups: dict[tuple, list] = {}
    for note in score.notes:
        groups.setdefault((note.instrument, note.program, note.is_drum), []).append(note)
    controls: dict[tuple, list] = {}
    for event in list(score.control_changes) + list(score.pitch_bends):
        controls.setdefault((event.instrument, event.program, event.is_drum), []).append(event)
    keys = sorted(set(groups) | set(controls))
    channel_of = _channel_for(keys)
    chunks = [_track_chunk(_conductor_events(score, tmap))]
    for key in keys:
        chunks.append(_track_chunk(_group_events(
            groups.get(key, []), controls.get(key, []), key, channel_of[key],
            names.get(key[0], ""), tmap)))
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), tpq)
    return header + b"".join(chunks)


def _group_events(notes, controls, key, channel, name, tmap) -> list[tuple]:
    events = []
    if name:
        events.append((0, _ORDER_PROGRAM, _meta(_META_TRACK_NAME, name.encode("latin-1", "replace"))))
    # Drums too: on channel 10 the program selects the kit.
    events.append((0, _ORDER_PROGRAM, bytes([0xC0 | channel, key[1] & 0x7F])))
    starts = tmap.ticks([n.start_s for n in notes])
    ends = tmap.ticks([n.end_s for n in notes])
    on, off = 0x90 | channel, 0x80 | channel
    for note, start, end in zip(notes, starts.tolist(), ends.tolist()):
        pitch = note.pitch & 0x7F
        events.append((start, _ORDER_ON, bytes([on, pitch, min(max(note.velocity, 1), 127)])))
        events.append((end, _ORDER_OFF if end > start else _ORDER_LATE_OFF,
                       bytes([off, pitch, 0])))
    ticks = tmap.ticks([e.time_s for e in controls]).tolist()
    for event, tick in zip(controls, ticks):
        if isinstance(event, ControlChange):
            events.append((tick, _ORDER_CC, bytes([0xB0 | channel, event.number & 0x7F,
                                                   event.value & 0x7F])))
        else:
            value = min(max(event.bend + 8192, 0), 16383)
            events.append((tick, _ORDER_BEND, bytes([0xE0 | channel, value & 0x7F, value >> 7])))
    return events
