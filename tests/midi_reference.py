"""An independent, slow MIDI reader built on mido, used only to cross-check
mtools' own parser: notes as (pitch, velocity, start_s, end_s, program, is_drum)."""

from __future__ import annotations

from collections import defaultdict, deque

import mido


def reference_notes(path) -> list[tuple]:
    mid = mido.MidiFile(path)
    tempo_changes = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_changes.append((tick, msg.tempo))
    tempo_changes.sort()

    def seconds(tick):
        total, last_tick, tempo = 0.0, 0, 500000
        for change_tick, change_tempo in tempo_changes:
            if change_tick >= tick:
                break
            total += mido.tick2second(change_tick - last_tick, mid.ticks_per_beat, tempo)
            last_tick, tempo = change_tick, change_tempo
        return total + mido.tick2second(tick - last_tick, mid.ticks_per_beat, tempo)

    notes = []
    for track in mid.tracks:
        tick, programs, held = 0, [0] * 16, defaultdict(deque)
        for msg in track:
            tick += msg.time
            if msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "note_on" and msg.velocity > 0:
                held[(msg.channel, msg.note)].append((tick, msg.velocity, programs[msg.channel]))
            elif msg.type in ("note_on", "note_off") and held[(msg.channel, msg.note)]:
                start, velocity, program = held[(msg.channel, msg.note)].popleft()
                notes.append((msg.note, velocity, seconds(start), seconds(tick), program,
                              msg.channel == 9))
        for (channel, pitch), queue in held.items():
            for start, velocity, program in queue:
                if tick > start:
                    notes.append((pitch, velocity, seconds(start), seconds(tick), program,
                                  channel == 9))
    return sorted(notes)
