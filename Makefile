# The commands a newcomer uses. Each one installs what it needs first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test test-cuda demo bench clean

all: build

deps:
	@bash tools/install-deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: $(BUILD)/build.ninja

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

# CPU tests (CUDA tests are labelled `cuda` and need a GPU: `make test-cuda`).
test: build
	cd $(BUILD) && ctest -LE cuda --output-on-failure -j $(JOBS)

test-cuda: build
	cd $(BUILD) && ctest -L cuda --output-on-failure

# Trains a small retrieval model (cached in $(BUILD)/demo; a few minutes on 2 cores the first
# time), then prints full attention vs top-k decoding at several rho and writes plots.
demo: build
	$(BUILD)/topk demo --dir $(BUILD)/demo

bench: build
	$(BUILD)/topk bench attention

clean:
	rm -rf $(BUILD)
