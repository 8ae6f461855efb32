"""MusicVAE trios (melody, bass, drums): the packed encoding, the data
made with MMA, the per-part loss and figures, and `interpolate` with a
tiny random trio_16bar."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from builders import melody  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_music_vae  # noqa: E402
from mtools.io.midi import score_to_midi  # noqa: E402
from mtools.models.chords import chord_row  # noqa: E402
from mtools.models.events import NO_EVENT, NOTE_OFF  # noqa: E402
from mtools.models.interpolation import trio_events  # noqa: E402
from mtools.models.music_vae import MusicVae, VaeSpace, reconstruction_figures, \
    windows_of  # noqa: E402
from mtools.models.registry import resolve_model  # noqa: E402
from mtools.score import Note, Score, Tempo, TimeSignature  # noqa: E402
from mtools.training.music_vae import VaeLoss  # noqa: E402
from mtools.training.nets import MusicVAENet  # noqa: E402
from mtools.training.trios import accompaniment_events, chart_seed, chord_chart, \
    grooves_for, mma_chord, play_chart  # noqa: E402
from mtools.training.vae_windows import transpose_ids  # noqa: E402

TRIO = VaeSpace("trio", 32)
needs_mma = pytest.mark.skipif(shutil.which("mma") is None, reason="mma (apt-get install mma)")


def trio_score(bars: int = 2) -> Score:
    """A melody (piano, high), a bass (GM 33, low) and a kick on every beat, at 120 qpm."""
    notes = [Note(72 + (i % 3), 90, i * 0.5, i * 0.5 + 0.5) for i in range(4 * bars)]
    notes += [Note(36, 80, i * 2.0, i * 2.0 + 1.0, program=33, instrument=1) for i in range(bars)]
    notes += [Note(36, 100, i * 0.5, i * 0.5 + 0.1, instrument=9, is_drum=True)
              for i in range(4 * bars)]
    return Score(notes=tuple(notes), tempos=(Tempo(0.0, 120.0),),
                 time_signatures=(TimeSignature(0.0),), total_s=bars * 2.0)


@pytest.fixture(scope="module")
def trio_path(tmp_path_factory):
    return str(tiny_music_vae(tmp_path_factory.mktemp("trio"), "trio_16bar"))


# --- the encoding ------------------------------------------------------------------


def test_parts_pack_into_one_id_and_features_are_two_one_hots_and_the_bits():
    rng = np.random.default_rng(0)
    parts = np.stack([rng.integers(0, 90, (4, 32)), rng.integers(0, 90, (4, 32)),
                      rng.integers(0, 512, (4, 32))], axis=-1)
    ids = TRIO.pack(parts)
    assert np.array_equal(TRIO.parts(ids), parts)
    assert TRIO.segments == (90, 90, 512) and TRIO.num_classes == 692
    features = TRIO.features(ids)
    assert features.shape == (4, 32, 189)
    assert np.array_equal(features[..., :90].argmax(-1), parts[..., 0])
    assert np.array_equal(features[..., 90:180].argmax(-1), parts[..., 1])
    assert features[..., :180].sum(-1).max() == 2
    bits = (features[..., 180:] * (1 << np.arange(9))).sum(-1)
    assert np.array_equal(bits, parts[..., 2])


def test_trio_events_round_trip_and_windows_strike_held_melody_and_bass_notes():
    steps = 48
    events = np.zeros((steps, 3), np.int64)
    events[:, :2] = NO_EVENT
    events[0] = [60, 36, 1]
    events[20, 1] = NOTE_OFF
    events[24, 2] = 5
    ids = TRIO.ids_from_events(events)
    assert np.array_equal(TRIO.events_from_ids(ids), events)
    windows = windows_of(events, TRIO, hop=16)
    assert windows.dtype == np.int32 and len(windows) == 2  # starts 0 and 16 (32 runs short)
    second = TRIO.events_from_ids(windows[1])
    assert second[0].tolist() == [60, 36, 0]  # both held notes struck again, no drum there
    assert second[4, 1] == NOTE_OFF and second[8, 2] == 5


def test_transposition_moves_melody_and_bass_but_not_the_drums():
    events = np.zeros((32, 3), np.int64)
    events[:, :2] = NO_EVENT
    events[0], events[8] = [60, 40, 3], [64, 43, 1]
    ids = TRIO.ids_from_events(events)[None]
    moved = TRIO.events_from_ids(transpose_ids(ids, np.array([2]), TRIO)[0])
    assert moved[0].tolist() == [62, 42, 3] and moved[8].tolist() == [66, 45, 1]
    top = events.copy()
    top[0, 0] = 108
    stuck = transpose_ids(TRIO.ids_from_events(top)[None], np.array([1]), TRIO)
    assert np.array_equal(stuck[0], TRIO.ids_from_events(top))  # would leave the range


@pytest.mark.parametrize("config, column, kind", [("bass_2bar", 1, "melody"),
                                                  ("trio_drums_2bar", 2, "drums")])
def test_part_configs_train_on_one_part_of_the_trios(monkeypatch, config, column, kind):
    from mtools.training import trios
    from mtools.training.trios import TrioLine
    from mtools.training.vae_windows import find_config, load_windows

    rng = np.random.default_rng(0)
    events = np.stack([rng.integers(60, 80, 64), rng.integers(36, 48, 64),
                       rng.integers(0, 512, 64)], axis=1).astype(np.int16)
    monkeypatch.setattr(trios, "load_trios", lambda source, progress=None: [
        TrioLine(events=events, piece="nottingham/tune", groove="8Beat")])
    config = find_config(config)
    windows = load_windows(config, config.default_sources, "all")
    assert np.array_equal(windows, windows_of(events[:, column], config.space, 16))
    assert config.space.kind == kind and len(windows) == 3  # 4 bars: a window a bar line


def test_the_loss_sums_one_cross_entropy_per_part():
    torch.manual_seed(0)
    model = MusicVAENet(TRIO.input_size, TRIO.num_classes, z_size=4, enc_hidden=4, dec_hidden=4,
                        dec_layers=1).eval()
    rng = np.random.default_rng(1)
    ids = TRIO.pack(np.stack([rng.integers(0, 90, (3, 32)), rng.integers(0, 90, (3, 32)),
                              rng.integers(0, 512, (3, 32))], axis=-1))
    features = torch.from_numpy(TRIO.features(ids))
    targets = torch.from_numpy(TRIO.parts(ids))
    with torch.no_grad():
        loss = VaeLoss(beta=0.0, free_bits=0.0, segments=TRIO.segments)(
            model, (features, features, targets))[0]
        logits = model.teacher_forced(model.encode(features)[0], features)
        expected = 0.0
        for k, (lo, hi) in enumerate([(0, 90), (90, 180), (180, 692)]):
            logp = torch.log_softmax(logits[..., lo:hi], dim=-1)
            expected -= logp.gather(2, targets[..., k:k + 1]).sum() / 3
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_figures_of_a_trio_are_over_its_parts(trio_path):
    model = MusicVae.from_ref(resolve_model(trio_path))
    rng = np.random.default_rng(2)
    parts = np.stack([rng.integers(0, 90, (5, 256)), rng.integers(0, 90, (5, 256)),
                      rng.integers(0, 512, (5, 256))], axis=-1)
    figures = reconstruction_figures(model, model.space.pack(parts))
    means = np.mean([figures[f"{p}_accuracy_sampled"] for p in ("melody", "bass", "drums")])
    assert figures["accuracy_sampled"] == pytest.approx(means, abs=1e-4)
    assert 0.0 <= figures["accuracy_teacher_forced"] <= 1.0 and figures["nll_per_step"] > 0


# --- the data ----------------------------------------------------------------------


def test_chords_become_an_mma_chart_of_one_chord_a_beat():
    rows = np.array([chord_row("G")] * 8 + [chord_row("Em")] * 4 + [chord_row("D7")] * 4
                    + [chord_row("N.C.")] * 8, np.int16)
    assert [mma_chord(rows[i]) for i in (0, 8, 12, 16)] == ["G", "Em", "D7", "z"]
    chart = chord_chart(rows, "8Beat", seed=7)
    assert chart.splitlines()[0] == "RndSeed 7" and chart.splitlines()[3] == "Groove 8Beat"
    assert chart.splitlines()[4:] == ["1 G G Em D7", "2 z z z z"]  # 6 beats padded to 8
    assert grooves_for("piece") == grooves_for("piece") and len(set(grooves_for("piece"))) == 2


def test_accompaniment_keeps_the_bass_track_and_the_drum_classes():
    notes = [Note(43, 80, 0.0, 0.5, program=33, instrument=1),
             Note(40, 80, 1.0, 1.25, program=33, instrument=1),
             Note(60, 70, 0.0, 2.0, program=0, instrument=2),  # the chords: not bass
             Note(36, 100, 0.0, 0.1, instrument=9, is_drum=True),
             Note(38, 100, 0.5, 0.6, instrument=9, is_drum=True)]
    score = Score(notes=tuple(notes), tempos=(Tempo(0.0, 120.0),),
                  time_signatures=(TimeSignature(0.0),), total_s=2.0)
    events = accompaniment_events(score, 16)
    assert events[:, 0].tolist()[:10] == [43, NO_EVENT, NO_EVENT, NO_EVENT, NOTE_OFF, NO_EVENT,
                                          NO_EVENT, NO_EVENT, 40, NO_EVENT]
    assert events[0, 1] == 1 and events[4, 1] == 2 and events[1:4, 1].sum() == 0


@needs_mma
def test_mma_plays_a_bass_on_the_chords_and_a_kit():
    rows = np.array([chord_row("C")] * 16 + [chord_row("G")] * 16, np.int16)
    events = accompaniment_events(play_chart(chord_chart(rows, "8Beat")), 32)
    bass = events[:, 0]
    assert bass[0] % 12 == 0 and bass[16] % 12 == 7  # the roots on the downbeats
    assert np.count_nonzero(events[:, 1]) >= 8 and events[0, 1] & 1  # a kick on beat one


@needs_mma
def test_mma_plays_a_chart_the_same_every_time_and_its_seed_decides():
    # Swing draws random timing and volumes (unseeded, two plays differ)
    rows = np.array([chord_row(name) for name in ("C", "Am", "F", "G7") for _ in range(16)],
                    np.int16)
    seed = chart_seed("tune", "Swing")
    plays = [play_chart(chord_chart(rows, "Swing", seed)) for _ in range(2)]
    assert plays[0].notes == plays[1].notes
    assert chart_seed("tune", "Swing") != chart_seed("tune", "8Beat")
    scores = [play_chart(chord_chart(rows, "Swing", seed)) for seed in (1, 2)]
    assert [n.velocity for n in scores[0].notes] != [n.velocity for n in scores[1].notes]


def test_each_tune_plays_each_of_its_grooves_with_its_own_seed(monkeypatch):
    from types import SimpleNamespace

    from mtools.training import trios

    charts = []
    monkeypatch.setattr(trios, "play_chart", lambda chart: charts.append(chart))
    monkeypatch.setattr(trios, "accompaniment_events",
                        lambda score, steps: np.zeros((steps, 2), np.int16))
    sheet = SimpleNamespace(piece="tune", part="", chords=np.array([chord_row("C")] * 32, np.int16),
                            melody=SimpleNamespace(steps_per_bar=16, events=[60] + [NO_EVENT] * 31))
    assert [line.groove for line in trios.trio_lines(sheet)] == grooves_for("tune")
    assert [chart.splitlines()[0] for chart in charts] == [
        f"RndSeed {chart_seed('tune', groove)}" for groove in grooves_for("tune")]


def test_the_trios_are_made_again_when_another_mma_is_installed(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from mtools.training import corpora, trios

    monkeypatch.setenv("MTOOLS_CACHE", str(tmp_path))
    sheet = SimpleNamespace(piece="tune", part="valid")
    monkeypatch.setattr(corpora, "load_lead_sheets", lambda source, progress=None: [sheet])
    made = []

    def lines(sheet):
        made.append(trios.mma_version())
        return [trios.TrioLine(np.zeros((16, 3), np.int16), sheet.piece, "Swing", sheet.part)]

    monkeypatch.setattr(trios, "trio_lines", lines)
    for version in ("21.09", "21.09", None, "22.01"):
        monkeypatch.setattr(trios, "mma_version", lambda: version)
        assert [line.piece for line in trios.load_trios("nottingham")] == ["tune"]
    # made by 21.09, read again by 21.09 and without mma, made again by 22.01
    assert made == ["21.09", "22.01"]
    assert trios.cached_mma_version("nottingham") == "22.01"


def test_eval_warns_when_the_trios_came_from_another_mma_than_the_cards(monkeypatch, capsys):
    from types import SimpleNamespace

    from mtools.commands import eval as eval_command
    from mtools.training import trios

    card = SimpleNamespace(spec="music_vae:trio_16bar", training={"trio_mma": "21.09"})
    for made_by, warned in (("21.09", False), ("22.01", True), (None, True)):
        monkeypatch.setattr(trios, "cached_mma_version", lambda source: made_by)
        eval_command._warn_other_mma(SimpleNamespace(card=card), ["nottingham"])
        err = capsys.readouterr().err
        assert ("measured on trios made by mma 21.09" in err) == warned, err
    card.training = {}
    eval_command._warn_other_mma(SimpleNamespace(card=card), ["nottingham"])
    assert capsys.readouterr().err == ""


# --- the command -------------------------------------------------------------------


def test_the_trio_of_a_score_is_its_top_line_its_bass_track_and_its_drums():
    line, events = trio_events(trio_score(), 4)
    assert events.shape == (32, 3) and line.steps_per_bar == 16
    assert events[0].tolist() == [72, 36, 1] and events[4, 0] == 73  # quarter notes
    assert events[16, 1] == 36 and events[8, 1] == NOTE_OFF
    no_bass_program = Score(notes=tuple(Note(n.pitch, n.velocity, n.start_s, n.end_s, 0,
                                             n.instrument, n.is_drum)
                                        for n in trio_score().notes),
                            tempos=(Tempo(0.0, 120.0),), time_signatures=(TimeSignature(0.0),),
                            total_s=4.0)
    assert np.array_equal(trio_events(no_bass_program, 4)[1], events)  # the lowest track


def test_interpolating_trios_writes_melody_bass_and_drums(trio_path, tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    a.write_bytes(score_to_midi(trio_score(16)))
    b.write_bytes(score_to_midi(melody("60 _ 62 _ 64 _ 65 _ " * 32)))
    out = run(["interpolate", a, b, "--model", trio_path, "--steps", "2", "--to", "jsonl",
               "--temperature", "1", "--seed", "3"])
    assert out.code == 0, out.stderr
    notes = json.loads(out.stdout.decode().splitlines()[0])["notes"]
    assert {n.get("program", 0) for n in notes if not n.get("isDrum")} <= {0, 33}
    assert any(n.get("isDrum") for n in notes) and any(n.get("program") == 33 for n in notes)
    assert max(n["endTime"] for n in notes) <= 2 * 32.0 + 1e-6  # two 16-bar points at 120 qpm


# --- the stacked trio: a 2-bar model per part --------------------------------------


def random_trios(count: int = 40, bars: int = 17, seed: int = 0):
    from mtools.training.trios import TrioLine

    rng = np.random.default_rng(seed)
    steps = 16 * bars
    return [TrioLine(events=np.stack([rng.choice([NO_EVENT, NOTE_OFF, 72, 74, 76], steps),
                                      rng.choice([NO_EVENT, 36, 43], steps),
                                      rng.choice([0, 1, 4, 5], steps)], axis=1).astype(np.int16),
                     piece=f"nottingham/tune{i}", groove="8Beat") for i in range(count)]


@pytest.fixture
def part_models(tmp_path):
    """Tiny 2-bar donors, one per trio part, as wide in z as the trio's parts."""
    return [tiny_music_vae(tmp_path / config, config, seed=k, z_size=256)
            for k, config in enumerate(("mel_2bar", "bass_2bar", "trio_drums_2bar"))]


def test_a_trio_stands_on_a_2_bar_model_per_part_and_starts_at_their_codes(
        monkeypatch, tmp_path, part_models):
    from mtools.training import trios
    from mtools.training.loop import load_checkpoint
    from mtools.training.warm_start import load_exported
    from mtools.training.music_vae import parity_error

    monkeypatch.setattr(trios, "load_trios", lambda source, progress=None: random_trios())
    common = ["train", "music_vae", "--config", "trio_16bar", "--hidden", "8", "--batch-size",
              "4", "--out", tmp_path / "out", "--run-dir", tmp_path / "run", "--quiet"]
    inits = [word for path in part_models for word in ("--init-from", path)]
    wrong = run([*common, *inits[4:], *inits[:4], "--max-steps", "0"])  # drums first
    assert wrong.code == 2 and "does not fit the melody part" in wrong.stderr
    assert "melody, bass, drums" in wrong.stderr
    two = run([*common, *inits[:4], "--max-steps", "0"])
    assert two.code == 2 and "starts from 3 2-bar models, not 2" in two.stderr
    one = run([*common, *inits[:2], "--max-steps", "0"])
    assert one.code == 2 and "is not a model of parts" in one.stderr
    swapped = run([*common, *inits[2:4], *inits[:2], *inits[4:], "--max-steps", "0"])
    assert swapped.code == 2 and "is a bass model, not one for the melody part" in swapped.stderr
    started = run([*common, *inits, "--max-steps", "0"])
    assert started.code == 0, started.stderr
    card = resolve_model(str(tmp_path / "out" / "music_vae-trio_16bar.json")).card
    note = card.training["initialised_from"]
    assert [part["part"] for part in note["parts"]] == ["melody", "bass", "drums"]
    assert note["kept_initialised"] == []  # squeezes, summary, conductor: the principal start
    start = note["principal_start"]
    assert "squeeze.2.weight" in start["set"] and "conductor.weight" in start["set"]
    assert 0 < start["components"] <= 768
    assert all(0 <= start[f"{part}_valid_bar_accuracy_teacher_forced"] <= 1
               for part in ("melody", "bass", "drums"))
    assert card.training["command"].count("--init-from") == 3
    trio, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    for k, path in enumerate(part_models):  # each part plays as its 2-bar model
        donor = MusicVAENet(90 if k < 2 else 9, 90 if k < 2 else 512, z_size=256,
                            enc_hidden=8, dec_hidden=8)
        load_exported(donor, path, parity_error)
        assert torch.equal(trio.decoders[k].weight_hh_l1, donor.decoder.weight_hh_l1)
        assert torch.equal(trio.encoders[k].weight_ih_l0, donor.encoder.weight_ih_l0)
    export = tmp_path / "out" / "music_vae-trio_16bar.onnx"
    model = MusicVae.from_ref(resolve_model(str(export)))
    assert model.hidden == 24 and model.embedding_size == 768 and model.bars == 16
    z = np.random.default_rng(0).normal(size=(2, model.z_size)).astype(np.float32)
    codes = model.embeddings(z)[:, 0]  # bar 1's code of each part, end to end
    played = model.space.parts(model.decode(z, temperature=0)[:, :16])
    for k, path in enumerate(part_models):  # bar 1 of each part: its 2-bar model's first bar
        alone = MusicVae.from_ref(resolve_model(str(path)))
        assert np.array_equal(played[..., k], alone.decode(codes[:, 256 * k:256 * (k + 1)],
                                                           temperature=0)[:, :16])
    resumed = run([*common, "--max-steps", "0"])  # the run folder's start, its card the same
    assert resumed.code == 0, resumed.stderr
    again = resolve_model(str(export)).card.training
    assert again["command"] == card.training["command"]
    assert again["initialised_from"]["parts"] == note["parts"]
    whole = run([*common[:-5], "--out", tmp_path / "out2", "--run-dir", tmp_path / "run2",
                 "--init-from", export, "--max-steps", "0", "--quiet"])  # its own export, whole
    assert whole.code == 0, whole.stderr
    copy = resolve_model(str(tmp_path / "out2" / export.name)).card
    assert copy.training["initialised_from"]["file"] == export.name
    figures = ("accuracy_teacher_forced", "accuracy_sampled", "kl_per_window")
    assert [copy.metrics[f] for f in figures] == [card.metrics[f] for f in figures]


def test_a_trio_start_keeps_each_parts_main_directions_and_whitens_z():
    from mtools.training import stacked
    from mtools.training.music_vae import build_network
    from mtools.training.vae_windows import find_config

    torch.manual_seed(0)
    model = build_network(find_config("trio_16bar"), {
        "enc_hidden": 4, "dec_hidden": 4, "part_z_size": 6, "squeeze": 3, "z_size": 20})
    model.config["bars"] = bars = 2  # two bars of three parts: 2 · 3 · 3 squeezed codes
    model.summary = torch.nn.Linear(18, 20)
    model.conductor = torch.nn.Linear(20, 18)
    donors = [MusicVAENet(w, c, z_size=6, enc_hidden=4, dec_hidden=4)
              for w, c in ((90, 90), (90, 90), (9, 512))]
    encodings = []
    for k, donor in enumerate(donors):  # codes that vary along 3 directions per part
        stacked.take_part(model, k, donor)
        codes = torch.randn(400 * bars, 3) @ torch.randn(3, 6) + torch.randn(6)
        encodings.append(torch.linalg.lstsq(donor.to_mu.weight, (codes - donor.to_mu.bias).T,
                                            driver="gelsd").solution.T)
    with torch.no_grad():
        kept = stacked.parts_principal_start(model, donors, encodings)
        mu, _ = model.summarize(encodings)
        back = model.embeddings(mu)  # (windows, bars, 3 · 6)
        codes = torch.cat([d.to_mu(e).reshape(-1, bars, 6) for d, e in zip(donors, encodings)], 2)
    assert kept == 18 and torch.allclose(back, codes, atol=1e-3)
    assert torch.allclose(torch.cov(mu[:, :18].T), torch.eye(18), atol=0.02)
    assert not mu[:, 18:].any()
    # a z narrower than the codes' 18 directions: the best rank-12 linear map of the codes
    # (each part in units of its 2-bar posterior's median scale)
    model.summary, model.conductor = torch.nn.Linear(18, 12), torch.nn.Linear(12, 18)
    model.summary_scale = torch.nn.Parameter(torch.zeros(12))
    model.config["z_size"] = 12
    with torch.no_grad():
        stacked.parts_principal_start(model, donors, encodings)
        back = model.embeddings(model.summarize(encodings)[0]).double()
        scale = torch.cat([stacked.donor_codes(d, e)[1].median(dim=0).values
                           for d, e in zip(donors, encodings)]).double()
    units = (codes.double() / scale).reshape(400, -1)
    centred = units - units.mean(dim=0)
    axes = torch.linalg.svd(centred, full_matrices=False)[2][:12].T
    best = (centred @ axes @ axes.T + units.mean(dim=0)).reshape(400, bars, 18) * scale
    assert torch.allclose(back, best, atol=1e-3)
    assert (back - codes).abs().max() > 0.01  # (it does lose something)


def test_a_bass_line_model_reads_the_bass_of_a_trio_or_a_lone_line(tmp_path):
    from mtools.models.interpolation import take_window

    bass = VaeSpace("melody", 32, line="bass")
    window, _ = take_window(trio_score(2), bass, "trio")
    want = trio_events(trio_score(2), 4)[1][:32, 1]  # the GM bass track, not the top line
    assert np.array_equal(window.ids, bass.ids_from_events(want)) and want[0] == 36
    lone = melody("48 _ _ _ 43 _ _ _ 48 _ _ _ 43 _ _ _")  # one piano track: the line itself
    window, _ = take_window(lone, bass, "lone")
    assert list(window.ids[:5]) == [29, 0, 0, 0, 24]  # 2 + pitch - 21
    both_hands = replace(lone, notes=lone.notes + tuple(  # a tune above it, same track
        replace(n, pitch=n.pitch + 26) for n in lone.notes))
    assert np.array_equal(take_window(both_hands, bass, "piano")[0].ids, window.ids)
    path = tiny_music_vae(tmp_path, "bass_2bar")
    assert resolve_model(str(path)).card.encoding["line"] == "bass"
    assert resolve_model("music_vae:bass_2bar").card.encoding["line"] == "bass"
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    a.write_bytes(score_to_midi(trio_score(2)))
    b.write_bytes(score_to_midi(lone))
    out = run(["interpolate", a, b, "--model", path, "--steps", "3", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    programs = {note.get("program", 0) for line in out.stdout.decode().splitlines()
                for note in json.loads(line)["notes"]}
    assert programs == {33}  # a bass line plays as a bass unless --program says otherwise
    piano = run(["interpolate", a, b, "--model", path, "--steps", "3", "--to", "jsonl",
                 "--program", "0"])
    assert {note.get("program", 0) for line in piano.stdout.decode().splitlines()
            for note in json.loads(line)["notes"]} == {0}
