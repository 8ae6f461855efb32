"""Coconet: the piano roll, the sampler's guarantees, the frame-wise NLL,
training batches, and `harmonize`/`infill` end to end with a tiny random
network (the bundled model's quality is measured in benchmarks and its card)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clirunner import run  # noqa: E402
from tiny_models import tiny_coconet  # noqa: E402
from mtools.io.jsonl import score_to_jsonl  # noqa: E402
from mtools.io.midi import score_to_midi  # noqa: E402
from mtools.models.coconet import PARALLEL_WEIGHT, REST, ChoraleSpace, Coconet, GibbsOptions, \
    framewise_nll, generate, parallel_counts, yao_schedule  # noqa: E402
from mtools.models.harmonization import bar_starts, parse_position, parse_voices, \
    region_steps  # noqa: E402
from mtools.models.registry import resolve_model  # noqa: E402
from mtools.score import InstrumentInfo, Note, Score, Tempo, TimeSignature  # noqa: E402
from mtools.training.coconet import LOOP, ChoraleCrops, coconet_loss, export_graph, make_batch, \
    parity_error  # noqa: E402
from mtools.training.nets import CoconetNet  # noqa: E402

SPACE = ChoraleSpace()
MELODY = "67 _ _ _ 69 _ 71 _ 72 _ _ _ 71 _ _ _ 69 _ _ _ 67 _ _ _ - - 74 _ 72 _ _ _"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(tiny_coconet(tmp_path_factory.mktemp("coconet")))


@pytest.fixture(scope="module")
def net(model_path):
    return Coconet.from_ref(resolve_model(model_path))


def jsonl_scores(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_the_roll_is_one_hot_over_pitch_and_rests_are_empty():
    chorale = np.array([[[81, 60, REST, 36]]], np.int16)
    roll = SPACE.roll(chorale)
    assert roll.shape == (1, 1, 46, 4)
    assert roll[0, 0, 45, 0] == 1 and roll[0, 0, 24, 1] == 1 and roll[0, 0, 0, 3] == 1
    assert roll[0, 0, :, 2].sum() == 0 and roll.sum() == 3


def test_the_yao_schedule_anneals_from_pmax_to_pmin():
    shares = [yao_schedule(i, 100) for i in range(100)]
    assert shares[0] == pytest.approx(0.9)
    assert shares[69] > 0.1 and shares[70] == pytest.approx(0.1) and shares[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(shares, shares[1:]))


@pytest.mark.parametrize("sampler", ["gibbs", "ancestral"])
def test_sampling_changes_only_free_cells_and_stays_in_range(net, sampler):
    rng = np.random.default_rng(0)
    chorales = rng.integers(50, 70, size=(2, 12, 4)).astype(np.int16)
    free = rng.random(chorales.shape) < 0.5
    out = generate(net, chorales, free, GibbsOptions(iterations=3, sampler=sampler), rng)
    assert np.array_equal(out[~free], chorales[~free])
    assert ((out[free] >= 36) & (out[free] <= 81)).all()


def test_parallel_counts_mark_fifths_and_octaves_both_voices_reach_moving_the_same_way():
    space = ChoraleSpace()
    chorale = np.array([[[72, 64, 55, 48], [74, 65, 57, 50]]])  # S C5-D5, T G3-A3, B C3-D3
    counts = parallel_counts(chorale, space)
    at = lambda step, pitch, voice: counts[0, step, pitch - space.min_pitch, voice]  # noqa: E731
    assert at(1, 50, 3) == 2  # bass D3: octaves with the soprano, fifths with the tenor
    assert at(1, 49, 3) == 0 and at(1, 47, 3) == 0  # C#3; B2 moves against the others
    assert at(0, 48, 3) == 2  # the step before reads the same pair of chords
    assert at(1, 57, 2) == 1  # tenor A3: fifths with the bass
    assert at(1, 62, 1) == 0  # alto D4: octaves with the soprano, but by contrary motion
    rests = chorale.copy()
    rests[0, 0, 0] = REST
    assert parallel_counts(rests, space)[0, 1, 50 - space.min_pitch, 3] == 1  # no soprano before


def sampled_parallels(chorales: np.ndarray) -> int:
    space = ChoraleSpace()
    index = (chorales - space.min_pitch)[:, :, None, :]
    return int(np.take_along_axis(parallel_counts(chorales, space), index, axis=2).sum())


def test_the_sampler_all_but_forbids_parallels_unless_allowed(net):
    rng = np.random.default_rng(2)
    chorales = np.repeat(rng.integers(60, 72, size=(4, 1, 1)), 4, axis=2)
    chorales = chorales + np.array([0, -7, -12, -19]) + np.cumsum(
        rng.choice([-2, 2], size=(4, 24, 1)), axis=1)  # voices in fifths and octaves, moving together
    free = np.ones(chorales.shape, bool)
    free[:, :, 0] = False
    allowed = generate(net, chorales, free, GibbsOptions(iterations=4, parallel_weight=1.0),
                       np.random.default_rng(0))
    avoided = generate(net, chorales, free, GibbsOptions(iterations=4), np.random.default_rng(0))
    assert sampled_parallels(allowed) > 0
    assert sampled_parallels(avoided) == 0


def test_the_parallel_weight_is_applied_before_the_temperature():
    from types import SimpleNamespace

    from mtools.models.coconet import _weighed

    space = ChoraleSpace()
    chorales = np.array([[[72, 65, 60, 48], [74, REST, 60, 48]]])  # alto's pitch at step 1 is open
    logits = np.zeros((1, 2, space.pitches, 4))
    logits[0, 1, 67 - space.min_pitch, 1] = 2.0  # G4: a fifth under D5, both up: parallel
    logits[0, 1, 65 - space.min_pitch, 1] = 1.0  # F4 held: none
    model = SimpleNamespace(space=space)
    at_one = _weighed(model, chorales, logits, GibbsOptions(temperature=1.0))[0, 1, :, 1]
    ratio = at_one[67 - space.min_pitch] / at_one[65 - space.min_pitch]
    assert ratio == pytest.approx(np.e * PARALLEL_WEIGHT)
    greedy = _weighed(model, chorales, logits, GibbsOptions(temperature=0.0))[0, 1, :, 1]
    assert np.argmax(greedy) == 65 - space.min_pitch  # the network's favourite makes a parallel
    allowed = GibbsOptions(temperature=0.0, parallel_weight=1.0)
    assert np.argmax(_weighed(model, chorales, logits, allowed)[0, 1, :, 1]) == 67 - space.min_pitch


def test_each_semitone_outside_a_voices_range_weighs_a_pitch_down_unless_allowed():
    from types import SimpleNamespace

    from mtools.models.coconet import RANGE_WEIGHT, _weighed, semitones_outside

    space = ChoraleSpace()
    outside = semitones_outside(space)
    tenor, bass = 2, 3
    assert outside[69 - space.min_pitch, tenor] == 2  # A4: two above the tenor's G4
    assert outside[38 - space.min_pitch, bass] == 2  # D2: two under the bass's E2
    assert outside[60 - space.min_pitch].tolist() == [0, 0, 0, 0]  # C4: every voice sings it
    chorales = np.full((1, 1, 4), REST)
    model = SimpleNamespace(space=space)
    logits = np.zeros((1, 1, space.pitches, 4), np.float32)  # the network: no preference
    probs = _weighed(model, chorales, logits, GibbsOptions(temperature=1.0))[0, 0]
    assert probs[69 - space.min_pitch, tenor] / probs[67 - space.min_pitch, tenor] == \
        pytest.approx(RANGE_WEIGHT ** 2)
    assert probs[:, bass].argmax() == 40 - space.min_pitch  # the first pitch in range
    free = _weighed(model, chorales, logits, GibbsOptions(temperature=1.0, range_weight=1.0))
    assert np.allclose(free, 1 / space.pitches)


def test_the_commands_sample_with_the_samplers_defaults():
    import inspect

    from mtools.commands.harmonize import harmonize
    from mtools.commands.infill import infill

    for command in (harmonize, infill):
        parameters = inspect.signature(command).parameters
        assert parameters["temperature"].default == GibbsOptions().temperature
        assert parameters["iterations"].default == GibbsOptions().iterations


def test_the_same_seed_gives_the_same_samples(net):
    chorales = np.full((1, 16, 4), 60, np.int16)
    free = np.ones_like(chorales, bool)
    first = generate(net, chorales, free, GibbsOptions(iterations=2), np.random.default_rng(5))
    again = generate(net, chorales, free, GibbsOptions(iterations=2), np.random.default_rng(5))
    assert np.array_equal(first, again)


def test_framewise_nll_windows_are_exact_and_the_radius_is_tight(net):
    # The window of the receptive field gives the whole piece's figures; one
    # step less of window changes them, so the radius is not overstated.
    assert net.radius == 2 + 2 * (1 + 3)  # two residual blocks, dilations 1 and 3
    rng = np.random.default_rng(0)
    chorales = [rng.integers(40, 80, size=(n, 4)).astype(np.int16) for n in (7, 50)]
    windowed = framewise_nll(net, chorales, samples=6, rng=np.random.default_rng(1))
    whole = framewise_nll(Coconet(net.session, net.space, None), chorales, samples=6,
                          rng=np.random.default_rng(1))
    short = framewise_nll(Coconet(net.session, net.space, net.radius - 1), chorales, samples=6,
                          rng=np.random.default_rng(1))
    assert windowed["frame_nll"] == pytest.approx(whole["frame_nll"], abs=1e-9)
    assert short["frame_nll"] != pytest.approx(whole["frame_nll"], abs=1e-9)
    assert windowed["frames_scored"] == 12
    assert windowed["frame_nll"] == pytest.approx(4 * windowed["note_nll"], rel=1e-9)  # no rests


def test_training_batches_mask_cells_and_the_loss_only_scores_them():
    rng = np.random.default_rng(0)
    chorales = [rng.integers(55, 70, size=(80, 4)).astype(np.int16)]
    crops = ChoraleCrops(chorales, LOOP)
    roll, mask, targets, cells = crops.batch(rng)
    assert roll.shape == (16, 64, 46, 4) and cells.any(dim=(1, 2)).all()
    assert (roll * mask).sum() == 0  # masked cells are blanked
    model = CoconetNet(filters=4, layers=4)
    loss, count = (t.detach() for t in coconet_loss(model, (roll, mask, targets, cells)))
    assert count == 16 and 0 < float(loss) < 10
    # Changing the target of an unscored cell does not change the loss.
    unscored = ~cells
    altered = targets.clone()
    altered[unscored] = (altered[unscored] + 1) % 46
    again = coconet_loss(model, (roll, mask, altered, cells))[0].detach()
    assert float(again) == pytest.approx(float(loss))


def test_the_export_matches_torch_at_any_length(tmp_path):
    torch.manual_seed(0)
    model = CoconetNet(filters=4, layers=4).eval()
    path = tmp_path / "coconet.onnx"
    export_graph(model, path)
    assert parity_error(model, path) < 1e-4


def test_harmonize_keeps_the_melody_as_the_soprano(model_path):
    out = run(["harmonize", "--model", model_path, "--melody", MELODY, "--seed", "1",
               "--iterations", "4", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    score = jsonl_scores(out.stdout)[0]
    soprano = [n for n in score["notes"] if n.get("instrument", 0) == 0]
    assert [n["pitch"] for n in soprano] == [67, 69, 71, 72, 71, 69, 67, 74, 72]
    assert {n.get("instrument", 0) for n in score["notes"]} == {0, 1, 2, 3}
    assert [i["name"] for i in score["instrumentInfos"]] == ["Soprano", "Alto", "Tenor", "Bass"]
    end = max(n["endTime"] for n in score["notes"])
    assert end == pytest.approx(4.0)  # two bars at 120 qpm, the melody's length
    assert score["mtools"]["model"] == "coconet"


def test_an_unseeded_harmonization_names_the_seed_that_makes_it_again(model_path):
    args = ["harmonize", "--model", model_path, "--melody", MELODY, "--iterations", "2",
            "--to", "jsonl"]
    out = run(args)
    seed = jsonl_scores(out.stdout)[0]["mtools"]["seed"]
    assert isinstance(seed, int)
    assert run(args + ["--seed", str(seed)]).stdout == out.stdout


def test_harmonize_writes_n_outputs_and_keeps_the_tempo(model_path, tmp_path):
    melody = Score(notes=tuple(Note(p, 70, i * 0.75, (i + 1) * 0.75) for i, p in
                               enumerate([60, 62, 64, 65])),
                   tempos=(Tempo(0.0, 80.0),), time_signatures=(TimeSignature(0.0, 3, 4),))
    path = tmp_path / "m.mid"
    path.write_bytes(score_to_midi(melody))
    out = run(["harmonize", str(path), "--model", model_path, "-n", "3", "--seed", "2",
               "--iterations", "2", "--program", "19", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    scores = jsonl_scores(out.stdout)
    assert len(scores) == 3
    for score in scores:
        assert score["tempos"][0]["qpm"] == pytest.approx(80.0)
        assert score["timeSignatures"][0]["numerator"] == 3
        assert {n.get("program", 0) for n in score["notes"]} == {19}


def test_a_long_melody_is_harmonized_in_overlapping_windows(model_path, monkeypatch):
    import mtools.models.harmonization as harmonization

    calls = []

    def recording(model, chorales, free, options, rng):
        calls.append(free.copy())
        return generate(model, chorales, free, options, rng)

    monkeypatch.setattr(harmonization, "generate", recording)
    monkeypatch.setattr(harmonization, "MAX_WINDOW_STEPS", 32)
    monkeypatch.setattr(harmonization, "WINDOW_OVERLAP_STEPS", 8)
    text = " ".join(["60 _ 62 _ 64 _ 65 _"] * 10)  # 80 steps: windows at 0, 16, 32, 48
    out = run(["harmonize", "--model", model_path, "--melody", text, "--iterations", "1",
               "--seed", "0", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    assert [c.shape[1] for c in calls] == [32, 32, 32, 32]
    # A later window starts with 8 steps of fixed context from the one before,
    # then samples again the 8 steps that window left free, with what follows in view.
    for later in calls[1:]:
        assert not later[0, :8, 1:].any() and later[0, 8:, 1:].all()
    assert calls[0][0, :, 1:].all() and not any(c[0, :, 0].any() for c in calls)
    notes = jsonl_scores(out.stdout)[0]["notes"]
    bass = [n for n in notes if n.get("instrument") == 3]
    assert sum(n["endTime"] - n.get("startTime", 0) for n in bass) == pytest.approx(10.0)


def test_the_same_seed_gives_the_same_bytes_and_outputs_differ(model_path):
    args = ["harmonize", "--model", model_path, "--melody", MELODY, "--iterations", "3",
            "--to", "jsonl", "-n", "2", "--seed", "9"]
    first, again = run(args), run(args)
    assert first.code == 0 and first.stdout == again.stdout
    one, two = jsonl_scores(first.stdout)
    assert one["notes"] != two["notes"]


def test_the_voices_follow_the_melody_from_its_pickup_to_its_end(model_path):
    # 3/4, a one-beat pickup after a beat of silence; a whole bar of rest in
    # the middle; lower voices only sound where the melody does.
    notes = [Note(67, 80, 0.5, 1.0)] + [Note(p, 80, 1.0 + i * 0.5, 1.5 + i * 0.5)
                                        for i, p in enumerate([72, 71, 69])]
    notes += [Note(67, 80, 4.0, 5.5)]  # after a rest of 1.5 s = one 3/4 bar at 120 qpm
    score = Score(notes=tuple(notes), tempos=(Tempo(0.0, 120.0),),
                  time_signatures=(TimeSignature(0.0, 3, 4),))
    out = run(["harmonize", "--model", model_path, "--iterations", "2", "--seed", "1",
               "--to", "jsonl"], stdin=score_to_jsonl(score).encode())
    assert out.code == 0, out.stderr
    lower = [n for n in jsonl_scores(out.stdout)[0]["notes"] if n.get("instrument", 0) > 0]
    assert min(n.get("startTime", 0) for n in lower) == pytest.approx(0.5)
    assert max(n["endTime"] for n in lower) == pytest.approx(5.5)
    assert not [n for n in lower if n["endTime"] > 2.5 + 1e-9 and n.get("startTime", 0) < 4.0 - 1e-9]


def test_harmonize_refuses_an_input_without_notes(model_path):
    out = run(["harmonize", "--model", model_path, "--to", "jsonl"],
              stdin=score_to_jsonl(Score()).encode())
    assert out.code == 65
    assert "no notes" in out.stderr and "\n" == out.stderr[-1] and out.stderr.count("\n") == 1


def four_part_score() -> Score:
    notes = []
    for voice, base in enumerate([72, 67, 60, 48]):
        for i in range(12):  # three bars of quarter notes at 120 qpm
            if (voice, i) != (1, 3):  # the alto rests on beat 4 of bar 1
                notes.append(Note(base + (i % 3), 60 + voice, i * 0.5, (i + 1) * 0.5,
                                  instrument=voice, program=52))
    notes.append(Note(66, 61, 1.97, 2.47, instrument=1, program=52))  # starts just before bar 2
    notes.append(Note(50, 70, 3.5, 4.5, instrument=3, program=52))  # crosses into bar 3
    infos = tuple(InstrumentInfo(i, n) for i, n in enumerate("SATB"))
    return Score(notes=tuple(notes), tempos=(Tempo(0.0, 120.0),), instrument_infos=infos)


def note_key(n: dict) -> tuple:
    return (n.get("instrument", 0), n["pitch"], round(n.get("startTime", 0), 6),
            round(n["endTime"], 6), n["velocity"], n.get("program", 0))


def test_infill_keeps_everything_outside_the_region(model_path, tmp_path):
    score = four_part_score()
    path = tmp_path / "satb.jsonl"
    path.write_text(score_to_jsonl(score))
    out = run(["infill", str(path), "--model", model_path, "--start", "2", "--end", "3",
               "--voices", "alto,bass", "--seed", "4", "--iterations", "3", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    notes = jsonl_scores(out.stdout)[0]["notes"]
    got = {note_key(n) for n in notes}
    original = jsonl_scores(score_to_jsonl(score).encode())[0]["notes"]
    untouched = [n for n in original if n.get("instrument", 0) in (0, 2)
                 or n["endTime"] <= 2.0 + 1e-9 or n.get("startTime", 0) >= 4.0 - 1e-9]
    assert {note_key(n) for n in untouched} <= got  # bit for bit
    # The alto note at 1.97 s sits on step 16 = bar 2 on the grid: it is
    # inside the region, so no 30 ms sliver of it is left before bar 2.
    assert not [n for n in notes if n.get("instrument") == 1 and n["endTime"] == pytest.approx(2.0)
                and n.get("startTime", 0) == pytest.approx(1.97)]
    # The bass note crossing the region's end keeps its part after it.
    assert (3, 50, 4.0, 4.5, 70, 52) in got
    for voice in (1, 3):
        inside = [n for n in notes if n.get("instrument") == voice
                  and 2.0 - 1e-9 <= n.get("startTime", 0) < 4.0 - 1e-9]
        assert sum(n["endTime"] - n["startTime"] for n in inside) == pytest.approx(2.0)
        assert all(36 <= n["pitch"] <= 81 and n["program"] == 52 for n in inside)
    assert max(n["endTime"] for n in notes) == pytest.approx(6.0)  # nothing past the piece


def test_bars_follow_every_time_signature_and_a_pickup_is_bar_one():
    score = Score(time_signatures=(TimeSignature(0.0, 1, 4), TimeSignature(0.5, 3, 4),
                                   TimeSignature(5.0, 2, 4)), tempos=(Tempo(0.0, 120.0),))
    assert bar_starts(score, 60, 4) == [0, 4, 16, 28, 40, 48, 56]
    assert region_steps(score, "2", "4", 60, 4) == (4, 28)
    assert region_steps(score, "1s", None, 60, 4) == (8, 60)
    assert region_steps(score, "7", "8", 60, 4) == (56, 60)
    with pytest.raises(Exception, match="past the end"):
        region_steps(score, "9", None, 60, 4)
    with pytest.raises(Exception, match="empty"):
        region_steps(score, "3", "3", 60, 4)


def test_infill_needs_four_parts_and_a_region(model_path):
    melody_only = score_to_jsonl(Score(notes=(Note(60, 80, 0.0, 1.0),))).encode()
    out = run(["infill", "--model", model_path, "--voices", "alto", "--to", "jsonl"],
              stdin=melody_only)
    assert out.code == 65 and "needs 4 parts" in out.stderr
    out = run(["infill", "--model", model_path, "--to", "jsonl"], stdin=melody_only)
    assert out.code == 2 and "--start/--end, --voices" in out.stderr
    out = run(["infill", "--model", model_path, "--start", "0", "--to", "jsonl"],
              stdin=melody_only)
    assert out.code == 2 and "counted from 1" in out.stderr
    out = run(["infill", "--model", model_path, "--voices", "", "--to", "jsonl"], stdin=melody_only)
    assert out.code == 2 and "names no voice" in out.stderr


def test_voice_and_position_parsing():
    assert parse_voices("alto, Tenor") == (1, 2)
    assert parse_voices("4,1") == (0, 3)
    assert parse_position("5") == (5.0, "bar")
    assert parse_position("12.5s") == (12.5, "s")
    with pytest.raises(Exception, match="not a voice"):
        parse_voices("viola")
    with pytest.raises(Exception, match="not a position"):
        parse_position("five")


def test_eval_prints_the_framewise_nll_of_midi_chorales(model_path, tmp_path):
    (tmp_path / "satb.mid").write_bytes(score_to_midi(four_part_score()))
    out = run(["eval", "--model", model_path, str(tmp_path), "--samples", "4", "--json"])
    assert out.code == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["pieces"] == 1 and figures["frames_scored"] == 4
    assert figures["frame_nll"] > figures["note_nll"] > 0


def test_chorales_are_read_into_range_with_rests(tmp_path):
    from mtools.training.chorales import load_chorales

    piece = np.array([[84.0, 60, np.nan, 30], [72, 60, 55, 40]])
    np.savez(tmp_path / "c.npz", valid=np.array([piece, piece[:1]], dtype=object))
    first = load_chorales(str(tmp_path / "c.npz"), "valid")[0]
    assert first.tolist() == [[72, 60, REST, 42], [72, 60, 55, 40]]


def test_train_coconet_exports_a_card_that_eval_reproduces(tmp_path):
    rng = np.random.default_rng(0)
    pieces = lambda count: np.array([rng.integers(55, 70, size=(48, 4)).astype(float)  # noqa: E731
                                     for _ in range(count)] + [np.zeros((1, 4))],
                                    dtype=object)[:-1]
    data = tmp_path / "chorales.npz"
    np.savez(data, train=pieces(6), valid=pieces(2))
    out = tmp_path / "models"
    trained = run(["train", "coconet", "--data", data, "--out", out, "--run-dir", tmp_path / "run",
                   "--max-steps", "2", "--hidden", "4", "--layers", "4", "--batch-size", "2",
                   "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(out / "coconet.json")).card
    assert card.tasks == ("harmonize", "infill") and card.training["steps"] == 2
    assert card.hyperparameters["filters"] == 4 and "--hidden 4" in card.training["command"]
    assert card.metrics["split"] == "valid" and card.metrics["pieces"] == 2
    assert card.extra["published"]["notewise_nll"] == 0.569  # the paper's figure beside ours
    again = run(["eval", "--model", out, data, "--split", "valid", "--json"])
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["frame_nll"] == card.metrics["frame_nll"]


def test_a_folded_export_loads_back_and_trains_on_from_where_it_stopped(tmp_path):
    import torch

    from mtools.training.warm_start import calibrate_folded_norms, load_exported

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    def batch():
        chorales = rng.integers(SPACE.min_pitch, SPACE.max_pitch + 1, (8, 32, 4)).astype(np.int16)
        return make_batch(chorales, rng.random((8, 32, 4)) < 0.5)[:2]

    roll, mask = batch()
    other = batch()
    trained = CoconetNet(filters=8, layers=4)
    with torch.no_grad():
        for norm in (m for m in trained.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
        for _ in range(20):  # running statistics far from the defaults
            trained.train()(roll, mask)
    path = tmp_path / "coconet.onnx"
    export_graph(trained, path)  # folds each batch norm into its convolution
    model = CoconetNet(filters=8, layers=4)
    assert load_exported(model, path, parity_error) < 1e-4  # eval mode: the file's function
    with torch.no_grad():
        want, want_other = model.eval()(roll, mask), model(*other)
        standardized = (model.train()(*other) - want_other).abs().max()  # batch statistics
    assert standardized > 0.5
    calibrate_folded_norms(model, [(roll, mask)])
    assert parity_error(model, path) < 1e-4  # still the file's function in eval mode
    with torch.no_grad():  # and now nearly so in training: exactly on the crops it measured
        assert (model.train()(roll, mask) - want).abs().max() < 1e-3
        assert (model(*other) - want_other).abs().max() < standardized / 5


def random_chorales(tmp_path, seed: int):
    """An npz of 6 training and 2 validation random 48-step chorales."""
    rng = np.random.default_rng(seed)
    pieces = [rng.integers(55, 70, size=(48, 4)).astype(float) for _ in range(8)]
    data = tmp_path / "chorales.npz"
    np.savez(data, train=np.array(pieces[:6] + [np.zeros((1, 4))], dtype=object)[:-1],
             valid=np.array(pieces[6:] + [np.zeros((1, 4))], dtype=object)[:-1])
    return data


def test_train_coconet_starts_from_an_export(tmp_path):
    data = random_chorales(tmp_path, 1)
    common = ["train", "coconet", "--data", data, "--hidden", "4", "--layers", "4",
              "--batch-size", "2", "--max-steps", "1", "--quiet"]
    assert run([*common, "--out", tmp_path / "a", "--run-dir", tmp_path / "ra"]).code == 0
    again = run([*common, "--out", tmp_path / "b", "--run-dir", tmp_path / "rb",
                 "--init-from", tmp_path / "a" / "coconet.onnx"])
    assert again.code == 0, again.stderr
    first = resolve_model(str(tmp_path / "a" / "coconet.json")).card.training
    card = resolve_model(str(tmp_path / "b" / "coconet.json")).card
    assert card.training["initialised_from"]["file"] == "coconet.onnx"
    assert "--init-from" in card.training["command"]
    assert card.training["log"][0]["step"] == 0  # validated before its first step: where
    assert card.training["log"][0]["valid"] == first["log"][-1]["valid"]  # the first run ended
    other = tmp_path / "other.onnx"
    export_graph(CoconetNet(filters=4, layers=6), other)  # not this network: refused
    from mtools.models.registry import write_card

    write_card(json.loads((tmp_path / "a" / "coconet.json").read_text()), other)
    refused = run([*common, "--out", tmp_path / "c", "--run-dir", tmp_path / "rc",
                   "--init-from", other])
    assert refused.code == 1 and "6 convolutions in the file, 4 in the network" in refused.stderr


def test_the_last_blocks_are_dilated_along_pitch_too():
    net = CoconetNet(filters=4, layers=16, pitch_dilations=[2, 4])
    assert net.block_dilations() == [("time", 1), ("time", 2), ("time", 4), ("time", 8),
                                     ("time", 1), ("pitch", 2), ("pitch", 4)]
    assert net.blocks[6][0].dilation == (1, 4) and net.blocks[6][0].kernel_size == (1, 3)
    assert net.blocks[4][0].dilation == (1, 1) and net.blocks[4][0].kernel_size == (3, 3)
    assert CoconetNet(filters=4, layers=8, pitch_dilations=[2, 4]).block_dilations() \
        == [("time", 1), ("time", 2), ("pitch", 2)]  # at most half the blocks
    assert CoconetNet(filters=4, layers=1, pitch_dilations=[2]).block_dilations() == []
    # what a pitch-dilated block adds: the logits at a pitch feel a note 16 semitones away
    roll, mask = make_batch(np.full((1, 8, 4), REST, np.int16), np.zeros((1, 8, 4), bool))[:2]
    far = roll.clone()
    far[0, 4, 30, 0] = 1.0
    for pitch_dilations, felt in (([], False), ([8], True)):
        torch.manual_seed(0)
        model = CoconetNet(filters=4, layers=6, pitch_dilations=pitch_dilations).eval()
        with torch.no_grad():
            moved = (model(far, mask) - model(roll, mask))[0, :, 14].abs().max()
        assert (moved > 0) == felt


def test_a_deeper_coconet_starts_as_the_shallower_export(tmp_path):
    from mtools.errors import MtoolsError
    from mtools.training.coconet import deepen
    from mtools.training.warm_start import calibrate_folded_norms, load_exported

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    chorales = rng.integers(SPACE.min_pitch, SPACE.max_pitch + 1, (8, 32, 4)).astype(np.int16)
    roll, mask = make_batch(chorales, rng.random((8, 32, 4)) < 0.5)[:2]
    shallow = CoconetNet(filters=4, layers=6)
    with torch.no_grad():
        for _ in range(5):
            shallow.train()(roll, mask)  # running statistics away from the defaults
    path = tmp_path / "coconet.onnx"
    export_graph(shallow, path)
    donor, deep = CoconetNet(filters=4, layers=6), CoconetNet(filters=4, layers=10,
                                                              pitch_dilations=[2, 4])
    load_exported(donor, path, parity_error)
    note = deepen(deep, donor)
    calibrate_folded_norms(deep, [(roll, mask)])
    assert parity_error(deep, path) < 1e-4  # the file's function, two blocks deeper
    assert "2 residual blocks added" in note["deepened"]
    calibrate_folded_norms(donor, [(roll, mask)])
    with torch.no_grad():  # in training too (batch statistics), as the donor computes it
        assert (deep.train()(roll, mask) - donor.train()(roll, mask)).abs().max() < 1e-4
    # the added blocks learn: their second convolution gets a gradient
    deep.train()
    coconet_loss(deep, make_batch(chorales, rng.random((8, 32, 4)) < 0.5))[0].backward()
    assert deep.blocks[3][2].weight.grad.abs().sum() > 0
    with pytest.raises(MtoolsError, match="4 filters, this one 8"):
        deepen(CoconetNet(filters=8, layers=10), donor)
    with pytest.raises(MtoolsError, match="cannot be extended"):  # other time dilations
        deepen(CoconetNet(filters=4, layers=10, dilations=(2,), pitch_dilations=[2, 4]), donor)
    with pytest.raises(MtoolsError, match="has 2 residual blocks, this one 1"):
        deepen(CoconetNet(filters=4, layers=4), donor)


def test_a_run_resumes_the_network_its_checkpoint_holds(tmp_path):
    from mtools.training.coconet import NETWORK, run_network

    assert run_network(tmp_path) == NETWORK  # a new run
    torch.save({"config": {"pitches": 46, "voices": 4, "filters": 4, "layers": 6,
                           "dilations": [1, 2]}}, tmp_path / "last.pt")  # before pitch blocks
    assert run_network(tmp_path) == {"filters": 4, "layers": 6, "dilations": [1, 2],
                                     "pitch_dilations": []}


def test_train_coconet_deepens_an_export_with_fewer_layers(tmp_path):
    data = random_chorales(tmp_path, 2)
    common = ["train", "coconet", "--data", data, "--hidden", "4", "--batch-size", "2",
              "--max-steps", "1", "--quiet"]
    first = run([*common, "--layers", "4", "--out", tmp_path / "a", "--run-dir", tmp_path / "ra"])
    assert first.code == 0, first.stderr
    shallow = tmp_path / "a" / "coconet.onnx"
    deeper = run([*common, "--layers", "8", "--out", tmp_path / "b", "--run-dir", tmp_path / "rb",
                  "--init-from", shallow])
    assert deeper.code == 0, deeper.stderr
    card = resolve_model(str(tmp_path / "b" / "coconet.json")).card
    began = card.training["initialised_from"]
    assert began["from_network"]["layers"] == 4 and "2 residual blocks added" in began["deepened"]
    assert card.hyperparameters["layers"] == 8
    ended = resolve_model(str(shallow.with_suffix(".json"))).card.training["log"][-1]["valid"]
    assert card.training["log"][0]["valid"] == pytest.approx(ended, abs=2e-4)
    wider = run([*common, "--hidden", "8", "--layers", "8", "--out", tmp_path / "c",
                 "--run-dir", tmp_path / "rc", "--init-from", shallow])
    assert wider.code == 1 and "4 filters, this one 8" in wider.stderr


def test_an_int8_coconet_harmonizes_and_a_run_starts_from_it(tmp_path):
    import onnx

    from mtools.training.quantize import quantize_model

    data = random_chorales(tmp_path, 3)
    common = ["train", "coconet", "--data", data, "--hidden", "4", "--layers", "6",
              "--batch-size", "2", "--max-steps", "1", "--quiet"]
    assert run([*common, "--out", tmp_path / "a", "--run-dir", tmp_path / "ra"]).code == 0
    path = tmp_path / "a" / "coconet.onnx"
    metrics = quantize_model(path, [str(data)])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu"} <= ops
    card = json.loads(path.with_suffix(".json").read_text())
    assert "quantize_static" in card["quantization"]["method"]
    assert card["metrics"]["float32"]["frame_nll"] == metrics["float32"]["frame_nll"] > 0
    assert abs(metrics["frame_nll"] - metrics["float32"]["frame_nll"]) < 0.5  # a sanity check
    assert "reproduce: mtools eval" in metrics["measured_by"]
    out = run(["harmonize", "--model", path, "--melody", MELODY, "--seed", "1",
               "--iterations", "2", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    assert {n.get("instrument", 0) for n in jsonl_scores(out.stdout)[0]["notes"]} == {0, 1, 2, 3}
    again = run([*common, "--out", tmp_path / "b", "--run-dir", tmp_path / "rb",
                 "--init-from", path])
    assert again.code == 0, again.stderr
    began = resolve_model(str(tmp_path / "b" / "coconet.json")).card.training["initialised_from"]
    assert "dequantized" in began and began["parity_max_abs_error"] < 1e-4
    evaluated = run(["eval", "--model", path, str(data), "--split", "valid"])
    assert evaluated.code == 0, evaluated.stderr
