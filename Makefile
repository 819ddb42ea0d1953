# The commands a newcomer uses. Each one installs what it needs first.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build topk test test-asan test-cuda demo bench fuzz clean

all: build

deps:
	@bash tools/install-deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

# Only the `topk` tool (what demo and bench run), none of the test binaries.
topk: deps configure
	cmake --build $(BUILD) -j $(JOBS) --target topk

# CPU tests (CUDA tests are labelled `cuda` and need a GPU: `make test-cuda`).
test: build
	cd $(BUILD) && ctest -LE cuda --output-on-failure -j $(JOBS)

test-cuda: build
	cd $(BUILD) && ctest -L cuda --output-on-failure

# The CPU tests and a train/generate/eval smoke run under AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, in their own build folder with CUDA off. A report fails the run.
ASAN_BUILD ?= build-asan
ASAN_CXXFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
# Tests left out under the sanitizers: TrainCopy.TinyModelLearnsCopy and
# TrainCli.TrainThenGenerateWithTopkDecode train a model until it has learnt (40-80 s each
# normally, several minutes under the sanitizers) and add no code path that the other training
# tests and the smoke run (train, resume, generate, eval) do not run.
# ShippedDemoModel.RetrievesAt4KTokens evaluates the 4K-context shipped model (11 s normally,
# 3 minutes under the sanitizers) through eval code that other tests run on smaller inputs.
# install_consumer installs a whole build and compiles a program against it: no code of topk
# runs there. The Python package's test (the C ABI, torch) is left out by building without it
# (TOPK_CAPI=OFF).
ASAN_EXCLUDE ?= TinyModelLearnsCopy|TrainThenGenerateWithTopkDecode|ShippedDemoModel|install_consumer
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTOPK_CUDA=OFF \
	  -DTOPK_CAPI=OFF -DCMAKE_CXX_FLAGS="$(ASAN_CXXFLAGS)" $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target topk topk_tests
	cd $(ASAN_BUILD) && ctest -LE cuda -E '$(ASAN_EXCLUDE)' --output-on-failure -j $(JOBS)
	bash tools/smoke.sh $(ASAN_BUILD)/topk $(ASAN_BUILD)/smoke

# Evaluates the shipped 4K-context model (models/demo: about 3 minutes on 2 cores after building
# the tool; README) with full attention, top-k decoding at several rho, the oracle selector and a
# window, and writes plots. `topk demo --train` trains the small model instead.
# Without an NVIDIA GPU the demo builds the tool alone with CUDA off, in its own folder: 3
# minutes on 2 cores, where compiling the CUDA kernels (when nvcc is present) takes half an hour
# and gives a CPU-only machine nothing.
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
DEMO_BUILD ?= $(if $(HAVE_GPU),$(BUILD),build-cpu)

demo: deps
	@if [ "$(DEMO_BUILD)" = "$(BUILD)" ]; then $(MAKE) --no-print-directory configure; \
	elif [ ! -f $(DEMO_BUILD)/build.ninja ]; then \
	  cmake -S . -B $(DEMO_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOPK_CUDA=OFF \
	    -DTOPK_TESTS=OFF -DTOPK_CAPI=OFF $(CMAKE_FLAGS); fi
	cmake --build $(DEMO_BUILD) -j $(JOBS) --target topk
	$(DEMO_BUILD)/topk demo --dir $(DEMO_BUILD)/demo

bench: topk
	$(BUILD)/topk bench attention

# libFuzzer on the safetensors reader, config.json, run files and policy strings: clang with
# ASan + UBSan, CUDA off, its own build folder; FUZZ_SECONDS each (a crash stops the run and
# leaves its input in $(FUZZ_BUILD)/crash-*). New inputs go to $(FUZZ_BUILD)/corpus; the seeds
# are fuzz/corpus, the dictionaries (keys and telling values) fuzz/TARGET.dict.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = safetensors config runfile policy tokenizer
FUZZ_CXXFLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -g
fuzz: deps
	@bash tools/install-deps.sh fuzz
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
	  -DTOPK_CUDA=OFF -DTOPK_CAPI=OFF -DTOPK_TESTS=OFF -DTOPK_FUZZ=ON \
	  -DCMAKE_CXX_FLAGS="$(FUZZ_CXXFLAGS)" $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  log=$(FUZZ_BUILD)/fuzz_$$t.log; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s (log: $$log)"; \
	  if ! $(FUZZ_BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -rss_limit_mb=2048 -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- -dict=fuzz/$$t.dict \
	      $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t >$$log 2>&1; then \
	    tail -n 40 $$log; echo "fuzz_$$t FOUND A CRASH: $(FUZZ_BUILD)/crash-$$t-*"; exit 1; \
	  fi; \
	  grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' $$log; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
