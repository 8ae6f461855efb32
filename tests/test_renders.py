"""The piano-transcription training data: a tiny render set built from
synthetic scores (skipped without tinysoundfont or the Debian soundfonts),
its layout, labels, mel, crops, augmentation, atomic build and reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders import chord_notes, pedal
from mtools.errors import InputMissingError, MtoolsError, RuntimeUnavailableError
from mtools.io import render
from mtools.models.transcription import FrontEnd, KeySpace, note_labels
from mtools.score import Note, make_score
from mtools.training import corpora
from mtools.training import render_sources as sources
from mtools.training import renders as pr
from mtools.training.render_sources import PIANO
from mtools.training.audio_augment import (Augmentation, MelAugmentation, augment, augment_mel,
                                           mel_curve_db)

FRONT_END, KEYS = FrontEnd(), KeySpace()
SEGMENT_ROWS = 625  # 20 s of 512-sample hops at 16 kHz


def _needs_soundfonts() -> None:
    pytest.importorskip("tinysoundfont", reason="rendering needs tinysoundfont")
    try:
        for name in (*PIANO.train_soundfonts, PIANO.valid_soundfont):
            pr.soundfont_path(name)
    except RuntimeUnavailableError as exc:
        pytest.skip(f"soundfont missing: {exc}")
    if sources.FLUIDSYNTH_SOUNDFONTS:
        _needs_fluidsynth()


def _needs_fluidsynth() -> None:
    from mtools.training.fluid_render import _import_fluidsynth

    try:
        _import_fluidsynth()
    except RuntimeUnavailableError as exc:
        pytest.skip(f"FluidSynth missing: {exc}")


def test_fluidsynth_plays_each_note_at_its_pitch_and_louder_when_struck_harder():
    _needs_fluidsynth()
    from mtools.training.fluid_render import render_fluidsynth

    try:
        soundfont = pr.soundfont_path(sources.FLUIDSYNTH_SOUNDFONTS[0])
    except RuntimeUnavailableError as exc:
        pytest.skip(f"soundfont missing: {exc}")
    rate = FRONT_END.sample_rate_hz
    levels = []
    for velocity in (40, 110):
        audio = render_fluidsynth(make_score([Note(69, velocity, 0.1, 0.9)]), sample_rate_hz=rate,
                                  soundfont=soundfont).mean(axis=1)
        assert len(audio) == round((0.9 + 1.0) * rate)  # the note, then the release tail
        held = audio[int(0.2 * rate):int(0.8 * rate)]
        spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held))))
        assert np.fft.rfftfreq(len(held), 1 / rate)[np.argmax(spectrum)] == pytest.approx(440, abs=5)
        assert np.abs(audio[:int(0.09 * rate)]).max() < 1e-3  # silent (dither only) before the onset
        levels.append(np.sqrt(np.mean(held ** 2)))
    assert levels[1] > 2 * levels[0]


def _notes_score(seconds: float, seed: int, **fields):
    """A note every 0.25 s for `seconds`, random keys and velocities, with
    the pedal down from 1 s to 3 s."""
    rng = np.random.default_rng(seed)
    notes = [Note(int(rng.integers(21, 109)), int(rng.integers(20, 127)), t, t + 0.3)
             for t in np.arange(0.0, seconds, 0.25)]
    notes += chord_notes([48, 52, 55], 0.5, 1.5, velocity=70)
    return make_score(notes, control_changes=pedal(0, 1.0, 3.0), **fields)


SOURCES = {
    "train": [("long", _notes_score(25.0, 1)),  # two segments
              ("tail", _notes_score(6.0, 2, total_s=50.0))],  # silent segments at the end
    "valid": [("held-out", _notes_score(22.0, 3))],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One build of SOURCES in a private cache: (folder, manifest)."""
    _needs_soundfonts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTOOLS_CACHE", str(tmp_path_factory.mktemp("renders-cache")))
        folder = pr.build_renders(hours_train=1.0, hours_valid=1.0, sources=SOURCES)
        yield folder, json.loads((folder / "manifest.json").read_text())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _expected_labels(part: str, piece: str, take: dict, frames: int) -> dict:
    chosen = sources.Take(take["soundfont"], take["program"], take["detune_cents"])
    return note_labels(PIANO.prepare(dict(SOURCES[part])[piece], chosen), frames,
                       FRONT_END, KEYS)


def test_files_shapes_and_dtypes(built):
    folder, manifest = built
    assert manifest["format"] == pr.FORMAT_VERSION
    for part in pr.PARTS:
        rows = np.load(folder / f"{part}-mel.npy", mmap_mode="r")
        assert rows.dtype == np.float16 and rows.shape[1] == 229
        for name in pr.LABELS:
            array = np.load(folder / f"{part}-{name}.npy", mmap_mode="r")
            assert array.dtype == np.uint8 and array.shape == (len(rows), 88)
        segments = np.load(folder / f"{part}-segments.npy")
        assert segments.dtype == np.int64 and segments.shape == (manifest["parts"][part]
                                                                 ["segments"], 2)
        # Segments tile the rows in order, none longer than SEGMENT_S.
        assert segments[0, 0] == 0 and segments[-1, 1] == len(rows)
        assert (segments[1:, 0] == segments[:-1, 1]).all()
        assert (np.diff(segments, axis=1) <= SEGMENT_ROWS).all()
    assert manifest["parts"]["train"]["soundfonts"] == list(PIANO.train_soundfonts)
    assert manifest["parts"]["valid"]["soundfonts"] == [PIANO.valid_soundfont]


def test_the_cache_tells_the_hours_it_was_built_for(cache):
    assert pr.cached_hours() is None  # an empty cache
    pr.renders_dir().mkdir(parents=True)
    manifest = pr.renders_dir() / "manifest.json"
    manifest.write_text(json.dumps({"arguments": {"hours_train": 36, "hours_valid": 1.0}}))
    assert pr.cached_hours() == (36.0, 1.0)
    manifest.write_text(json.dumps({"arguments": None}))
    assert pr.cached_hours() is None


def test_segments_and_trailing_silence(built):
    _, manifest = built
    takes = {t["performance"]: t for t in manifest["parts"]["train"]["takes"]}
    assert takes["long"]["segments"][1] == 2
    assert takes["tail"]["segments"][1] == 1  # 51 s of audio, notes only in the first 20
    assert manifest["parts"]["train"]["performances"] == 2
    assert manifest["parts"]["valid"]["seconds"] == pytest.approx(
        pr.load_renders("valid").segments[-1, 1] * FRONT_END.frame_s)


def test_labels_agree_with_note_labels(built):
    _, manifest = built
    for part in pr.PARTS:
        renders = pr.load_renders(part)
        for take in manifest["parts"][part]["takes"]:
            first, count = take["segments"]
            start, end = renders.segments[first, 0], renders.segments[first + count - 1, 1]
            expected = _expected_labels(part, take["piece"], take, end - start)
            for name in ("onset", "frame", "offset"):
                np.testing.assert_array_equal(getattr(renders, name)[start:end], expected[name])
            np.testing.assert_array_equal(renders.velocity[start:end],
                                          np.rint(expected["velocity"] * 127))


def test_evaluation_pieces_never_share_a_piece_with_the_choosing_ones(built):
    other = ("unseen", _notes_score(3.0, 4))
    again = ("held-out", _notes_score(3.0, 5))  # another performance of a cached valid piece
    chosen = pr.valid_pieces(5, sources=[*SOURCES["valid"], other], selection=True)
    scored = pr.valid_pieces(5, sources=[*SOURCES["valid"], other, again])
    assert [name for name, _, _ in chosen] == ["held-out"]
    assert [name for name, _, _ in scored] == ["unseen"]


def test_a_cards_valid_part_keeps_its_pieces_out_of_evaluation_without_a_cache(cache):
    # A fresh machine has no cached renders: the card's record of what the
    # model chose on decides, or the held-out set would take those pieces.
    _needs_soundfonts()
    other = ("unseen", _notes_score(3.0, 4))
    everything = [*SOURCES["valid"], other]
    part = {"takes": [{"piece": "held-out", "performance": "held-out"}]}
    assert [name for name, _, _ in pr.valid_pieces(5, sources=everything)] == ["unseen", "held-out"]
    assert [name for name, _, _ in pr.valid_pieces(5, sources=everything, valid_part=part)] \
        == ["unseen"]
    assert [name for name, _, _ in pr.valid_pieces(5, sources=everything, valid_part=part,
                                                   selection=True)] == ["held-out"]


def test_a_cards_valid_part_wins_over_the_cached_one(built):
    other = ("unseen", _notes_score(3.0, 4))
    part = {"takes": [{"piece": "unseen", "performance": "unseen"}]}
    scored = pr.valid_pieces(5, sources=[*SOURCES["valid"], other], valid_part=part)
    assert [name for name, _, _ in scored] == ["held-out"]


def test_card_valid_part_reads_the_renders_a_card_records():
    from types import SimpleNamespace

    part = {"takes": [{"piece": "p", "performance": "p/a.mid"}], "hours": 1.0}
    assert pr.card_valid_part(SimpleNamespace(training={"renders": {"parts": {"valid": part}}})) \
        is part
    for odd in ({}, {"renders": None}, {"renders": "x"}, {"renders": {"parts": None}},
                {"renders": {"parts": {}}}, {"renders": {"parts": {"valid": {"takes": None}}}}):
        assert pr.card_valid_part(SimpleNamespace(training=odd)) is None, odd


def test_choosing_on_a_card_that_names_no_validation_performances_says_so(cache):
    with pytest.raises(InputMissingError, match="card names no piano validation"):
        pr.valid_pieces(1, sources=SOURCES["valid"], selection=True, valid_part={"takes": []})


def test_bundled_transcription_cards_record_their_valid_part():
    # `mtools eval --model M CORPUS --split valid` keeps these pieces out
    from mtools.models.registry import resolve_model
    from mtools.training.render_sources import INSTRUMENTS

    for instrument in INSTRUMENTS.values():
        part = pr.card_valid_part(resolve_model(instrument.model).card)
        assert part is not None and part["takes"], instrument.model


def test_evaluation_pieces_can_be_rendered_with_another_held_out_soundfont(built):
    other = ("unseen", _notes_score(3.0, 4))
    (_, score, usual), = pr.valid_pieces(1, sources=[*SOURCES["valid"], other])
    (name, same_score, fluid), = pr.valid_pieces(1, sources=[*SOURCES["valid"], other],
                                                  soundfont="FluidR3_GM.sf2")
    assert name == "unseen" and same_score == score
    take = sources.Take("FluidR3_GM.sf2", PIANO.valid_program)
    assert np.array_equal(fluid, pr.render_take(PIANO, score, take))
    assert not np.array_equal(fluid[:len(usual)], usual[:len(fluid)])


def test_choosing_needs_the_cached_validation_renders(cache):
    with pytest.raises(InputMissingError, match="validation renders"):
        pr.valid_pieces(1, sources=SOURCES["valid"], selection=True)


def test_clean_mel_matches_the_front_end(built):
    (name, score, audio), = pr.valid_pieces(1, sources=SOURCES["valid"], selection=True)
    assert name == "held-out" and audio.dtype == np.float32 and audio.ndim == 1
    renders = pr.load_renders("valid")
    whole = FRONT_END.log_mel(audio)  # what streaming inference computes
    last = renders.segments[-1, 1]
    # Every row, segment edges included, sees the audio around it.
    np.testing.assert_allclose(renders.mel[:last], whole[:last], atol=0.01)


def test_training_mel_is_augmented(built):
    _, manifest = built
    take = manifest["parts"]["train"]["takes"][0]
    chosen = sources.Take(take["soundfont"], take["program"], take["detune_cents"])
    score = PIANO.prepare(dict(SOURCES["train"])[take["piece"]], chosen)
    clean = FRONT_END.log_mel(pr.render_take(PIANO, score, chosen))
    renders = pr.load_renders("train")
    start, end = renders.segments[take["segments"][0]]
    assert np.abs(renders.mel[start:end] - clean[:end - start]).mean() > 0.1


def test_crop_and_batch(built):
    renders = pr.load_renders("valid")
    rng = np.random.default_rng(0)
    crop = renders.crop(rng, 100)
    assert crop["mel"].shape == (100, 229) and crop["onset"].shape == (100, 88)
    assert all(value.dtype == np.float32 for value in crop.values())
    assert 0.0 <= crop["velocity"].min() and crop["velocity"].max() <= 1.0
    # Longer than every segment: padded with silence after the segment's rows.
    long = renders.crop(rng, 700)
    pad_rows = (long["mel"] == pr.SILENT_MEL).all(axis=1)
    assert pad_rows[-(700 - SEGMENT_ROWS):].all()
    assert not long["frame"][pad_rows].any()
    batch = renders.batch(np.random.default_rng(1), 3, 64)
    assert batch["mel"].shape == (3, 64, 229) and batch["velocity"].shape == (3, 64, 88)
    again = renders.batch(np.random.default_rng(1), 3, 64)
    np.testing.assert_array_equal(batch["mel"], again["mel"])


def test_augmentation_is_seeded_and_changes_the_audio():
    every = Augmentation(reverb_p=1.0, eq_p=1.0, noise_p=1.0, gain_p=1.0)
    rng = np.random.default_rng(5)
    audio = (0.3 * np.sin(np.arange(48_000) * 2 * np.pi * 440 / 16_000)).astype(np.float32)
    context = rng.standard_normal(8000).astype(np.float32) * 0.1
    first = augment(audio, np.random.default_rng(7), every, context=context)
    np.testing.assert_array_equal(
        first, augment(audio, np.random.default_rng(7), every, context=context))
    assert first.dtype == np.float32 and first.shape == audio.shape
    assert np.abs(first).max() <= 1.0
    assert np.abs(first - audio).mean() > 1e-3
    assert not np.array_equal(first, augment(audio, np.random.default_rng(8), every))
    none = Augmentation(reverb_p=0.0, eq_p=0.0, noise_p=0.0, gain_p=0.0)
    np.testing.assert_allclose(augment(audio, rng, none), audio, atol=1e-7)


def test_mel_augmentation_scales_each_bands_power_and_keeps_silence():
    front_end = FrontEnd()
    centres = front_end.band_centres_hz
    mel = front_end.log_mel(0.3 * np.sin(np.arange(16_000) * 2 * np.pi * 440 / 16_000))
    mel[:5] = pr.SILENT_MEL  # silent frames, as crops are padded
    every = MelAugmentation(p=1.0)
    changed = augment_mel(mel, centres, np.random.default_rng(3), every)
    assert changed.dtype == np.float32 and changed.shape == mel.shape
    np.testing.assert_allclose(changed[:5], pr.SILENT_MEL, atol=1e-4)
    # the same curve as mel_curve_db draws after the p draw, on the band's power
    rng = np.random.default_rng(3)
    rng.random()
    curve_db = mel_curve_db(centres, rng, every)
    loud = mel > -4.0  # power far above the log floor: the change is exactly the curve
    gained_db = 10.0 * (changed.astype(np.float64) - mel) / np.log(10.0)
    np.testing.assert_allclose(gained_db[loud], np.broadcast_to(curve_db, mel.shape)[loud],
                               atol=1e-3)
    no_gain = MelAugmentation(p=1.0, bump_db=20.0, gain_db=(0.0, 0.0))
    assert np.abs(mel_curve_db(centres, np.random.default_rng(4), no_gain)).max() <= every.eq_db
    assert np.ptp(curve_db) > 1.0  # not a mere gain
    np.testing.assert_array_equal(changed, augment_mel(mel, centres, np.random.default_rng(3),
                                                       every))
    assert augment_mel(mel, centres, np.random.default_rng(3), MelAugmentation(p=0.0)) is mel
    flat = MelAugmentation(p=1.0, tilt_db_per_octave=0.0, bumps=0, gain_db=(6.0, 6.0))
    np.testing.assert_allclose(mel_curve_db(centres, np.random.default_rng(0), flat), 6.0)


def test_detune_bends_the_pitch():
    pytest.importorskip("tinysoundfont", reason="rendering needs tinysoundfont")
    try:
        pr.soundfont_path(PIANO.valid_soundfont)
    except RuntimeUnavailableError as exc:
        pytest.skip(str(exc))
    score = make_score([Note(69, 100, 0.0, 1.0)])
    take = sources.Take(PIANO.valid_soundfont, 0, 20.0)
    prepared = PIANO.prepare(score, take)
    assert [b.bend for b in prepared.pitch_bends] == [819]
    audio = pr.render_take(PIANO, prepared, take)[:16_000]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 16 * 16_000))
    freqs = np.fft.rfftfreq(16 * 16_000, 1 / 16_000)
    band = (freqs > 400) & (freqs < 480)
    assert freqs[band][np.argmax(spectrum[band])] == pytest.approx(440 * 2 ** (20 / 1200), abs=1)


def test_hours_limit_the_part(cache):
    _needs_soundfonts()
    folder = pr.build_renders(hours_train=10 / 3600, hours_valid=0.0,
                              sources={"train": SOURCES["train"][:1]})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parts"]["train"]["segments"] == 1
    assert manifest["parts"]["train"]["seconds"] == pytest.approx(20.0)
    assert pr.load_renders("valid").segments.shape == (0, 2)


def test_interrupted_build_leaves_nothing(cache):
    _needs_soundfonts()

    def stop(done_s, total_s, what):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pr.build_renders(hours_train=1.0, hours_valid=1.0, sources=SOURCES, progress=stop)
    assert not pr.renders_dir().exists()
    assert not list((cache / "data").iterdir())


def test_reuse_without_refresh(built, monkeypatch):
    folder, manifest = built

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(pr, "render_take", no_render)
    assert pr.build_renders(hours_train=1.0, hours_valid=1.0, sources=SOURCES) == folder
    with pytest.raises(AssertionError):
        pr.build_renders(hours_train=1.0, hours_valid=1.0, sources=SOURCES, refresh=True)
    assert json.loads((folder / "manifest.json").read_text()) == manifest  # old cache kept
    with pytest.raises(AssertionError):
        pr.build_renders(hours_train=1.0, hours_valid=1.0, seed=1, sources=SOURCES)


def test_missing_soundfont_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "SYSTEM_SOUNDFONT_DIRS", (tmp_path,))
    with pytest.raises(RuntimeUnavailableError, match="apt-get install fluid-soundfont-gm"):
        pr.soundfont_path("FluidR3_GM.sf2")
    assert issubclass(RuntimeUnavailableError, MtoolsError)


def test_asap_performances_split_by_piece():
    try:
        corpora.data_root()
    except MtoolsError:
        pytest.skip("../shared/data is absent (set MTOOLS_DATA to run this test)")
    train, valid = pr.performances("train"), pr.performances("valid")
    assert train and valid and len(train) + len(valid) == 942
    # A piece's repeat variants (folders ..._no_repeat, ..._repeat) stay in one part.
    assert not {sources.piece_id(p) for p, _ in train} & {sources.piece_id(p) for p, _ in valid}
    assert any(piece.endswith("_no_repeat") for piece, _ in train + valid)
    assert all(corpora.piece_part(sources.piece_id(piece)) == "valid" for piece, _ in valid)
    assert all(path.suffix == ".mid" and path.name != "midi_score.mid" for _, path in train)


def test_drum_renders_label_each_hit_once_in_its_class(cache):
    from builders import drums

    from mtools.training.render_sources import DRUMS

    try:
        for name in (*DRUMS.train_soundfonts, DRUMS.valid_soundfont):
            pr.soundfont_path(name)
    except RuntimeUnavailableError as exc:
        pytest.skip(f"soundfont missing: {exc}")
    _needs_fluidsynth()
    # Kick, e-kit closed hat (22, played as GM 42), snare rim (40), ride bell (53).
    hits = [(36, 0.5), (22, 1.0), (40, 1.5), (53, 2.0), (36, 2.5)]
    song = drums(hits)
    pr.build_renders(DRUMS, hours_train=1.0, hours_valid=1.0,
                     sources={"train": [("beat", song)], "valid": [("held", song)]})
    renders = pr.load_renders("valid", DRUMS)
    frame_s = DRUMS.front_end.frame_s
    onsets = np.argwhere(renders.onset[:renders.segments[-1, 1]])
    assert [tuple(map(int, row)) for row in onsets] == [
        (round(t / frame_s), cls) for t, cls in [(0.5, 0), (1.0, 2), (1.5, 1), (2.0, 7), (2.5, 0)]]
    np.testing.assert_array_equal(renders.frame[:], renders.onset[:])  # a hit is its onset
    assert renders.mel.shape[1] == DRUMS.front_end.mel_bins
    assert renders.velocity[onsets[0, 0], 0] == 100
    prepared = DRUMS.prepare(song, sources.Take("TimGM6mb.sf2", 8))
    assert [n.pitch for n in prepared.notes] == [36, 42, 40, 53, 36]
    assert {n.program for n in prepared.notes} == {8}


def test_timidity_plays_freepats_at_the_notes_time_and_pitch_with_the_pedal():
    import shutil

    if shutil.which("timidity") is None or not (sources.TIMIDITY_DIR / "freepats.cfg").is_file():
        pytest.skip("apt-get install timidity freepats")
    from mtools.training.timidity_render import render_timidity

    rate = 16_000
    score = make_score([Note(69, 100, 1.0, 1.5)], control_changes=pedal(0, 1.2, 2.5))
    audio = render_timidity(score, sample_rate_hz=rate,
                            soundfont=pr.soundfont_path("freepats.cfg")).mean(axis=1)
    assert len(audio) == round((2.5 + render.RELEASE_TAIL_S) * rate)  # to the pedal's release
    assert np.abs(audio[:int(0.99 * rate)]).max() < 1e-3  # silence kept before the onset
    held = audio[int(1.1 * rate):int(1.4 * rate)]
    spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held))))
    assert np.fft.rfftfreq(len(held), 1 / rate)[np.argmax(spectrum)] == pytest.approx(440, abs=5)
    pedalled = np.sqrt(np.mean(audio[int(2.0 * rate):int(2.3 * rate)] ** 2))
    released = np.sqrt(np.mean(audio[int(2.9 * rate):int(3.1 * rate)] ** 2))
    assert pedalled > 10 * released  # the pedal held the note past its end
