"""MusicVAE: window encodings, slerp, the exported graph against torch, the
decoder's consistency, training and eval end to end, and `interpolate` with
tiny random networks (the bundled models' quality is in their cards and
benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from builders import melody, write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_music_vae  # noqa: E402
from mtools.io.jsonl import score_to_jsonl, scores_to_jsonl  # noqa: E402
from mtools.io.midi import score_to_midi  # noqa: E402
from mtools.models.interpolation import FIT_ROUNDS, InterpolateOptions, fit_latents, \
    take_window  # noqa: E402
from mtools.models.events import score_to_drum_tracks  # noqa: E402
from mtools.models.music_vae import MusicVae, VaeSpace, frames_to_hits, groove_frames, \
    reconstruction_figures, restrike, slerp, windows_of  # noqa: E402
from mtools.models.registry import resolve_model  # noqa: E402
from mtools.score import Note, Score, Tempo, TimeSignature  # noqa: E402
from mtools.training.music_vae import VaeLoss, groove_loss, parity_error  # noqa: E402
from mtools.training.nets import MusicVAENet  # noqa: E402
from mtools.training.vae_windows import find_config, load_windows, transpose_ids  # noqa: E402

MELODY = VaeSpace("melody", 32)
DRUMS = VaeSpace("drums", 32)
TUNE_A = "60 _ 62 _ 64 _ 65 _ 67 _ _ _ 67 _ _ _ 69 _ 69 _ 69 _ 69 _ 67 _ _ _ - - - -"
TUNE_B = "72 _ _ _ 71 _ _ _ 69 _ _ _ 67 _ _ _ 65 _ 64 _ 62 _ 60 _ 59 _ _ _ 60 _ _ _"


@pytest.fixture(scope="module")
def mel_path(tmp_path_factory):
    return str(tiny_music_vae(tmp_path_factory.mktemp("mel"), "mel_2bar"))


@pytest.fixture(scope="module")
def drums_path(tmp_path_factory):
    return str(tiny_music_vae(tmp_path_factory.mktemp("drums"), "drums_2bar"))


@pytest.fixture(scope="module")
def mel(mel_path):
    return MusicVae.from_ref(resolve_model(mel_path))


def jsonl_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def beat(bars: int = 2) -> Score:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on 8ths, at 120 qpm."""
    notes = []
    for eighth in range(8 * bars):
        start = eighth * 0.25
        notes.append(Note(42, 80, start, start + 0.1, instrument=9, is_drum=True))
        if eighth % 2 == 0:
            pitch = 36 if eighth % 4 == 0 else 38
            notes.append(Note(pitch, 100, start, start + 0.1, instrument=9, is_drum=True))
    return Score(notes=tuple(notes), tempos=(Tempo(0.0, 120.0),),
                 time_signatures=(TimeSignature(0.0),), total_s=bars * 2.0)


# --- encodings and windows -------------------------------------------------------


def test_melody_features_are_one_hot_and_drum_features_are_the_bits():
    ids = np.array([[0, 1, 2, 89]])
    onehot = MELODY.features(ids)
    assert onehot.shape == (1, 4, 90) and (onehot.sum(axis=2) == 1).all()
    assert onehot[0, 3, 89] == 1
    bits = DRUMS.features(np.array([[0, 1, 5, 511]]))
    assert bits.shape == (1, 4, 9)
    assert bits[0, 2].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0] and bits[0, 3].sum() == 9


def test_melody_ids_fold_out_of_range_pitches_by_octaves_and_invert():
    events = np.array([60, -2, -1, 110, 15])
    ids = MELODY.ids_from_events(events)
    assert ids.tolist() == [60 - 21 + 2, 0, 1, 98 - 21 + 2, 27 - 21 + 2]
    assert MELODY.events_from_ids(ids).tolist() == [60, -2, -1, 98, 27]


def test_windows_start_on_bar_lines_skip_empty_ones_and_strike_held_notes():
    events = np.full(80, -2)
    events[0] = 60  # held through bar 2, into the window at step 16
    events[40] = 62
    events[44] = -1  # then silence from step 45 on: the window at step 48 is empty
    rows = windows_of(events, MELODY, 16)
    assert len(rows) == 3  # at steps 0, 16 and 32; the one at 48 holds no note
    assert rows[1][0] == 60 - 21 + 2  # the held 60 is struck again at the window's start
    assert rows[2][0] == 60 - 21 + 2 and rows[2][8] == 62 - 21 + 2
    assert restrike(MELODY.ids_from_events(events), 48, MELODY)[0] == 0  # after NOTE_OFF: a rest


def test_transposition_moves_pitches_only_and_keeps_rows_in_range():
    ids = np.array([[0, 1, 2, 50], [0, 1, 40, 50]])
    moved = transpose_ids(ids, np.array([-1, 3]), MELODY)
    assert moved[0].tolist() == [0, 1, 2, 50]  # 2 - 1 would leave the range: unchanged
    assert moved[1].tolist() == [0, 1, 43, 53]


def test_slerp_hits_both_ends_and_keeps_the_norm_between_equal_norm_vectors():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0]) / 2
    path = slerp(a, b, np.linspace(0, 1, 5))
    assert np.allclose(path[0], a) and np.allclose(path[-1], b)
    assert np.allclose(np.linalg.norm(path, axis=1), 1.0)
    straight = slerp(a, 3 * a, np.array([0.5]))
    assert np.allclose(straight[0], 2 * a)


# --- network, export, decoding ------------------------------------------------------


def test_the_export_computes_what_torch_computes(mel_path):
    model = MusicVAENet(90, 90, z_size=8, enc_hidden=8, dec_hidden=8, dec_layers=2)
    from mtools.training.music_vae import export_graph

    export_graph(model, mel_path.replace(".onnx", "-parity.onnx"))
    assert parity_error(model, mel_path.replace(".onnx", "-parity.onnx")) < 1e-4


def test_greedy_decoding_agrees_with_teacher_forcing_on_its_own_output(mel):
    z = np.random.default_rng(0).normal(size=(3, mel.z_size)).astype(np.float32)
    ids = mel.decode(z, temperature=0)
    assert ids.shape == (3, 32)
    assert np.array_equal(mel.teacher_forced_logits(z, ids).argmax(axis=2), ids)


def test_the_hierarchical_decoder_restarts_every_bar_from_its_embedding(tmp_path):
    from mtools.models.music_vae import GRAPH_INPUTS, GRAPH_OUTPUTS
    from mtools.models.registry import write_card
    from mtools.training.music_vae import export_graph

    torch.manual_seed(0)
    model = MusicVAENet(90, 90, z_size=8, enc_hidden=8, dec_hidden=8, bars=16,
                        conductor_hidden=8).eval()
    path = tmp_path / "music_vae-mel_16bar.onnx"
    export_graph(model, path)
    assert parity_error(model, path) < 1e-4
    write_card({"name": "music_vae", "config": "mel_16bar", "task": "interpolate",
                "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
                "hyperparameters": dict(model.config),
                "encoding": VaeSpace("melody", 256).to_card()}, path)
    bars16 = MusicVae.from_ref(resolve_model(str(path)))
    assert bars16.bars == 16 and bars16.bar_steps == 16
    z = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    ids = bars16.decode(z, temperature=0)
    assert ids.shape == (2, 256)
    logits = bars16.teacher_forced_logits(z, ids)
    assert np.array_equal(logits.argmax(axis=2), ids)  # greedy = its own teacher-forced argmax
    with torch.no_grad():
        want = model.teacher_forced(torch.from_numpy(z), torch.from_numpy(MELODY.features(ids)))
    assert np.abs(want.numpy() - logits).max() < 1e-4


def test_sampling_is_reproducible_with_a_seed(mel):
    z = np.zeros((2, mel.z_size), np.float32)
    first = mel.decode(z, temperature=1.0, rng=np.random.default_rng(3))
    again = mel.decode(z, temperature=1.0, rng=np.random.default_rng(3))
    other = mel.decode(z, temperature=1.0, rng=np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_reconstruction_figures_count_the_steps_right(mel):
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 90, size=(5, 32))
    figures = reconstruction_figures(mel, windows, batch=2)
    mu, _ = mel.encode(windows)
    right = (mel.teacher_forced_logits(mu, windows).argmax(axis=2) == windows).mean()
    assert figures["windows"] == 5
    assert figures["accuracy_teacher_forced"] == pytest.approx(right, abs=1e-4)
    assert figures["accuracy_sampled"] == pytest.approx(
        (mel.decode(mu, temperature=0) == windows).mean(), abs=1e-4)
    events = windows != 0
    tf = mel.teacher_forced_logits(mu, windows).argmax(axis=2) == windows
    assert figures["event_accuracy_teacher_forced"] == pytest.approx(tf[events].mean(), abs=1e-4)
    assert figures["kl_per_window"] > 0


def test_free_bits_spare_a_small_kl_and_charge_a_large_one():
    torch.manual_seed(0)
    model = MusicVAENet(9, 512, z_size=4, enc_hidden=4, dec_hidden=4, dec_layers=1).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 512, size=(3, 32)))
    features = torch.from_numpy(DRUMS.features(ids.numpy()))
    batch = (features, features, ids[..., None])  # targets: (batch, steps, parts)
    with torch.no_grad():
        free = VaeLoss(beta=1.0, free_bits=1e6)(model, batch)[0]
        charged = VaeLoss(beta=1.0, free_bits=0.0)(model, batch)[0]
        none = VaeLoss(beta=0.0, free_bits=0.0)(model, batch)[0]
    assert float(free) == pytest.approx(float(none)) and float(charged) > float(none)


def test_scheduled_sampling_starts_teacher_forced_and_ends_on_the_decoders_own_draws():
    loss = VaeLoss(beta=0.0, free_bits=0.0, sampling_rate=100.0,
                   feature_table=torch.from_numpy(DRUMS.features(np.arange(512)[None])[0]))
    assert loss.true_input_probability() == pytest.approx(100 / 101)
    loss.start_step(100_000)
    assert loss.true_input_probability() < 1e-6
    torch.manual_seed(0)
    model = MusicVAENet(9, 512, z_size=4, enc_hidden=4, dec_hidden=4, dec_layers=1)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 512, size=(3, 32)))
    features = torch.from_numpy(DRUMS.features(ids.numpy()))
    z = torch.zeros(3, 4)
    mixed = loss._scheduled(model, z, features, ids)
    # every row is some class's features, and with this little model they are
    # not the true ones (the draws come from its own, nearly uniform, softmax)
    assert set(mixed.reshape(-1).tolist()) <= {0.0, 1.0}
    assert (mixed != features).any(dim=2).float().mean() > 0.9
    loss.start_step(0)  # at the start nearly every input is the true one
    assert (loss._scheduled(model, z, features, ids) != features).any(dim=2).float().mean() < 0.1
    assert torch.equal(VaeLoss(0.0, 0.0)._scheduled(model, z, features, ids), features)


def test_free_running_logits_are_teacher_forced_ones_on_the_decoders_own_choices():
    torch.manual_seed(1)
    model = MusicVAENet(9, 512, z_size=4, enc_hidden=4, dec_hidden=6, dec_layers=2,
                        bars=2, conductor_hidden=5).eval()
    table = torch.from_numpy(DRUMS.features(np.arange(512)[None])[0])
    z = torch.randn(3, 4)
    with torch.no_grad():
        free = model.free_running(z, 32, table)
        chosen = free.argmax(dim=2)
        forced = model.teacher_forced(z, table[chosen])
    assert free.shape == (3, 32, 512)
    assert torch.allclose(free, forced, atol=1e-5)


def test_the_schedule_follows_the_trainers_step_across_a_resume(tmp_path):
    from mtools.training.loop import TrainConfig, Trainer

    class Steps:
        def __init__(self):
            self.seen = []

        def start_step(self, step):
            self.seen.append(step)

        def __call__(self, model, batch):
            return model(batch).pow(2).mean(), torch.tensor(1.0)

    class Batches:
        def batch(self, rng):
            return torch.ones(2, 3)

        def fixed_batches(self, count):
            return [torch.ones(2, 3)]

    config = TrainConfig(batch_size=2, eval_every=2, max_steps=3, valid_crops=2)
    first = Steps()
    model = torch.nn.Linear(3, 1)
    model.config = {}
    Trainer(model, "linear", Batches(), Batches(), config, tmp_path, loss_fn=first).run()
    again = Steps()
    Trainer(model, "linear", Batches(), Batches(), replace(config, max_steps=5), tmp_path,
            loss_fn=again).run()
    assert first.seen == [0, 1, 2] and again.seen == [3, 4]


def test_training_windows_of_a_config_with_a_hop_start_inside_bars(tunes):
    config = replace(find_config("mel_2bar"), train_hop=4)
    train = load_windows(config, (str(tunes),), "train")
    by_bar = load_windows(find_config("mel_2bar"), (str(tunes),), "train")
    valid = load_windows(config, (str(tunes),), "valid")
    assert len(train) > 3 * len(by_bar)
    assert np.array_equal(valid, load_windows(find_config("mel_2bar"), (str(tunes),), "valid"))


# --- the command ------------------------------------------------------------------


def test_interpolate_writes_the_points_back_to_back(mel_path, tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    a.write_bytes(score_to_midi(melody(TUNE_A)))
    b.write_bytes(score_to_midi(melody(TUNE_B)))
    out = run(["interpolate", a, b, "--model", mel_path, "--steps", "5", "--seed", "1",
               "--to", "jsonl", "--concat"])
    assert out.code == 0, out.stderr
    [score] = jsonl_lines(out.stdout)
    assert score["totalTime"] == pytest.approx(5 * 32 * 0.125)  # 5 windows of 32 16ths at 120
    assert score["mtools"]["model"] == "music_vae:mel_2bar"


def test_interpolate_without_concat_gives_one_output_per_point(mel_path, tmp_path):
    both = scores_to_jsonl([melody(TUNE_A), melody(TUNE_B)]).encode()
    lines = run(["interpolate", "--model", mel_path, "--steps", "4", "--to", "jsonl"], both)
    assert lines.code == 0, lines.stderr
    assert len(jsonl_lines(lines.stdout)) == 4  # JSONL defaults to one line per point
    files = run(["interpolate", "--model", mel_path, "--steps", "3", "--no-concat",
                 "-o", f"{tmp_path}/morph/"], both)
    assert files.code == 0, files.stderr
    assert sorted(p.name for p in (tmp_path / "morph").iterdir()) == [
        "interpolation-1.mid", "interpolation-2.mid", "interpolation-3.mid"]
    refused = run(["interpolate", "--model", mel_path, "--no-concat"], both)
    assert refused.code == 2 and "-o DIR/" in refused.stderr


def test_sampling_the_prior_and_emitting_latents(mel_path):
    out = run(["interpolate", "--model", mel_path, "--sample", "3", "--seed", "2",
               "--emit-latents"])
    assert out.code == 0, out.stderr
    rows = jsonl_lines(out.stdout)
    assert [r["index"] for r in rows] == [0, 1, 2] and all(len(r["z"]) == 8 for r in rows)
    first = run(["interpolate", "--model", mel_path, "--sample", "2", "--seed", "2", "--to", "jsonl"])
    again = run(["interpolate", "--model", mel_path, "--sample", "2", "--seed", "2", "--to", "jsonl"])
    assert first.code == 0 and first.stdout == again.stdout


def test_interpolation_latents_run_from_a_to_b(mel_path, mel):
    both = scores_to_jsonl([melody(TUNE_A), melody(TUNE_B)]).encode()
    ids = np.stack([take_window(melody(t), mel.space, "tune")[0].ids for t in (TUNE_A, TUNE_B)])
    mu, _ = mel.encode(ids)
    out = run(["interpolate", "--model", mel_path, "--steps", "3", "--emit-latents",
               "--fit-rounds", "0"], both)
    rows = jsonl_lines(out.stdout)
    assert [r["fraction"] for r in rows] == [0.0, 0.5, 1.0]
    assert np.allclose(rows[0]["z"], mu[0], atol=1e-5) and np.allclose(rows[-1]["z"], mu[1], atol=1e-5)
    fitted = jsonl_lines(run(["interpolate", "--model", mel_path, "--steps", "3",
                              "--emit-latents"], both).stdout)
    ends = np.array([fitted[0]["z"], fitted[-1]["z"]], np.float32)
    assert np.allclose(ends, fit_latents(mel, ids).z, atol=1e-5)
    backwards = jsonl_lines(run(["interpolate", "--model", mel_path, "--steps", "3",
                                 "--emit-latents"], scores_to_jsonl([melody(TUNE_B), melody(TUNE_A)]).encode()).stdout)
    assert [r["z"] for r in backwards] == [r["z"] for r in fitted[::-1]]  # each end fits alone


def test_the_ends_of_a_path_are_decoded_greedily_and_the_points_between_sampled(mel_path):
    both = scores_to_jsonl([melody(TUNE_A), melody(TUNE_B)]).encode()

    def notes(temperature: str, seed: str) -> list[list]:
        out = run(["interpolate", "--model", mel_path, "--steps", "4", "--to", "jsonl",
                   "--temperature", temperature, "--seed", seed], both)
        assert out.code == 0, out.stderr
        return [[(n["pitch"], n.get("startTime", 0)) for n in row["notes"]]
                for row in jsonl_lines(out.stdout)]

    greedy, hot, other = notes("0", "1"), notes("1.5", "1"), notes("1.5", "2")
    assert hot[0] == greedy[0] == other[0] and hot[-1] == greedy[-1] == other[-1]
    assert hot[1:-1] != greedy[1:-1] and hot[1:-1] != other[1:-1]


@pytest.mark.parametrize("config, gains", [("mel_2bar", True), ("drums_2bar", True),
                                           ("trio_16bar", True),
                                           ("mel_16bar", False)])  # decodes any z alike
def test_fitted_latents_decode_at_least_as_close_to_their_windows_as_the_means(config, gains,
                                                                               tmp_path):
    model = MusicVae.from_ref(resolve_model(str(tiny_music_vae(tmp_path, config))))
    rng = np.random.default_rng(3)
    ids = model.decode(rng.normal(size=(4, model.z_size)).astype(np.float32), temperature=0)
    ids[:3, ::3] = model.decode(rng.normal(size=(3, model.z_size)).astype(np.float32),
                                temperature=0)[:, ::3]  # steps of other windows: mistakes to fix
    mean = fit_latents(model, ids, rounds=0)
    mu, _ = model.encode(ids)
    assert np.array_equal(mean.z, mu) and np.array_equal(mean.decoded, model.decode(mu, temperature=0))
    fit = fit_latents(model, ids, rounds=3, candidates=8)
    assert np.array_equal(fit.decoded, model.decode(fit.z, temperature=0))
    cells = (model.space.parts(fit.decoded) == model.space.parts(ids)).mean(axis=(1, 2))
    assert np.array_equal(fit.right, cells)
    assert np.all(fit.right >= mean.right)
    assert fit.right.mean() > mean.right.mean() or not gains
    kept = fit.right == mean.right  # nothing better found, or nothing to find
    assert np.array_equal(fit.z[kept], mu[kept])
    alone = fit_latents(model, ids[1:2], rounds=3, candidates=8)
    assert np.array_equal(alone.z[0], fit.z[1])  # a window's fit does not depend on the others


def test_a_window_decoded_right_at_its_mean_is_not_searched(mel):
    z = np.random.default_rng(8).normal(size=(2, mel.z_size)).astype(np.float32)
    ids = mel.decode(z, temperature=0)
    mean = fit_latents(mel, ids, rounds=0)
    perfect = mean.right == 1
    if not perfect.any():
        pytest.skip("no random window the tiny model reconstructs perfectly")
    fit = fit_latents(mel, ids, rounds=2)
    assert np.array_equal(fit.z[perfect], mean.z[perfect])


def test_fitting_refuses_grooves(tmp_path):
    model = MusicVae.from_ref(resolve_model(str(tiny_music_vae(tmp_path, "groovae"))))
    with pytest.raises(ValueError, match="groove"):
        fit_latents(model, np.zeros((1, 32, 27), np.float32))


def test_fit_rounds_says_its_default_and_is_refused_with_sample(mel_path):
    assert InterpolateOptions().fit_rounds == FIT_ROUNDS
    assert f"default {FIT_ROUNDS}" in " ".join(run(["interpolate", "--help"]).stdout.decode().split())
    refused = run(["interpolate", "--model", mel_path, "--sample", "2", "--fit-rounds", "1"])
    assert refused.code == 2 and "--fit-rounds" in refused.stderr


def test_interpolate_explains_inputs_it_cannot_use(mel_path, drums_path, tmp_path):
    tune = score_to_jsonl(melody(TUNE_A)).encode()
    one = run(["interpolate", "--model", mel_path], tune)
    assert one.code == 2 and "two scores" in one.stderr
    both = scores_to_jsonl([melody(TUNE_A), melody(TUNE_B)]).encode()
    no_drums = run(["interpolate", "--model", drums_path], both)
    assert no_drums.code == 65 and "no drum notes" in no_drums.stderr
    beats = scores_to_jsonl([beat(), beat()]).encode()
    no_melody = run(["interpolate", "--model", mel_path], beats)
    assert no_melody.code == 65 and "no pitched notes" in no_melody.stderr
    past = run(["interpolate", "--model", mel_path, "--window", "9"], both)
    assert past.code == 2 and "has 2 bar(s), no bar 9" in past.stderr
    bad = run(["interpolate", "--model", mel_path, "--window", "0"], both)
    assert bad.code == 2 and "--window" in bad.stderr
    (tmp_path / "a.jsonl").write_bytes(both)
    with_inputs = run(["interpolate", "--model", mel_path, "--sample", "2", tmp_path / "a.jsonl"])
    assert with_inputs.code == 2 and "takes no inputs" in with_inputs.stderr
    latents_as_midi = run(["interpolate", "--model", mel_path, "--emit-latents", "-o",
                           tmp_path / "z.mid"], both)
    assert latents_as_midi.code == 2 and not (tmp_path / "z.mid").exists()


def test_a_longer_input_says_which_window_was_taken_unless_asked_for_one(mel_path):
    long = melody(" ".join([TUNE_A] * 3))  # 6 bars
    both = scores_to_jsonl([long, melody(TUNE_B)]).encode()
    out = run(["interpolate", "--model", mel_path, "--to", "jsonl"], both)
    assert out.code == 0, out.stderr
    assert "took bars 1-2 of 6 (the model reads 2; --window BAR takes others)" in out.stderr
    asked = run(["interpolate", "--model", mel_path, "--window", "3,1", "--to", "jsonl"], both)
    assert asked.code == 0 and asked.stderr == ""


def test_a_shorter_input_says_how_much_silence_fills_the_window(mel_path):
    short = melody("60 _ 62 _ 64 _ 65 _ 67 _ _ _ 67 _ _ _")  # one bar
    out = run(["interpolate", "--model", mel_path, "--to", "jsonl"],
              scores_to_jsonl([short, melody(TUNE_B)]).encode())
    assert out.code == 0, out.stderr
    assert "(score 1): 1 bar(s) of silence after its bar 1 fill the model's 2" in out.stderr
    assert out.stderr.count("silence") == 1  # B fills its 2 bars
    waltz = replace(melody("60 _ _ _ 62 _ _ _ 64 _ _ _"), time_signatures=(TimeSignature(0.0, 3, 4),))
    out = run(["interpolate", "--model", mel_path, "--to", "jsonl"],
              scores_to_jsonl([waltz, melody(TUNE_B)]).encode())
    assert out.code == 0, out.stderr
    assert "(score 1): 20 16th notes of silence after its end fill the model's 32" in out.stderr


def test_a_stacked_16_bar_model_interpolates_16_bar_melodies(tmp_path):
    path = tiny_music_vae(tmp_path, "mel_16bar")
    card = resolve_model(str(path)).card
    assert card.hyperparameters["stacked"] and card.hyperparameters["bars"] == 16
    a, b = melody(" ".join([TUNE_A] * 8)), melody(" ".join([TUNE_B] * 8))  # 16 bars each
    out = run(["interpolate", "--model", path, "--steps", "3", "--seed", "1", "--to", "jsonl",
               "--concat"], scores_to_jsonl([a, b]).encode())
    assert out.code == 0, out.stderr
    [score] = jsonl_lines(out.stdout)
    assert score["totalTime"] == pytest.approx(3 * 256 * 0.125)  # 3 windows of 16 bars at 120
    model = MusicVae.from_ref(resolve_model(str(path)))
    ids = np.stack([take_window(x, model.space, name)[0].ids for x, name in ((a, "a"), (b, "b"))])
    mu, sigma = model.encode(ids)
    assert mu.shape == (2, 8) and np.isfinite(mu).all() and (sigma > 0).all()
    assert not np.allclose(mu[0], mu[1])  # the encoder reads the windows
    assert model.decode(mu[:0]).shape == (0, 256) and model.decode(mu).shape == (2, 256)

def test_drum_interpolation_writes_drum_notes(drums_path):
    beats = scores_to_jsonl([beat(), beat(4)]).encode()
    out = run(["interpolate", "--model", drums_path, "--steps", "2", "--to", "jsonl", "--concat"],
              beats)
    assert out.code == 0, out.stderr
    [score] = jsonl_lines(out.stdout)
    assert score["notes"] and all(n.get("isDrum") for n in score["notes"])


# --- train and eval ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tunes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae_tunes")
    write_random_tunes(folder)
    return folder


def test_train_exports_a_card_that_eval_reproduces(tunes, tmp_path):
    out = tmp_path / "models"
    trained = run(["train", "music_vae", "--config", "mel_2bar", "--data", tunes, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "3", "--hidden", "8",
                   "--batch-size", "4", "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(out / "music_vae-mel_2bar.json")).card
    assert card.task == "interpolate" and card.training["steps"] == 3
    assert card.training["valid_windows"] > 0
    figures = run(["eval", "--model", str(out / "music_vae-mel_2bar.onnx"), tunes, "--split",
                   "valid", "--json"])
    assert figures.code == 0, figures.stderr
    measured = json.loads(figures.stdout)
    for key in ("windows", "accuracy_teacher_forced", "accuracy_sampled", "kl_per_window"):
        assert measured[key] == card.metrics[key]


def test_a_new_run_can_start_from_an_export_and_a_resume_keeps_its_note(tunes, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["train", "music_vae", "--config", "mel_2bar", "--data", tunes, "--hidden", "8",
              "--batch-size", "4", "--quiet"]
    assert run([*common, "--out", first, "--run-dir", tmp_path / "run1", "--max-steps", "2"]).code == 0
    export = first / "music_vae-mel_2bar.onnx"
    started = run([*common, "--out", second, "--run-dir", tmp_path / "run2", "--max-steps", "0",
                   "--init-from", export, "--scheduled-sampling-rate", "50"])
    assert started.code == 0, started.stderr
    card = resolve_model(str(second / "music_vae-mel_2bar.json")).card
    assert card.training["initialised_from"]["file"] == export.name
    assert card.training["initialised_from"]["its_steps"] == 2
    assert "--init-from" in card.training["command"] and "rate 50" in str(card.hyperparameters)
    earlier = resolve_model(str(export)).card
    for key in ("accuracy_teacher_forced", "accuracy_sampled", "kl_per_window"):
        assert card.metrics[key] == pytest.approx(earlier.metrics[key], abs=1e-4)
    resumed = run([*common, "--out", second, "--run-dir", tmp_path / "run2", "--max-steps", "1"])
    assert resumed.code == 0, resumed.stderr
    card = resolve_model(str(second / "music_vae-mel_2bar.json")).card
    assert card.training["initialised_from"]["file"] == export.name
    assert f"--init-from {export}" in card.training["command"]  # a resume still started there


def test_init_from_refuses_another_network_and_other_families(tunes, tmp_path, mel_path):
    wider = run(["train", "music_vae", "--config", "mel_2bar", "--data", tunes, "--hidden", "16",
                 "--out", tmp_path, "--run-dir", tmp_path / "run", "--max-steps", "0",
                 "--init-from", mel_path, "--quiet"])
    assert wider.code == 1, wider.stderr
    assert "in the file" in wider.stderr or "computes something else" in wider.stderr
    other = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--hidden", "8",
                 "--init-from", mel_path, "--out", tmp_path, "--run-dir", tmp_path / "run2",
                 "--max-steps", "0", "--quiet"])
    assert other.code == 1 and "in the file" in other.stderr, other.stderr
    groove = run(["train", "music_vae", "--config", "groovae", "--data", tunes,
                  "--scheduled-sampling-rate", "10", "--out", tmp_path, "--max-steps", "0"])
    assert groove.code == 2 and "melody and drum windows" in groove.stderr, groove.stderr



def test_a_16_bar_model_starts_from_a_2_bar_ones_encoder_and_bar_decoder(mel_path, tmp_path):
    from mtools.training.music_vae import donor_network
    from mtools.errors import MtoolsError, UsageError
    from mtools.training.warm_start import take_matching, warm_start

    torch.manual_seed(1)
    model = MusicVAENet(90, 90, z_size=8, enc_hidden=8, dec_hidden=8, bars=16, conductor_hidden=8)
    conductor = model.conductor.weight_hh_l0.detach().clone()
    donor = donor_network(model, Path(mel_path))
    assert donor is not None and donor.config["bars"] == 1
    note = warm_start(tmp_path / "run", model, Path(mel_path), "tiny", parity_error,
                      lambda message: None, donor=donor)
    assert "decoder.weight_hh_l1" in note["took"] and "encoder.weight_ih_l0" in note["took"]
    assert all(name.startswith("conductor") for name in note["kept_initialised"])
    assert torch.equal(model.conductor.weight_hh_l0, conductor)
    assert torch.equal(model.encoder.weight_ih_l0_reverse, donor.encoder.weight_ih_l0_reverse)
    # A bar played from an embedding is what the 2-bar model plays first from that z
    embedding = torch.randn(3, 8)
    steps = torch.from_numpy(MELODY.features(np.random.default_rng(0).integers(0, 90, (3, 16))))
    with torch.no_grad():
        mine = model.decode(embedding, steps, *model.initial_state(embedding))[0]
        theirs = donor.decode(embedding, steps, *donor.initial_state(embedding))[0]
    assert torch.allclose(mine, theirs)
    same = MusicVAENet(90, 90, z_size=8, enc_hidden=8, dec_hidden=8, bars=1, conductor_hidden=8)
    wider = MusicVAENet(90, 90, z_size=8, enc_hidden=16, dec_hidden=8, bars=16,
                        conductor_hidden=8)
    assert donor_network(same, Path(mel_path)) is None  # the same network loads whole
    assert donor_network(wider, Path(mel_path)) is None  # refused by the exact load, not taken in part
    with pytest.raises(MtoolsError, match="shares no tensor"):
        take_matching(model, torch.nn.Linear(2, 2))
    narrow = MusicVAENet(90, 90, z_size=8, enc_hidden=8, dec_hidden=8, bars=16,
                         conductor_hidden=4)  # its bar decoder reads embeddings of 4, not 8
    with pytest.raises(UsageError, match="would start at random"):
        donor_network(narrow, Path(mel_path))
    sixteen = tiny_music_vae(tmp_path / "m16", "mel_16bar", z_size=8)  # stacked, z 8
    stacked = MusicVAENet(90, 90, z_size=16, enc_hidden=8, dec_hidden=8, bars=16,
                          conductor_hidden=8, stacked=True, pad_hot=(0,))
    with pytest.raises(UsageError, match="stands on a 2-bar one"):
        donor_network(stacked, sixteen)  # only a flat 2-bar model gives bar codes


def test_train_a_16_bar_model_from_a_2_bar_export_and_resume_it(tmp_path):
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_random_tunes(tunes, count=40, bars=16)
    export = tiny_music_vae(tmp_path / "mel2", "mel_2bar", z_size=256)  # z as wide as the conductor
    common = ["train", "music_vae", "--config", "mel_16bar", "--data", tunes, "--hidden", "8",
              "--batch-size", "2", "--out", tmp_path / "out", "--run-dir", tmp_path / "run",
              "--quiet"]
    started = run([*common, "--init-from", export, "--max-steps", "0"])  # the start alone
    assert started.code == 0, started.stderr
    card = resolve_model(str(tmp_path / "out" / "music_vae-mel_16bar.json")).card
    note = card.training["initialised_from"]
    assert "decoder.weight_ih_l0" in note["took"] and "to_mu.weight" in note["took"]
    assert note["kept_initialised"] == []  # summary and conductor: set by the principal start
    assert card.training["command"].endswith("--max-steps 0 --out DIR")
    start = note["principal_start"]  # the new parts set from the 2-bar model's bar codes
    assert set(start["set"]) == {"summary.weight", "summary.bias", "summary_scale",
                                 "conductor.weight", "conductor.bias"}
    assert 0 < start["components"] <= 512 and start["valid_windows"] > 0
    assert 0 <= start["valid_bar_accuracy_teacher_forced"] <= 1
    assert card.hyperparameters["stacked"] and card.hyperparameters["pad_hot"] == [0]
    resumed = run([*common, "--max-steps", "2"])
    assert resumed.code == 0, resumed.stderr
    card = resolve_model(str(tmp_path / "out" / "music_vae-mel_16bar.json")).card
    assert card.training["steps"] == 2 and card.training["initialised_from"]["took"] == note["took"]


def test_a_stacked_model_starts_at_the_principal_components_of_the_bar_codes():
    from mtools.training import stacked
    from mtools.training.warm_start import take_matching

    torch.manual_seed(0)
    donor = MusicVAENet(90, 90, z_size=4, enc_hidden=8, dec_hidden=8)
    model = MusicVAENet(90, 90, z_size=12, enc_hidden=8, dec_hidden=8, bars=4,
                        conductor_hidden=4, stacked=True, pad_hot=(0,))
    take_matching(model, donor)
    # codes of 4 bars x 4 dimensions that vary along 6 directions only
    mixing = torch.randn(6, 16)
    codes = (torch.randn(500, 6) @ mixing).reshape(500 * 4, 4)
    encodings = torch.linalg.lstsq(donor.to_mu.weight, (codes - donor.to_mu.bias).T,
                                   driver="gelsd").solution.T.reshape(500, 4, 16)
    with torch.no_grad():
        assert torch.allclose(donor.to_mu(encodings.reshape(-1, 16)), codes, atol=1e-4)
        stacked.principal_start(model, donor, encodings)
        mu, sigma = model.summarize(encodings.reshape(-1, 16))
        back = model.embeddings(mu).reshape(-1, 4)
    assert torch.allclose(back, codes, atol=1e-3)  # 6 components kept, the rest of z unused
    assert torch.allclose(mu[:, :6].mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(torch.cov(mu[:, :6].T), torch.eye(6), atol=0.01)  # z whitened
    assert not mu[:, 6:].any() and torch.allclose(sigma, torch.full_like(sigma, 0.05))


# --- grooves (GrooVAE): humanize and drumify ---------------------------------------

GROOVE = VaeSpace("groove", 32, encoder="quantized")


@pytest.fixture(scope="module")
def groove_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grooves")
    return {config: str(tiny_music_vae(folder, config)) for config in ("groovae", "groovae_tap")}


def played_beat(bars: int = 2, late_s: float = 0.02) -> Score:
    """beat() with every snare played late_s late and softer."""
    score = beat(bars)
    notes = [replace(n, start_s=n.start_s + late_s, end_s=n.end_s + late_s, velocity=60)
             if n.pitch == 38 else n for n in score.notes]
    return replace(score, notes=tuple(notes))


def test_drum_tracks_keep_the_timing_of_each_hit():
    (track,) = score_to_drum_tracks(played_beat(late_s=0.03), min_bars=0, timing=True)
    snare = 1  # class index of the snare
    steps = np.flatnonzero(track.events >> snare & 1)
    assert steps.tolist() == [4, 12, 20, 28]  # beats 2 and 4 of each bar, 16ths
    assert np.allclose(track.offsets[steps, snare], 0.03 / 0.125, atol=1e-4)  # 125 ms per 16th
    assert np.allclose(track.offsets[:, 0], 0) and track.velocities[4, snare] == 60
    # A 2-bar loop ends one step after its last hit; pad_end makes it 2 bars again
    assert score_to_drum_tracks(beat(2), min_bars=2, timing=True) == []
    (loop,) = score_to_drum_tracks(beat(2), min_bars=2, timing=True, pad_end=True)
    assert len(loop.events) == 32


def test_the_last_bars_of_a_line_give_a_window_too():
    events = np.full(63, -2)  # 4 bars less one step, a note starting in every bar
    events[[0, 16, 32, 48]] = [60, 62, 64, 65]
    rows = windows_of(events, MELODY, 16)
    assert len(rows) == 3 and rows[2][16] == 65 - 21 + 2  # the window of bars 3-4 is there


def test_groove_frames_round_trip_and_what_each_encoder_reads():
    (track,) = score_to_drum_tracks(played_beat(), min_bars=0, timing=True)
    frames = groove_frames(track, 0, 32)
    events, velocities, offsets = frames_to_hits(frames)
    length = len(track.events)  # a track ends one step after its last hit; frames pad to 32
    assert length == 31 and events[length:].tolist() == [0]
    assert np.array_equal(events[:length], track.events)
    assert np.array_equal(velocities[:length], track.velocities)
    assert np.allclose(offsets[:length], track.offsets, atol=1e-6)
    quantized = GROOVE.encoder_features(frames[None])[0]
    assert np.array_equal(quantized[:, :9], frames[:, :9]) and not quantized[:, 9:].any()
    taps = VaeSpace("groove", 32, encoder="tap").encoder_features(frames[None])[0]
    assert np.array_equal(taps[:, 0], frames[:, :9].max(axis=1)) and not taps[:, 1:18].any()
    assert taps[4, 18] == 0.0  # the loudest hit of the step is the on-grid hi-hat, not the snare
    frames[4, 9 + 1] = 0.9  # now the late snare is the loudest
    taps = VaeSpace("groove", 32, encoder="tap").encoder_features(frames[None])[0]
    assert taps[4, 18] == pytest.approx(frames[4, 18 + 1]) and frames[4, 18 + 1] > 0.3


def test_groove_loss_ignores_velocity_and_offset_where_nothing_is_struck():
    frames = torch.zeros(1, 32, 27)
    frames[0, 0, 0], frames[0, 0, 9] = 1.0, 0.8
    outputs = torch.full((1, 32, 27), -20.0)
    outputs[0, 0, 0], outputs[0, 0, 9], outputs[0, :, 18:] = 20.0, float(np.log(0.8 / 0.2)), 0.0
    assert float(groove_loss(outputs, frames)[0]) == pytest.approx(0.0, abs=1e-5)
    outputs[0, 5, 9] = 5.0  # a velocity where nothing is struck costs nothing
    assert float(groove_loss(outputs, frames)[0]) == pytest.approx(0.0, abs=1e-5)
    outputs[0, 0, 18] = 1.0  # a wrong offset on the hit does
    assert float(groove_loss(outputs, frames)[0]) > 0.5


def test_humanize_moves_and_reweights_every_hit_but_keeps_keys_and_steps(groove_paths):
    score = beat(4)
    out = run(["humanize", "--model", groove_paths["groovae"], "--seed", "1", "--to", "jsonl"],
              score_to_jsonl(score).encode())
    assert out.code == 0, out.stderr
    [played] = jsonl_lines(out.stdout)
    before = sorted((n.pitch, round(n.start_s / 0.125)) for n in score.notes)
    after = sorted((n["pitch"], round(n.get("startTime", 0.0) / 0.125)) for n in played["notes"])
    assert before == after  # same keys on the same 16ths
    assert {n["velocity"] for n in played["notes"]} != {80, 100}
    starts = sorted(n.get("startTime", 0.0) for n in played["notes"])
    assert starts != sorted(n.start_s for n in score.notes)  # played off the grid
    again = run(["humanize", "--model", groove_paths["groovae"], "--seed", "1", "--to", "jsonl"],
                score_to_jsonl(score).encode())
    assert again.stdout == out.stdout


def test_unseeded_samples_and_grooves_name_the_seed_that_makes_them_again(mel_path, groove_paths):
    given = score_to_jsonl(beat(2)).encode()
    for args, stdin in ((["interpolate", "--model", mel_path, "--sample", "2"], b""),
                        (["humanize", "--model", groove_paths["groovae"], "--temperature", "1"],
                         given)):
        out = run([*args, "--to", "jsonl"], stdin)
        seed = jsonl_lines(out.stdout)[0]["mtools"]["seed"]
        assert out.code == 0 and isinstance(seed, int), out.stderr
        assert run([*args, "--seed", str(seed), "--to", "jsonl"], stdin).stdout == out.stdout


def test_drumify_plays_the_rhythm_of_a_melody_and_keeps_it(groove_paths):
    tune = melody(TUNE_A)
    out = run(["drumify", "--model", groove_paths["groovae_tap"], "--seed", "3", "--temperature",
               "0", "--to", "jsonl"], score_to_jsonl(tune).encode())
    assert out.code == 0, out.stderr
    [made] = jsonl_lines(out.stdout)
    kept = [n for n in made["notes"] if not n.get("isDrum")]
    assert [n["pitch"] for n in kept] == [n.pitch for n in tune.notes]
    drums = [n for n in made["notes"] if n.get("isDrum")]
    assert drums and all(35 <= n["pitch"] <= 81 for n in drums)


def test_groove_commands_explain_what_they_cannot_do(groove_paths, mel_path):
    tune = score_to_jsonl(melody(TUNE_A)).encode()
    no_drums = run(["humanize", "--model", groove_paths["groovae"]], tune)
    assert no_drums.code == 65 and "no drum notes" in no_drums.stderr and "drumify" in no_drums.stderr
    wrong = run(["humanize", "--model", groove_paths["groovae_tap"]], score_to_jsonl(beat()).encode())
    assert wrong.code == 2 and "drumify" in wrong.stderr
    melody_model = run(["humanize", "--model", mel_path], score_to_jsonl(beat()).encode())
    assert melody_model.code == 2


def test_train_a_groove_model_and_eval_reproduces_its_card(tmp_path):
    folder = tmp_path / "beats"
    folder.mkdir()
    for index in range(12):
        (folder / f"beat{index:02d}.mid").write_bytes(score_to_midi(played_beat(4, 0.01 * index)))
    out = tmp_path / "models"
    trained = run(["train", "music_vae", "--config", "groovae", "--data", folder, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "2", "--hidden", "8",
                   "--batch-size", "4", "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(out / "music_vae-groovae.json")).card
    assert card.task == "humanize" and card.encoding["encoder"] == "quantized"
    figures = run(["eval", "--model", str(out / "music_vae-groovae.onnx"), folder, "--split",
                   "valid", "--json"])
    assert figures.code == 0, figures.stderr
    measured = json.loads(figures.stdout)
    assert measured["windows"] == card.metrics["windows"] > 0
    assert "hit_f1" not in measured  # humanize keeps the true hits: nothing to score there
    for key in ("velocity_mae", "velocity_mae_class_mean", "offset_mae_steps", "offset_mae_on_grid"):
        assert key in measured


def test_the_drumify_baseline_plays_each_positions_usual_drums_at_the_taps():
    from mtools.models.music_vae import _hits_by_position

    hits = np.zeros((3, 32, 9), bool)
    hits[:, :, 2] = True  # closed hi-hat on every 16th
    hits[:, ::8, 0] = True  # kick on beats 1 and 3
    hits[0, 4, 1] = True  # one snare: not the usual thing at that 16th
    hits[1, 5, :] = False  # a step without a tap
    guess = _hits_by_position(hits)
    assert guess[:, :, 2].sum() == 3 * 32 - 1 and not guess[1, 5].any()
    assert np.array_equal(guess[..., 0], hits[..., 0]) and not guess[..., 1].any()


def test_sample_refuses_steps_it_would_ignore(mel_path):
    out = run(["interpolate", "--model", mel_path, "--sample", "2", "--steps", "4", "--to", "jsonl"])
    assert out.code == 2 and "--sample N decodes N draws" in out.stderr


def test_a_run_validated_one_way_does_not_resume_validated_the_other(tunes, tmp_path):
    common = ["train", "music_vae", "--config", "mel_2bar", "--data", tunes, "--hidden", "8",
              "--batch-size", "4", "--quiet", "--out", tmp_path, "--run-dir", tmp_path / "run"]
    assert run([*common, "--max-steps", "1"]).code == 0
    switched = run([*common, "--max-steps", "2", "--scheduled-sampling-rate", "10"])
    assert switched.code == 2 and "validated teacher-forced" in switched.stderr
