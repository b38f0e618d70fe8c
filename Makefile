# The two commands a new user types are `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv run test lint typecheck format bench bench-devnet vectors check-install clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[node,test]'
	touch $(STAMP)

venv: $(STAMP)

# `make run`: a devnet of 4 nodes on loopback with a demo economy and funded
# wallets, and a live status view until Ctrl-C (state kept in .devnet/).
run: $(STAMP)
	$(BIN)/mycelia devnet up --dir .devnet

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy --strict on protocol/, api/, client/, node/ and testing/, with no module
# exempted ([tool.mypy] in pyproject.toml; docs/architecture.md, "Types"). The
# editable install maps mycelia.* to top-level folders through an import hook
# that mypy cannot follow, so .typecheck/ spells the names out in symlinks; and
# .typecheck/trio points at trio's own annotations, ahead of the stale stubs
# that trio-typing (a libp2p dependency) installs.
typecheck: $(STAMP)
	mkdir -p .typecheck/mycelia
	for p in protocol api client node cli testing; do ln -sfn ../../$$p .typecheck/mycelia/$$p; done
	ln -sfn "$$($(BIN)/python -c 'import os, trio; print(os.path.dirname(trio.__file__))')" .typecheck/trio
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p mycelia.protocol -p mycelia.api -p mycelia.client -p mycelia.node -p mycelia.testing

test: lint typecheck
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench.protocol

bench-devnet: $(STAMP)
	$(BIN)/python -m bench.devnet

# Regenerate tests/vectors/ — only when an encoding change is intended.
vectors: $(STAMP)
	$(BIN)/python -m tests.vectors.generate

# `sudo make check-install`: deploy/install.sh in fresh Debian roots (amd64,
# and arm64 through qemu-user-static), then the node it installed must start
# and answer `mycelia status`. By hand, not in the suite (docs/install.md).
# ARCHS="amd64" to check one, SUITE=trixie for Debian 13.
ARCHS ?= amd64 arm64
SUITE ?= bookworm
check-install:
	SUITE=$(SUITE) deploy/check-install.sh $(ARCHS)

clean:
	rm -rf $(VENV) .devnet .pytest_cache .ruff_cache .hypothesis .typecheck build *.egg-info
