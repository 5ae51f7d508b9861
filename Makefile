# graphc: the two set-up commands are `make demo` and `make test`; both build the environment first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.graphc-installed
# pytest-xdist workers; the CI machine has 2 cores
JOBS   ?= 2
# the target `make demo` runs on (c, opencl, ref)
TARGET ?= c

.PHONY: install demo test test-fast lint bench clean system-tools

# System tools the tests use, from Debian's packages: graphviz renders graphc's .dot output.
system-tools:
	@command -v dot >/dev/null 2>&1 || { echo "installing graphviz"; \
	  $$(test "$$(id -u)" = 0 || echo sudo) apt-get update -qq && \
	  $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y -qq graphviz >/dev/null; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# ggml-python builds real ggml from source (cmake + a C compiler, about a minute) and llama-cpp-python
	# builds llama.cpp (about 5 minutes), both for this CPU: the test oracles and benchmark peers
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(BIN)/python -m pip install -q -e '.[test]'
	# llama.cpp's tokenizer test vocabularies (ggml-vocab-*.gguf + expected ids) from its sdist
	$(BIN)/python tools/fetch_vocab.py $(VENV)/share/graphc-vocab
	touch $(STAMP)

install: $(STAMP)

# `make demo` installs only what graphc and the demo need (the runtime dependencies, gguf to write the demo's
# model file, and the extra of a non-default TARGET), not the test oracles (ggml, llama.cpp, torch): minutes
# less on a fresh machine. The demo compares with llama.cpp when llama-cpp-python is there (make test adds it).
comma := ,
DEMO_EXTRAS := gguf$(if $(filter opencl,$(TARGET)),$(comma)opencl)$(if $(filter triton,$(TARGET)),$(comma)triton)
DEMO_STAMP := $(VENV)/.graphc-demo-$(TARGET)
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(DEMO_EXTRAS)]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py --out demo-out --target $(TARGET)

test: $(STAMP) system-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(JOBS) -p no:cacheprovider tests

# A time-boxed random-graph campaign over every target (tools/fuzz.py): counts per target; failing graphs,
# shrunk, are saved under tests/regressions/ (tests/regressions/README.md)
MINUTES ?= 10
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python tools/fuzz.py --minutes $(MINUTES)

# A time-boxed mutation campaign over real files (tools/mutate.py): ggml exports, dot dumps, .graph, npz and
# GGUF files mutated byte- and field-wise, each through the API and the CLI in a child with time and memory
# limits; counts per kind and outcome; failing mutants saved under mutants/
.PHONY: mutate
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py --seconds $$(( $(MINUTES) * 60 )) --save mutants

lint: $(STAMP)
	$(BIN)/ruff check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -p no:cacheprovider -m "not ggml" tests

# The benchmarks' AVX2-tier peers (bench/isa.py): ggml-python and llama-cpp-python built for AVX2 only, into a
# folder of their own (never the venv: the tests use the native build). --no-cache-dir: pip's wheel cache would
# hand back the native wheel, whatever CMAKE_ARGS say. Skipped on CPUs without AVX2.
PEERS_AVX2 := bench/.cache/peers-avx2
$(PEERS_AVX2)/.built: | $(STAMP)
	@if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then \
	  echo "building ggml and llama.cpp for the AVX2 tier (bench only, several minutes)"; \
	  rm -rf $(PEERS_AVX2) && \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF" \
	  $(BIN)/python -m pip install -q --no-cache-dir --no-deps --no-binary :all: --target $(PEERS_AVX2) \
	    ggml-python==0.0.45 llama-cpp-python==0.3.36 && touch $@; \
	else echo "no AVX2 on this CPU: no AVX2-tier peers"; fi

bench: $(STAMP) $(PEERS_AVX2)/.built
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) demo-out build dist *.egg-info .pytest_cache .hypothesis
