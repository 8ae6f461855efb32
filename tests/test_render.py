"""mtools.io.render: soundfont lookup (always tested, with fake files) and
rendering with tinysoundfont (skipped when it or a soundfont is missing)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mtools.errors import InputFormatError, InputMissingError, RuntimeUnavailableError
from mtools.io import render
from mtools.io.render import NORMALISED_PEAK, RELEASE_TAIL_S, find_soundfont, render_score
from mtools.score import ControlChange, Note, make_score

SAMPLE_RATE_HZ = 22050  # half the default: same code paths, half the work


# --- soundfont lookup ----------------------------------------------------------


@pytest.fixture
def no_soundfonts(tmp_path, monkeypatch):
    """An environment where the search finds nothing: no env var, empty
    system folders, and a pretty_midi package without a soundfont."""
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "pretty_midi", raising=False)
    system = tmp_path / "sf2"
    system.mkdir()
    monkeypatch.setattr(render, "SYSTEM_SOUNDFONT_DIRS", (system,))
    fake_site = tmp_path / "site"
    (fake_site / "pretty_midi").mkdir(parents=True)
    (fake_site / "pretty_midi" / "__init__.py").write_text("raise ImportError('imported')\n")
    monkeypatch.syspath_prepend(str(fake_site))
    return system, fake_site / "pretty_midi"


def test_nothing_found_says_how_to_get_one(no_soundfonts):
    with pytest.raises(RuntimeUnavailableError) as caught:
        find_soundfont(None)
    assert caught.value.exit_code == 69
    assert "pip install --no-deps pretty_midi" in str(caught.value)


def test_search_order(no_soundfonts, tmp_path, monkeypatch):
    system, pretty_midi_dir = no_soundfonts
    (pretty_midi_dir / "TimGM6mb.sf2").write_bytes(b"x")
    assert find_soundfont(None) == pretty_midi_dir / "TimGM6mb.sf2"
    assert "pretty_midi" not in sys.modules  # found without importing it

    (system / "MuseScore_General.sf3").write_bytes(b"x")  # SF3 is never picked
    assert find_soundfont(None) == pretty_midi_dir / "TimGM6mb.sf2"
    (system / "Another.sf2").write_bytes(b"x")
    assert find_soundfont(None) == system / "Another.sf2"
    (system / "TimGM6mb.sf2").write_bytes(b"x")
    assert find_soundfont(None) == system / "TimGM6mb.sf2"
    (system / "FluidR3_GM.sf2").write_bytes(b"x")
    assert find_soundfont(None) == system / "FluidR3_GM.sf2"

    from_env = tmp_path / "env.sf2"
    from_env.write_bytes(b"x")
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(from_env))
    assert find_soundfont(None) == from_env
    explicit = tmp_path / "mine.sf3"
    explicit.write_bytes(b"x")
    assert find_soundfont(str(explicit)) == explicit


def test_named_soundfont_that_does_not_exist(no_soundfonts, tmp_path, monkeypatch):
    with pytest.raises(InputMissingError, match="--soundfont"):
        find_soundfont(str(tmp_path / "nope.sf2"))
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(tmp_path / "gone.sf2"))
    with pytest.raises(InputMissingError, match="MTOOLS_SOUNDFONT"):
        find_soundfont(None)


def test_a_bare_soundfont_name_is_looked_for_in_the_system_folders(no_soundfonts, tmp_path,
                                                                   monkeypatch):
    system, _ = no_soundfonts
    (system / "FluidR3_GM.sf2").write_bytes(b"x")
    assert find_soundfont("FluidR3_GM.sf2") == system / "FluidR3_GM.sf2"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FluidR3_GM.sf2").write_bytes(b"x")  # one here wins
    assert find_soundfont("FluidR3_GM.sf2").resolve() == tmp_path / "FluidR3_GM.sf2"
    with pytest.raises(InputMissingError, match="looked in"):
        find_soundfont("Other.sf2")
    with pytest.raises(InputMissingError, match="is a folder"):
        find_soundfont(str(system))


def test_missing_tinysoundfont_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # import fails
    with pytest.raises(RuntimeUnavailableError) as caught:
        render_score(make_score([Note(60, 100, 0.0, 0.5)]))
    assert "pip install --no-deps tinysoundfont" in str(caught.value)


# --- rendering -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tinysoundfont():
    return pytest.importorskip("tinysoundfont", reason="tinysoundfont is not installed "
                               "(pip install --no-deps tinysoundfont)")


@pytest.fixture(scope="module")
def soundfont(tinysoundfont):
    try:
        return find_soundfont(None)
    except (RuntimeUnavailableError, InputMissingError) as exc:
        pytest.skip(f"no soundfont to render with: {exc}")


def rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
    span = audio[round(start_s * SAMPLE_RATE_HZ):round(end_s * SAMPLE_RATE_HZ)]
    return float(np.sqrt(np.mean(span ** 2)))


def centroid_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=1)))
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE_HZ)
    return float((spectrum * freqs).sum() / spectrum.sum())


def render_notes(notes, soundfont, **fields) -> np.ndarray:
    return render_score(make_score(notes, **fields), sample_rate_hz=SAMPLE_RATE_HZ,
                        soundfont=soundfont)


def test_two_notes_render_to_stereo_with_a_tail(soundfont):
    audio = render_notes([Note(60, 100, 0.0, 0.5),
                          Note(67, 80, 0.5, 1.0, program=40, instrument=1)], soundfont)
    assert audio.dtype == np.float32 and audio.shape[1] == 2
    assert len(audio) == round((1.0 + RELEASE_TAIL_S) * SAMPLE_RATE_HZ)
    assert rms(audio, 0.0, 0.5) > 1e-3 and rms(audio, 0.5, 1.0) > 1e-3
    assert np.abs(audio).max() <= 1.0


def test_velocity_sets_loudness(soundfont):
    soft = render_notes([Note(60, 30, 0.0, 0.5)], soundfont)
    loud = render_notes([Note(60, 120, 0.0, 0.5)], soundfont)
    assert rms(loud, 0.0, 0.5) > 2 * rms(soft, 0.0, 0.5)


def test_drums_play_from_the_percussion_bank(soundfont):
    def brightness(is_drum):
        kick = render_notes([Note(36, 100, 0.0, 0.2, is_drum=is_drum)], soundfont)
        hihat = render_notes([Note(42, 100, 0.0, 0.2, is_drum=is_drum)], soundfont)
        assert rms(kick, 0.0, 0.2) > 1e-3 and rms(hihat, 0.0, 0.2) > 1e-3
        return centroid_hz(hihat) / centroid_hz(kick)

    # A closed hi-hat is far brighter than a bass drum; as piano keys 36 and
    # 42 are six semitones apart and sound alike.
    assert brightness(is_drum=True) > 2.0
    assert brightness(is_drum=False) < 1.5


def test_sustain_pedal_holds_released_notes(soundfont):
    note = Note(60, 100, 0.0, 0.3)
    pedal = [ControlChange(0.0, 64, 127), ControlChange(1.5, 64, 0)]
    held = render_notes([note], soundfont, control_changes=pedal)
    dry = render_notes([note], soundfont)
    assert len(held) == round((1.5 + RELEASE_TAIL_S) * SAMPLE_RATE_HZ)
    assert rms(held, 0.6, 1.2) > 5 * rms(dry, 0.6, 1.2)
    assert rms(held, 2.2, 2.5) < 0.1 * rms(held, 0.0, 0.3)  # let go after the pedal


def test_dense_mix_is_normalised_not_clipped(soundfont):
    # 120 loud notes peak near 2.1 with TimGM6mb; one note stays as it is.
    chord = [Note(p, 127, 0.0, 1.0, program=prog, instrument=prog)
             for p in range(36, 96, 2) for prog in (0, 19, 48, 61)]
    assert np.abs(render_notes(chord, soundfont)).max() == pytest.approx(NORMALISED_PEAK)
    single = render_notes([Note(60, 100, 0.0, 1.0)], soundfont)
    assert np.abs(single).max() < 0.5 * NORMALISED_PEAK


def test_empty_score_is_the_tail_of_silence(soundfont):
    audio = render_notes([], soundfont)
    assert audio.shape == (round(RELEASE_TAIL_S * SAMPLE_RATE_HZ), 2)
    assert not audio.any()


def test_bad_soundfont_file_is_a_format_error(tinysoundfont, tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(InputFormatError, match="not a readable SF2 soundfont"):
        render_notes([Note(60, 100, 0.0, 0.5)], bad)
