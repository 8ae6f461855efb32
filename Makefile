# mtools: `make demo` installs into .venv and runs the main job on bundled
# models; `make test` installs and runs every test. Both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INFER_VENV := .venv-infer
PIP_QUIET := -q --disable-pip-version-check

.PHONY: install demo test test-unit test-inference bench docs clean

# The dev install: the package (editable) with ONNX Runtime, the training
# extra and test tools. torch is pinned first to the CPU build that lies on
# these machines (any other spec pulls gigabytes of CUDA); the `train`
# extra's looser range is then already satisfied. Two packages must come
# without their declared dependencies:
# tinysoundfont (its wheel declares pyaudio, which does not build) and
# pretty_midi (only for the General MIDI soundfont TimGM6mb.sf2 it ships).
$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) torch==2.13.0
	$(BIN)/pip install $(PIP_QUIET) -e ".[cpu,dev,train]"
	$(BIN)/pip install $(PIP_QUIET) --no-deps tinysoundfont pretty_midi
	touch $@

install: $(BIN)/.installed

demo: install
	@mkdir -p demo
	@echo "== ABC -> MIDI -> JSONL -> MIDI, through pipes"
	$(BIN)/mtools convert examples/ode_to_joy.abc --to midi \
	  | $(BIN)/mtools convert --to jsonl | tee demo/ode_to_joy.jsonl \
	  | $(BIN)/mtools convert --to midi -o demo/ode_to_joy.mid
	@$(BIN)/python -c "import json; d = json.loads(open('demo/ode_to_joy.jsonl').readline()); \
	  print('notes:', len(d['notes']), ' seconds:', round(d['totalTime'], 2), ' qpm:', d['tempos'][0]['qpm'])"
	@echo "== MIDI -> WAV (soundfont render, to listen)"
	$(BIN)/mtools convert demo/ode_to_joy.mid -o demo/ode_to_joy.wav
	@echo "== Melody RNN continues the tune 8 bars (attention_rnn, at its card's temperature), four takes in one batch"
	$(BIN)/mtools convert examples/ode_to_joy.abc --to midi \
	  | $(BIN)/mtools continue --model melody_rnn --bars 8 -n 4 --seed 1 -o demo/ode_continued/
	@echo "== Drums RNN continues a two-bar beat for four bars"
	$(BIN)/mtools continue examples/rock_beat.mid --model drums_rnn --bars 4 --seed 1 -o demo/rock_beat_continued.mid
	@echo "== Improv RNN plays over a progression, with the chords as a track"
	$(BIN)/mtools continue --model improv_rnn --chords "C Am F G7" --bars 8 --render-chords --seed 1 \
	  -o demo/improv.mid < /dev/null
	$(BIN)/mtools convert demo/improv.mid -o demo/improv.wav
	@echo "== Coconet harmonizes the tune in four voices (it stays the soprano), organ sound"
	$(BIN)/mtools convert examples/ode_to_joy.abc --to midi \
	  | $(BIN)/mtools harmonize --seed 1 --program 19 -o demo/ode_to_joy_satb.mid
	$(BIN)/mtools convert demo/ode_to_joy_satb.mid -o demo/ode_to_joy_satb.wav
	@echo "== Coconet writes new alto and tenor parts for bars 3 and 4, three takes"
	$(BIN)/mtools infill demo/ode_to_joy_satb.mid --start 3 --end 5 --voices alto,tenor -n 3 --seed 2 \
	  -o demo/ode_to_joy_infilled/
	@echo "== MusicVAE morphs the opening of Ode to Joy into Frere Jacques in 6 steps"
	$(BIN)/mtools convert examples/frere_jacques.abc --to midi -o demo/frere_jacques.mid
	$(BIN)/mtools interpolate demo/ode_to_joy.mid demo/frere_jacques.mid --steps 6 --seed 1 \
	  -o demo/ode_to_frere.mid
	$(BIN)/mtools convert demo/ode_to_frere.mid -o demo/ode_to_frere.wav
	@echo "== ... whole 16-bar tunes (mel_16bar): Ode to Joy into the Melody RNN's 8 bars after it"
	$(BIN)/mtools interpolate demo/ode_to_joy.mid demo/ode_continued/stdin-1.mid --window 1,9 \
	  --model music_vae:mel_16bar --steps 3 --seed 1 -o demo/ode_16bar_morph.mid
	@echo "== ... 16 bars of melody, bass and drums (trio_16bar): two draws from its prior, then a morph"
	$(BIN)/mtools interpolate --model music_vae:trio_16bar --sample 2 --seed 1 -o demo/trio_samples.mid
	$(BIN)/mtools interpolate demo/trio_samples.mid demo/trio_samples.mid --window 1,17 \
	  --model music_vae:trio_16bar --steps 3 --seed 1 -o demo/trio_morph.mid
	$(BIN)/mtools convert demo/trio_morph.mid -o demo/trio_morph.wav
	@echo "== ... and a rock beat into a half-time groove (drums_2bar)"
	$(BIN)/mtools interpolate examples/rock_beat.mid examples/halftime_beat.mid --steps 4 \
	  --model music_vae:drums_2bar --seed 1 -o demo/rock_to_halftime.mid
	@echo "== GrooVAE plays the programmed rock beat like a drummer (same hits, new velocities and timing)"
	$(BIN)/mtools humanize examples/rock_beat.mid --seed 1 -o demo/rock_beat_humanized.mid
	@echo "== ... and puts a drum groove under Ode to Joy that follows its rhythm (drumify)"
	$(BIN)/mtools convert examples/ode_to_joy.abc --to midi | $(BIN)/mtools drumify --seed 1 \
	  -o demo/ode_to_joy_drums.mid
	@echo "== Onsets and Frames transcribes 22 s of piano audio (Maple Leaf Rag), scored against its notes"
	$(BIN)/mtools transcribe examples/maple_leaf_rag.ogg -o demo/maple_leaf_rag.mid
	$(BIN)/mtools eval transcribe --ref examples/maple_leaf_rag.mid examples/maple_leaf_rag.ogg
	@echo "== Onsets and Frames drums transcribes 21 s of a drummer's funk beat, scored against its hits"
	$(BIN)/mtools transcribe --model onsets_frames_drums examples/funk_beat.ogg -o demo/funk_beat.mid
	$(BIN)/mtools eval transcribe --model onsets_frames_drums --ref examples/funk_beat.mid \
	  examples/funk_beat.ogg
	@echo "== The headline pipeline: transcribe the recording, then Coconet harmonizes its top line"
	$(BIN)/mtools transcribe examples/maple_leaf_rag.ogg | $(BIN)/mtools harmonize --seed 1 \
	  -o demo/maple_leaf_rag_satb.mid
	@$(BIN)/mtools models
	@ls -lR demo/

test: test-unit test-inference

test-unit: install
	$(BIN)/python -m pytest -q

# Inference must not need torch: a plain (non-editable) install with only the
# runtime extra serves the commands, and a smoke test proves it.
test-inference:
	$(PYTHON) -m venv $(INFER_VENV)
	$(INFER_VENV)/bin/pip install $(PIP_QUIET) ".[cpu]" pytest
	cd tests && ../$(INFER_VENV)/bin/python -m pytest -q -p no:cacheprovider inference_smoke.py

# Timings run through benchmarks/quiet_machine.sh, which pauses background
# training jobs meanwhile. The `continue` benchmarks measure every bundled
# continue model, or the models given: make bench BENCH_CONTINUE_ARGS="--model PATH".
# The transcribe benchmark compares with basic-pitch (in .venv-bench):
# make bench BENCH_TRANSCRIBE_ARGS="--model PATH --pieces 4".
BENCH_CONTINUE_ARGS ?=
BENCH_TRANSCRIBE_ARGS ?=
bench: install
	bash benchmarks/setup_venv.sh
	bash benchmarks/quiet_machine.sh .venv-bench/bin/python benchmarks/bench_cli.py
	bash benchmarks/quiet_machine.sh $(BIN)/python benchmarks/bench_continue.py $(BENCH_CONTINUE_ARGS)
	$(BIN)/python benchmarks/bench_continue_stats.py $(BENCH_CONTINUE_ARGS)
	bash benchmarks/quiet_machine.sh $(BIN)/python benchmarks/bench_interpolate.py
	bash benchmarks/quiet_machine.sh .venv-bench/bin/python benchmarks/bench_transcribe.py $(BENCH_TRANSCRIBE_ARGS)

docs: install
	$(BIN)/python -m mtools.docs

clean:
	rm -rf $(VENV) $(INFER_VENV) .venv-bench demo build dist src/*.egg-info
