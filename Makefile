# ringtracker: the two commands a fresh machine needs are `make run` and
# `make test`; CI also runs `make e2e` (a real BitTorrent client).
CARGO ?= cargo
ARGS ?=

.PHONY: build run test e2e bench lint ci

build:
	$(CARGO) build --release --workspace

# The tracker on its defaults (UDP on 0.0.0.0:6969). Extra flags: make run ARGS="--workers 1".
run: build
	./target/release/ringtracker $(ARGS)

# Every unit and integration test (real sockets on loopback).
test:
	$(CARGO) test --workspace --all-targets

# A libtorrent seeder and leecher swarm through the release build.
e2e: build
	tests/e2e/run.sh

# Criterion benchmarks of the sans-I/O core.
bench:
	$(CARGO) bench --bench core

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci:
	bash .ci/run
