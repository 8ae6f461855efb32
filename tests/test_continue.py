"""`mtools continue` with tiny random melody models: primer handling,
timing, reproducibility, outputs; the model's quality is measured elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from builders import drums, melody  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_event_model  # noqa: E402
from mtools.io.jsonl import score_to_jsonl  # noqa: E402
from mtools.io.midi import midi_to_score, score_to_midi  # noqa: E402
from mtools.models.registry import write_card  # noqa: E402
from mtools.models.events import primer_melody  # noqa: E402
from mtools.models.melody_rnn import MelodySpace, _to_score_space, parse_key  # noqa: E402
from mtools.models.encoding import melody_event_ids  # noqa: E402
from mtools.score import make_score  # noqa: E402

PRIMER = "62 _ 64 _ 66 _ 67 _ 69 _ _ _ 69 _ _ _"  # D major, one bar at 120 qpm = 2 s


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(tiny_event_model(tmp_path_factory.mktemp("models"), config="lookback_rnn"))


def jsonl_scores(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_the_primer_is_kept_and_the_continuation_follows_it(model):
    out = run(["continue", "--model", model, "--primer", PRIMER, "--bars", "2", "--seed", "3",
               "--to", "jsonl"])
    assert out.code == 0, out.stderr
    notes = jsonl_scores(out.stdout)[0]["notes"]
    primer = [n for n in notes if n.get("startTime", 0) < 2.0 - 1e-9]
    assert [n["pitch"] for n in primer] == [62, 64, 66, 67, 69, 69]
    new = [n for n in notes if n.get("startTime", 0) >= 2.0 - 1e-9]
    assert new and max(n["endTime"] for n in notes) <= 6.0 + 1e-9  # 2 bars = 4 s more
    for n in new:  # on the 16th grid (0.125 s) and in a playable range
        assert abs(n["startTime"] / 0.125 - round(n["startTime"] / 0.125)) < 1e-6
        assert 30 <= n["pitch"] <= 100


def test_a_seed_reproduces_bit_for_bit_and_outputs_differ(model):
    args = ["continue", "--model", model, "--primer", PRIMER, "--to", "jsonl", "-n", "4"]
    a, b = run(args + ["--seed", "5"]), run(args + ["--seed", "5"])
    c = run(args + ["--seed", "6"])
    assert a.code == 0 and a.stdout == b.stdout and a.stdout != c.stdout
    takes = jsonl_scores(a.stdout)
    assert len(takes) == 4 and len({json.dumps(t["notes"]) for t in takes}) > 1
    assert takes[0]["mtools"]["model"] == "melody_rnn:lookback_rnn"


def test_an_unseeded_take_names_the_seed_that_plays_it_again(model):
    args = ["continue", "--model", model, "--primer", PRIMER, "--to", "jsonl", "-n", "2"]
    first, second = run(args), run(args)
    seed = jsonl_scores(first.stdout)[0]["mtools"]["seed"]
    assert isinstance(seed, int) and seed != jsonl_scores(second.stdout)[0]["mtools"]["seed"]
    made = [(t["mtools"]["take"], t["mtools"]["takes"]) for t in jsonl_scores(first.stdout)]
    assert made == [(1, 2), (2, 2)]  # the seed makes the set: which one of it is this
    assert run(args + ["--seed", str(seed)]).stdout == first.stdout
    midi = run(["continue", "--model", model, "--primer", PRIMER])  # MIDI keeps it too
    seed = midi_to_score(midi.stdout).provenance["seed"]
    assert "take" not in midi_to_score(midi.stdout).provenance  # one output: no set to number
    again = run(["continue", "--model", model, "--primer", PRIMER, "--seed", str(seed)])
    assert again.stdout == midi.stdout


def test_other_tracks_are_kept_and_only_generated_drops_them(model, tmp_path):
    score = make_score(list(melody(PRIMER).notes) + list(drums([(36, 0.0), (38, 1.0)]).notes),
                       tempos=melody(PRIMER).tempos)
    path = tmp_path / "primer.mid"
    path.write_bytes(score_to_midi(score))
    full = midi_to_score(run(["continue", str(path), "--model", model, "--seed", "1",
                              "--bars", "1"]).stdout)
    assert sorted(n.pitch for n in full.notes if n.is_drum) == [36, 38]
    only = run(["continue", str(path), "--model", model, "--seed", "1", "--bars", "1",
                "--only-generated", "--to", "jsonl"])
    notes = jsonl_scores(only.stdout)[0]["notes"]
    assert notes and not any(n.get("isDrum") for n in notes)
    assert min(n.get("startTime", 0.0) for n in notes) < 2.0  # moved to the start


def test_from_scratch_with_nothing_piped_in(model, tmp_path):
    out = run(["continue", "--model", model, "--seed", "2", "--steps", "16", "-n", "2",
               "-o", f"{tmp_path}/takes/"], stdin_tty=True)
    assert out.code == 0, out.stderr
    files = sorted((tmp_path / "takes").iterdir())
    assert [f.name for f in files] == ["primer-1.mid", "primer-2.mid"]
    assert all(midi_to_score(f.read_bytes()).notes for f in files)


def test_skip_existing_makes_a_missing_take_again(model, tmp_path):
    path = tmp_path / "primer.mid"
    path.write_bytes(score_to_midi(melody(PRIMER)))
    args = ["continue", str(path), "--model", model, "--seed", "2", "--steps", "8", "-n", "2",
            "-o", f"{tmp_path}/takes/", "--skip-existing"]
    assert run(args).code == 0
    (tmp_path / "takes" / "primer-2.mid").unlink()
    again = run(args)
    assert again.code == 0 and "skipped" not in again.stderr
    assert (tmp_path / "takes" / "primer-2.mid").exists()
    assert "skipped 1" in run(args).stderr


def test_beam_search_runs_and_is_seeded(model):
    args = ["continue", "--model", model, "--primer", PRIMER, "--beam-size", "2",
            "--branch-factor", "3", "--steps-per-iteration", "4", "--seed", "9", "--to", "jsonl"]
    a, b = run(args), run(args)
    assert a.code == 0 and a.stdout == b.stdout


@pytest.mark.parametrize("args, code", [
    (["--bars", "2", "--steps", "3"], 2),
    (["--key", "H#"], 2),
    (["--primer", "60 x"], 2),
    (["--model", "no_such_model"], 69),
])
def test_bad_options_give_the_documented_exit_codes(model, args, code):
    base = ["continue", "--primer", PRIMER] if "--primer" not in args else ["continue"]
    if "--model" not in args:
        base += ["--model", model]
    out = run(base + args)
    assert out.code == code and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("args", [
    ["continue", "--temperature", "nan"], ["continue", "--bars", "inf"],
    ["humanize", "--temperature", "nan"], ["transcribe", "--onset-threshold", "nan"],
])
def test_numbers_that_are_not_finite_are_refused_before_any_work(args):
    # a NaN passes every min/max check: humanize once ran on with one until memory ran out
    out = run(args)
    assert out.code == 2 and "is not a finite number" in out.stderr, out.stderr


def test_key_names_and_the_shift_to_c_and_back():
    assert [parse_key(k) for k in ("C", "D", "Bb", "F#m", "Am", "Ebm")] == [0, 2, 10, 9, 0, 6]
    space = MelodySpace(48, 84, 4, 0)
    events = np.asarray(primer_melody(melody(PRIMER)).events)
    ids, shift = space.to_model(events)
    assert shift % 12 == 10  # D major moved down a tone (or up a seventh) to C
    back = _to_score_space(ids, shift, space)
    assert back.tolist() == events.tolist()
    assert np.array_equal(melody_event_ids(np.where(events >= 0, events + shift, events), 48, 84), ids)


def test_jsonl_primer_on_stdin(model):
    out = run(["continue", "--model", model, "--seed", "1", "--to", "jsonl"],
              stdin=score_to_jsonl(melody(PRIMER)).encode())
    assert out.code == 0 and len(jsonl_scores(out.stdout)) == 1


def test_from_scratch_makes_exactly_the_bars_asked_for_at_the_qpm_asked_for(model):
    for qpm, seconds in ((None, 2.0), (60, 4.0)):
        args = ["continue", "--model", model, "--bars", "1", "--seed", "3", "--to", "jsonl"]
        out = run(args + (["--qpm", str(qpm)] if qpm else []), stdin_tty=True)
        [score] = jsonl_scores(out.stdout)
        assert score["tempos"][0]["qpm"] == (qpm or 120)
        assert score["notes"] and max(n["endTime"] for n in score["notes"]) <= seconds + 1e-6


@pytest.mark.parametrize("family_model", ["model", "drum_model"])
def test_from_scratch_the_seed_step_is_one_of_the_steps_asked_for(family_model, request,
                                                                   monkeypatch):
    import importlib

    from mtools.models.continuation import ContinueOptions, Length, continue_score
    from mtools.models.registry import resolve_model
    from mtools.score import Score

    path = request.getfixturevalue(family_model)
    module = importlib.import_module(f"mtools.models.{resolve_model(path).card.name}")
    made = []

    def recording(*args, **kwargs):
        rows = generate(*args, **kwargs)
        made.append(rows.shape[1])
        return rows

    from mtools.models import sequence

    generate = sequence.generate
    monkeypatch.setattr(sequence, "generate", recording)  # what drums_rnn imports when it runs
    if hasattr(module, "generate"):  # melody_rnn imports it once
        monkeypatch.setattr(module, "generate", recording)
    continue_score(Score(), ContinueOptions(model=path, length=Length(bars=1), seed=1))
    assert made == [16]  # the seed plus 15 new steps: one 4/4 bar of 16ths


def test_a_tempo_less_primer_plays_at_qpm_with_no_gap():
    primer = b'{"notes":[{"pitch":60,"velocity":80,"endTime":1}]}'
    out = run(["continue", "--model", "melody_rnn", "--qpm", "60", "--bars", "1", "--seed", "1",
               "--to", "jsonl"], stdin=primer)
    [score] = jsonl_scores(out.stdout)
    assert score["tempos"][0]["qpm"] == 60
    starts = sorted(n.get("startTime", 0.0) for n in score["notes"])
    assert starts[1] <= 1.0 + 1e-6 or score["notes"][0]["endTime"] > 1.0  # no silence after 1 s
    assert max(n["endTime"] for n in score["notes"]) <= 5.0 + 1e-6  # 1 beat + 1 bar at 60


@pytest.mark.parametrize("length, says", [(["--bars", "0"], "not above 0"),
                                          (["--seconds", "-1"], "not above 0"),
                                          (["--bars", "0.01"], "nothing to generate")])
def test_a_length_of_nothing_is_a_usage_error(model, length, says):
    out = run(["continue", "--model", model, "--primer", PRIMER, *length])
    assert out.code == 2 and says in out.stderr, out.stderr


@pytest.fixture(scope="module")
def drum_model(tmp_path_factory):
    path = tiny_event_model(tmp_path_factory.mktemp("drums"), family="drums_rnn")
    card = json.loads(path.with_suffix(".json").read_text())
    card["encoding"]["velocity_table"] = [[40 + 5 * k + s for s in range(16)] for k in range(9)]
    from mtools.models.registry import write_card
    write_card(card, path)
    return str(path)


def test_drums_continue_on_channel_10_with_primer_velocities_kept(drum_model, tmp_path):
    groove = drums([(36, 0.0), (42, 0.0), (42, 0.25), (38, 0.5), (42, 0.75)] * 1)
    groove = make_score(groove.notes, tempos=melody("60").tempos)
    path = tmp_path / "groove.mid"
    path.write_bytes(score_to_midi(groove))
    out = run(["continue", str(path), "--model", drum_model, "--bars", "2", "--seed", "4",
               "--to", "jsonl"])
    assert out.code == 0, out.stderr
    notes = jsonl_scores(out.stdout)[0]["notes"]
    assert all(n.get("isDrum") for n in notes)
    primer = [n for n in notes if n.get("startTime", 0) < 0.8]  # the primer lasts 7 steps
    assert [n["velocity"] for n in primer] == [100] * 5  # the primer's own
    new = [n for n in notes if n.get("startTime", 0) >= 0.8]
    assert new and {n["pitch"] for n in new} <= {36, 38, 42, 46, 45, 48, 50, 49, 51}
    assert len({n["velocity"] for n in new}) > 1  # not one fixed velocity
    midi = midi_to_score(run(["continue", str(path), "--model", drum_model, "--seed", "4"]).stdout)
    assert all(n.is_drum for n in midi.notes)


def test_a_drums_primer_as_text_is_struck_together_with_plus(drum_model):
    out = run(["continue", "--model", drum_model, "--primer", "36+42 - 38+42 42", "--bars", "1",
               "--seed", "2", "--to", "jsonl"])
    assert out.code == 0 and "no drums" not in out.stderr, out.stderr
    notes = jsonl_scores(out.stdout)[0]["notes"]
    primer = [(n["pitch"], n.get("startTime", 0)) for n in notes if n.get("startTime", 0) < 0.5]
    assert primer == [(36, 0), (42, 0), (38, 0.25), (42, 0.25), (42, 0.375)]
    assert all(n.get("isDrum") for n in notes) and len(notes) > len(primer)
    for token in ("36+snare", "36+\u00b2"):  # "²" is a digit to str.isdigit, not to int()
        bad = run(["continue", "--model", drum_model, "--primer", token])
        assert bad.code == 2 and repr(token) in bad.stderr, bad.stderr


def test_a_melody_primer_with_a_digit_int_refuses_is_a_usage_error(model):
    bad = run(["continue", "--model", model, "--primer", "60 6\u00b2"])
    assert bad.code == 2 and "token 2" in bad.stderr, bad.stderr


@pytest.fixture(scope="module", params=["chord_pitches_improv", "attention_improv"])
def improv_model(tmp_path_factory, request):
    return str(tiny_event_model(tmp_path_factory.mktemp("improv"), family="improv_rnn",
                                config=request.param))


def test_improv_plays_over_given_chords_and_renders_them(improv_model):
    out = run(["continue", "--model", improv_model, "--primer", PRIMER, "--chords",
               "Dm7 G7 Cmaj7 C/E", "--render-chords", "--seed", "1", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    score = jsonl_scores(out.stdout)[0]
    figures = [a["text"] for a in score["textAnnotations"]]
    assert figures[:4] == ["Dm7", "G7", "Cmaj7", "C/E"]
    starts = [round(a.get("time", 0.0), 6) for a in score["textAnnotations"]]
    assert starts == [2.0, 4.0, 6.0, 8.0]  # one per bar after the 1-bar primer
    chord_tones = [n for n in score["notes"] if n.get("velocity") == 64]
    assert {n["pitch"] for n in chord_tones if abs(n.get("startTime", 0) - 2.0) < 1e-9} == \
        {48 + 2, 60 + 0, 60 + 2, 60 + 5, 60 + 9}  # Dm7 over D


def test_improv_without_chords_is_a_clear_usage_error(improv_model):
    out = run(["continue", "--model", improv_model, "--primer", PRIMER])
    assert out.code == 2 and "chords" in out.stderr


def test_unreadable_chords_fail_before_reading_input(improv_model):
    out = run(["continue", "--model", improv_model, "--primer", PRIMER, "--chords", "C Q7"])
    assert out.code == 2 and "--chords" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_cards_temperature_is_the_default(tmp_path):
    path = tiny_event_model(tmp_path, config="lookback_rnn")
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["encoding"]["sampling"] = {"temperature": 0.25}
    write_card(card, path)
    args = ["continue", "--model", str(path), "--primer", PRIMER, "--seed", "2", "--to", "jsonl"]
    default, same, other = run(args), run(args + ["--temperature", "0.25"]), \
        run(args + ["--temperature", "1"])
    assert default.code == 0, default.stderr
    assert default.stdout == same.stdout != other.stdout
    assert jsonl_scores(default.stdout)[0]["mtools"]["temperature"] == 0.25


def test_velocity_spread_is_a_drummers_own_variation_on_one_cell():
    from mtools.models.drums_rnn import new_hit_velocities, velocity_spread
    from mtools.models.events import DrumTrack

    steps = 64
    velocities = np.zeros((steps, 9), np.uint8)
    velocities[::4, 0] = np.repeat([80, 100, 80, 100], 4)  # kick on every beat, bars alternate
    velocities[2::4, 2] = 50  # hi-hat on the off-beats, always 50
    velocities[1, 1] = 127  # a lone snare: too few hits on its cell to count
    events = ((velocities > 0) << np.arange(9)).sum(axis=1)
    track = DrumTrack(events, velocities=velocities)
    # each kick cell holds 80, 100, 80, 100: residuals ±10; the hats' are 0
    assert velocity_spread([track]) == round(float(np.std([10] * 8 + [-10] * 8 + [0] * 16)), 2)
    table = np.full((9, 16), 64.0)
    made = new_hit_velocities(np.full(4000, 1), 0, table, DrumTrack(np.zeros(16, np.int64)),
                              np.random.default_rng(0), spread=12.0)[:, 0].astype(float)
    assert abs(made.mean() - 64) < 1 and abs(made.std() - 12) < 0.5


def test_a_drums_card_without_a_velocity_table_plays_one_plain_velocity(tmp_path):
    path = tiny_event_model(tmp_path, family="drums_rnn", config="attention_kit")
    groove = make_score(drums([(36, 0.0), (38, 0.5)]).notes, tempos=melody("60").tempos)
    primer = tmp_path / "groove.mid"
    primer.write_bytes(score_to_midi(groove))
    out = run(["continue", str(primer), "--model", str(path), "--bars", "2", "--seed", "1",
               "--only-generated", "--to", "jsonl"])
    assert out.code == 0, out.stderr
    notes = jsonl_scores(out.stdout)[0]["notes"]
    assert notes and all(n["isDrum"] for n in notes)
    # 90 for every cell, moved to the primer's loudness where it has that drum,
    # then within 4 SD (the default spread of 4)
    played = [90] + [n.velocity for n in groove.notes]
    low, high = min(played), max(played)
    assert all(low - 16 <= n["velocity"] <= high + 16 for n in notes)


def test_eval_of_data_with_nothing_to_score_is_a_data_error(model, tmp_path):
    (tmp_path / "empty.mid").write_bytes(b"")
    out = run(["eval", "--model", model, tmp_path / "empty.mid", "--json"])
    assert out.code == 65 and "nothing" in out.stderr and not out.stdout


@pytest.mark.parametrize("model_name, args", [
    ("melody_rnn", ["--chords", "C G"]), ("melody_rnn", ["--render-chords"]),
    ("drums_rnn", ["--key", "D"]),
])
def test_options_the_model_would_ignore_are_refused(model_name, args):
    out = run(["continue", "--model", model_name, "--bars", "1", *args], stdin_tty=True)
    assert out.code == 2 and "does nothing" in out.stderr and "<primer>" not in out.stderr


def test_a_long_generation_reports_its_steps_on_one_line(capsys):
    from mtools.commands.continue_ import StepReport

    report = StepReport(after_s=0.0, every_s=0.0)
    for done in (4, 8, 12):
        report(done, 12)
    assert capsys.readouterr().err == ("\rmtools continue: 4 of 12 steps\rmtools continue: "
                                       "8 of 12 steps\rmtools continue: 12 of 12 steps\n")
    stopped = StepReport(after_s=0.0, every_s=0.0)
    stopped(4, 12)
    stopped.close()
    stopped.close()
    assert capsys.readouterr().err == "\rmtools continue: 4 of 12 steps\n"  # ended once
    quick = StepReport(after_s=60.0)
    for done in (4, 8, 12):
        quick(done, 12)
    assert capsys.readouterr().err == ""  # a short generation shows nothing


def test_generate_tells_progress_every_iteration(model):
    from mtools.models.registry import resolve_model
    from mtools.models.sequence import SearchOptions, generate, load_event_rnn

    heard = []
    generate(load_event_rnn(resolve_model(model)), np.array([14]), 10, num_outputs=2,
             options=SearchOptions(steps_per_iteration=4), rng=np.random.default_rng(0),
             progress=lambda done, total: heard.append((done, total)))
    assert heard == [(4, 10), (8, 10), (10, 10)]
