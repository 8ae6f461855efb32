"""MusicXML and ABC in, through music21 (imported only when such a file comes)."""

from __future__ import annotations

import warnings
from dataclasses import fields

from mtools.errors import InputFormatError
from mtools.score import (ChordSymbol, KeySignature, Note, Score, Tempo, TempoMap,
                          TimeSignature, make_score)

DEFAULT_VELOCITY = 80


def notation_to_scores(data: bytes, fmt: str, name: str = "input") -> list[Score]:
    """Parse MusicXML (`fmt` "musicxml" or "mxl") or ABC ("abc") into
    Scores: one, or one per tune of an ABC book (several X: tunes), in order.
    Repeats are expanded where music21 can; ties become single notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import music21
        try:
            if fmt == "mxl":
                data, fmt = _unzip_mxl(data), "musicxml"
            if fmt == "musicxml":
                data = _as_utf8(data)
            parsed = music21.converter.parse(
                data if fmt != "abc" else with_unit_lengths(data.decode("utf-8", "replace")),
                format=fmt, forceSource=True)
        except Exception as exc:  # music21 raises many unrelated types
            raise InputFormatError(f"{name}: cannot parse {fmt.upper()}: {exc}") from None
        tunes = [parsed]
        if isinstance(parsed, music21.stream.Opus):
            tunes = list(parsed.scores)
            if not tunes:
                raise InputFormatError(f"{name}: the {fmt.upper()} file holds no tunes")
        return [_stream_to_score(_with_repeats_expanded(tune), music21) for tune in tunes]


def with_unit_lengths(abc: str) -> str:
    """ABC with "L:1/8" added to each tune header that has neither L: nor
    M: (nor a book header before the first X: that sets one). The ABC
    standard (2.1, 3.1.7) makes an eighth the unit note length then;
    music21 refuses such a tune (it derives the unit from M: alone). A file
    with no X: is one tune whose header runs to its first K:."""
    lines: list[str] = []
    header, told, book_told, seen_tune = True, False, False, False
    for line in abc.splitlines(keepends=True):
        field = line[:2]
        if field == "X:":
            header, told, seen_tune = True, book_told, True
        elif header and field in ("L:", "M:"):
            told = True
            book_told = book_told or not seen_tune
        elif field == "K:" and header:
            if not told:
                lines.append("L:1/8\n")
            header = False
        lines.append(line)
    return "".join(lines)


def _with_repeats_expanded(stream):
    try:
        return stream.expandRepeats()
    except Exception:
        return stream  # malformed or absent repeats: keep the written order


def _unzip_mxl(data: bytes) -> bytes:
    """The score inside compressed MusicXML: the rootfile that
    META-INF/container.xml names, else the first .xml/.musicxml file."""
    import io
    import re
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        root = None
        if "META-INF/container.xml" in names:
            container = archive.read("META-INF/container.xml").decode("utf-8", "replace")
            match = re.search(r'full-path="([^"]+)"', container)
            root = match.group(1) if match and match.group(1) in names else None
        if root is None:
            root = next(n for n in names if n.lower().endswith((".xml", ".musicxml"))
                        and not n.startswith("META-INF/"))
        return archive.read(root)


def _as_utf8(data: bytes) -> bytes:
    """MusicXML bytes as UTF-8 (music21 reads bytes as UTF-8; files in the
    wild, music21's own corpus among them, are often UTF-16 with a BOM)."""
    import re

    for bom, codec in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
                       (b"\xef\xbb\xbf", "utf-8-sig")):
        if data.startswith(bom):
            text = data.decode(codec)
            return re.sub(r'(<\?xml[^>]*?)\s+encoding="[^"]*"', r"\1", text, count=1).encode("utf-8")
    return data


def _stream_to_score(stream, music21) -> Score:
    flat_all = stream.flatten()
    tempos = []
    for mark in flat_all.getElementsByClass(music21.tempo.MetronomeMark):
        qpm = mark.getQuarterBPM()
        if qpm:
            tempos.append((float(mark.getOffsetInHierarchy(stream)), float(qpm)))
    tempos = sorted(dict(tempos).items()) or [(0.0, 120.0)]
    # Offsets are in quarter notes; build the tempo map in quarters first.
    tempo_events = []
    seconds = 0.0
    for i, (quarters, qpm) in enumerate(tempos):
        if i:
            prev_q, prev_qpm = tempos[i - 1]
            seconds += (quarters - prev_q) * 60.0 / prev_qpm
        tempo_events.append(Tempo(seconds if i else 0.0, qpm))
    tmap = TempoMap(tempo_events)

    def at(quarters: float) -> float:
        return tmap.seconds_at(float(quarters))

    parts = stream.parts if stream.hasPartLikeStreams() else [stream]
    notes = []
    for index, part in enumerate(parts):
        program = _program_of(part, music21)
        for element in part.stripTies().flatten().notes:
            start = float(element.getOffsetInHierarchy(part))
            end = start + float(element.duration.quarterLength)
            if end <= start or isinstance(element, music21.harmony.ChordSymbol):
                continue
            velocity = element.volume.velocity or DEFAULT_VELOCITY
            for pitch in element.pitches:
                notes.append(Note(int(pitch.midi), int(velocity), at(start), at(end),
                                  program, index))
    meters = [TimeSignature(at(ts.getOffsetInHierarchy(stream)), ts.numerator, ts.denominator)
              for ts in flat_all.getElementsByClass(music21.meter.TimeSignature)]
    keys = [KeySignature(at(k.getOffsetInHierarchy(stream)), k.tonic.pitchClass,
                         1 if k.mode == "minor" else 0)
            for k in flat_all.getElementsByClass(music21.key.Key)]
    keys += [KeySignature(at(k.getOffsetInHierarchy(stream)), (7 * k.sharps) % 12, 0)
             for k in flat_all.getElementsByClass(music21.key.KeySignature)
             if not isinstance(k, music21.key.Key)]
    chords = [ChordSymbol(at(c.getOffsetInHierarchy(stream)), c.figure)
              for c in flat_all.getElementsByClass(music21.harmony.ChordSymbol)]
    title = stream.metadata.title if stream.metadata and stream.metadata.title else ""
    return make_score(notes, tempos=tempo_events, time_signatures=_dedupe(meters),
                      key_signatures=_dedupe(keys), chords=chords, title=title)


def _dedupe(events):
    """Parts and expanded repeats restate their meter and key: keep one event
    per time, and only changes."""
    out = []
    for event in sorted(events, key=lambda e: e.time_s):
        if out and (abs(out[-1].time_s - event.time_s) < 1e-6
                    or _same_value(out[-1], event)):
            continue
        out.append(event)
    return out


def _same_value(a, b) -> bool:
    names = [f.name for f in fields(a) if f.name != "time_s"]
    return type(a) is type(b) and all(getattr(a, n) == getattr(b, n) for n in names)


def _program_of(part, music21) -> int:
    instrument = part.getInstrument(returnDefault=True)
    program = getattr(instrument, "midiProgram", None)
    return int(program) if program is not None else 0
