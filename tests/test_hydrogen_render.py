"""Drum training audio from Hydrogen kits: a tiny kit written here (two
drumkit.xml layouts, constant-valued samples so every sound's level is
readable), velocity layers, gains, the open hi-hat's choke, the class
fallback of keys a kit does not name; and the key maps of the installed
kits (skipped without hydrogen-drumkits)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from mtools.errors import MtoolsError, RuntimeUnavailableError
from mtools.io import render
from mtools.score import Note, make_score
from mtools.training import hydrogen_render as hydrogen
from mtools.training import renders
from mtools.training.sample_player import load_sample
from mtools.training.render_sources import DRUM_CLASSES, DRUMS

RATE = 1000  # samples per second: sample lengths read as milliseconds
KIT = "tiny_kit"


def _wav(folder, name: str, value: float, seconds: float, rate: int = RATE) -> str:
    soundfile.write(str(folder / name), np.full((round(seconds * rate), 2), value, np.float32),
                    rate, subtype="FLOAT")
    return name


def _layer(filename: str, low: float, high: float, gain: float = 1.0, pitch: float = 0) -> str:
    return (f"<layer><filename>{filename}</filename><min>{low}</min><max>{high}</max>"
            f"<gain>{gain}</gain><pitch>{pitch}</pitch></layer>")


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """A kit: kick with a soft (0.1, 0..0.5) and a hard (0.2, 0..1: the
    ranges nest, as some kits' do) layer, volume 0.5 and gain 0.8; snare at
    0.3 in the old one-file layout; closed hat 0.05 and open hat 0.4 (1 s
    long); a ride with layers at 0.6..0.8 (0.15) and 0.9..1 (0.25) only; an
    instrument whose sample is missing."""
    folder = tmp_path / KIT
    folder.mkdir()
    soft, hard = _wav(folder, "soft.wav", 0.1, 0.2), _wav(folder, "hard.wav", 0.2, 0.2)
    closed, opened = _wav(folder, "closed.wav", 0.05, 0.1), _wav(folder, "open.wav", 0.4, 1.0)
    snare = _wav(folder, "snare.wav", 0.3, 0.1)
    mid, top = _wav(folder, "mid.wav", 0.15, 0.1), _wav(folder, "top.wav", 0.25, 0.1)
    (folder / "drumkit.xml").write_text(
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><instrumentList>'
        f"<instrument><name>Kick</name><volume>0.5</volume><gain>0.8</gain>"
        f"{_layer(soft, 0, 0.5)}{_layer(hard, 0, 1, gain=2.0)}</instrument>"
        f"<instrument><name>Snare</name><filename>{snare}</filename></instrument>"
        f"<instrument><name>Closed</name>{_layer(closed, 0, 1)}</instrument>"
        f"<instrument><name>Open</name>{_layer(opened, 0, 1)}</instrument>"
        f"<instrument><name>Ride</name>{_layer(mid, 0.6, 0.8)}{_layer(top, 0.9, 1)}</instrument>"
        f"<instrument><name>Gone</name>{_layer('missing.wav', 0, 1)}</instrument>"
        "</instrumentList></drumkit_info>")
    monkeypatch.setitem(hydrogen.KIT_KEYS, KIT,
                        {36: "Kick", 38: "Snare", 42: "Closed", 46: "Open", 51: "Ride"})
    return folder


def _play(folder, notes) -> np.ndarray:
    score = make_score([Note(*hit, is_drum=True) for hit in notes])
    audio = hydrogen.render_hydrogen(score, sample_rate_hz=RATE, soundfont=folder / "drumkit.xml")
    assert audio.shape[1] == 2 and np.array_equal(audio[:, 0], audio[:, 1])
    return audio[:, 0]


def test_both_kit_layouts_are_read_and_sampleless_instruments_left_out(kit):
    instruments = hydrogen.read_kit(kit)
    assert sorted(instruments) == ["Closed", "Kick", "Open", "Ride", "Snare"]
    assert instruments["Kick"].level == pytest.approx(0.4) and len(instruments["Kick"].layers) == 2
    assert instruments["Snare"].layers[0].path == kit / "snare.wav"


def test_velocity_picks_the_first_layer_holding_it_and_scales_the_level(kit):
    audio = _play(kit, [(36, 127, 0.0, 0.1), (36, 32, 1.0, 1.1), (51, 38, 2.0, 2.1)])
    # hard layer (the only one holding 1.0): 0.2 x gain 2 x volume 0.5 x gain 0.8 x 127/127
    assert audio[100] == pytest.approx(0.16, abs=1e-6)
    # 32/127 = 0.25: both hold it, the soft one comes first: 0.1 x 1 x 0.4 x 32/127
    assert audio[1100] == pytest.approx(0.1 * 0.4 * 32 / 127, abs=1e-6)
    assert np.all(audio[250:1000] == 0.0)  # each sound lasts its sample (0.2 s)
    # 38/127 = 0.3: no ride layer holds it; the nearest (0.6..0.8) plays
    assert audio[2050] == pytest.approx(0.15 * 38 / 127, abs=1e-6)


def test_samples_are_resampled_and_pitched(tmp_path, monkeypatch):
    folder = tmp_path / KIT
    folder.mkdir()
    tone = _wav(folder, "tone.wav", 0.5, 0.4, rate=2 * RATE)
    (folder / "drumkit.xml").write_text(
        f"<drumkit_info><instrumentList><instrument><name>Low</name>{_layer(tone, 0, 1)}"
        f"</instrument><instrument><name>High</name>{_layer(tone, 0, 1, pitch=12)}"
        "</instrument></instrumentList></drumkit_info>")
    monkeypatch.setitem(hydrogen.KIT_KEYS, KIT, {36: "Low", 38: "High"})
    low, high = _play(folder, [(36, 127, 0.0, 0.1)]), _play(folder, [(38, 127, 0.0, 0.1)])
    heard = lambda audio: np.nonzero(np.abs(audio) > 0.25)[0]  # noqa: E731
    assert heard(low)[-1] == pytest.approx(400, abs=5)  # 0.4 s at RATE
    assert heard(high)[-1] == pytest.approx(200, abs=5)  # an octave up: twice as fast
    assert low[200] == pytest.approx(0.5, abs=0.01)


def test_a_mix_that_would_clip_is_scaled_to_the_render_peak(kit):
    together = [(38, 127, 0.0, 0.1), (46, 127, 0.0, 0.1), (51, 127, 0.0, 0.1), (36, 127, 0.0, 0.1)]
    audio = _play(kit, together)  # 0.3 + 0.4 + 0.25 + 0.16 = 1.11 at first
    scale = render.NORMALISED_PEAK / 1.11
    assert np.abs(audio).max() == pytest.approx(render.NORMALISED_PEAK, abs=1e-6)
    assert audio[500] == pytest.approx(0.4 * scale, abs=1e-6)  # the open hat alone, scaled
    assert _play(kit, together[1:2])[500] == pytest.approx(0.4, abs=1e-6)  # alone: as is


def test_a_key_the_kit_does_not_name_plays_its_class_first_key(kit):
    rim_shot, low_floor_tom = 40, 41  # class of 38 (named); class of 43 (not named)
    audio = _play(kit, [(rim_shot, 127, 0.0, 0.05), (low_floor_tom, 127, 0.5, 0.6)])
    assert audio[50] == pytest.approx(0.3, abs=1e-6)
    assert np.all(audio[400:] == 0.0)  # nothing plays a class the kit lacks


def test_the_next_hi_hat_hit_chokes_a_ringing_open_hat(kit):
    audio = _play(kit, [(46, 127, 0.0, 0.1), (42, 127, 0.5, 0.6), (46, 127, 2.0, 2.1)])
    fade = round(hydrogen.CHOKE_FADE_S * RATE)
    assert audio[100] == pytest.approx(0.4, abs=1e-6)
    assert 0.0 < audio[500 - fade // 2] < 0.4  # fading out before the closed hit
    assert audio[550] == pytest.approx(0.05, abs=1e-6)  # the closed hat alone
    assert np.all(audio[650:2000] == 0.0)
    assert audio[2900] == pytest.approx(0.4, abs=1e-6)  # the last open hat rings its full 1 s
    assert len(audio) >= 3000


def test_a_map_naming_an_instrument_the_kit_lacks_is_an_error(kit, monkeypatch):
    monkeypatch.setitem(hydrogen.KIT_KEYS, KIT, {36: "Kick", 49: "Crash"})
    with pytest.raises(MtoolsError, match="Crash"):
        _play(kit, [(36, 100, 0.0, 0.1)])


def test_a_kit_without_a_map_is_an_error(tmp_path):
    with pytest.raises(MtoolsError, match="no key map"):
        _play(tmp_path / "unknown_kit", [(36, 100, 0.0, 0.1)])


def test_installed_kits_have_every_mapped_instrument_and_play_every_class():
    kits = [name for name in DRUMS.train_soundfonts if name.startswith(hydrogen.PREFIX)]
    assert kits, "drum training plays Hydrogen kits"
    for name in [*kits, hydrogen.PREFIX + "ForzeeStereo"]:
        try:
            folder = renders.soundfont_path(name).parent
        except RuntimeUnavailableError:
            pytest.skip("hydrogen-drumkits is not installed")
        played = hydrogen.key_instruments(folder.name, hydrogen.read_kit(folder), DRUM_CLASSES)
        assert all(keys[0] in played for keys in DRUM_CLASSES), name
        # A crude check of the sounds: the kick is low, hats and cymbals bright
        # (spectral centroid of the first second of a loud hit, in Hz).
        centroid = {key: _centroid(played[key]) for key in (36, 42, 49, 51)}
        assert centroid[36] < 250 and min(centroid[k] for k in (42, 49, 51)) > 1000, \
            (name, centroid)


def _centroid(instrument) -> float:
    rate = 44_100
    layer = hydrogen.choose_layer(instrument.layers, 0.8)
    first_second = load_sample(layer.path, layer.pitch, rate)[:rate]
    power = np.abs(np.fft.rfft(first_second)) ** 2
    return float((power * np.fft.rfftfreq(len(first_second), 1 / rate)).sum() / power.sum())
