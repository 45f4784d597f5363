# ringtracker: the two commands a fresh machine needs are `make run` and
# `make test`; CI also runs `make e2e` (a real BitTorrent client).
CARGO ?= cargo
ARGS ?=

.PHONY: build run test browser redis seccomp mariadb libtorrent clients e2e bench bench-peers bench-cluster lint ci fuzz soak deb

build:
	$(CARGO) build --release --workspace

# The tracker on its defaults (UDP on 0.0.0.0:6969). Extra flags: make run ARGS="--workers 1".
run: build
	./target/release/ringtracker $(ARGS)

# Every unit and integration test (real sockets on loopback). The stats
# page is tested in a real headless browser: Debian's chromium; cluster
# mode against real redis-server processes the tests start themselves;
# the io_uring fallback under a seccomp filter (Debian's python3-seccomp);
# private mode against real MariaDB servers the tests start themselves,
# with real libtorrent clients (python3-libtorrent); real Transmission
# and aria2 clients and curl (gzip) against the tracker.
test: browser redis seccomp mariadb libtorrent clients
	$(CARGO) test --workspace --all-targets

browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

seccomp:
	@/usr/bin/python3 -c "import seccomp" 2>/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-seccomp)

redis:
	@(command -v redis-server >/dev/null && command -v redis-cli >/dev/null) || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools)

mariadb:
	@(command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd) && command -v mariadb >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client)

libtorrent:
	@/usr/bin/python3 -c "import libtorrent" 2>/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-libtorrent)

clients:
	@(command -v curl >/dev/null && command -v transmission-cli >/dev/null && command -v aria2c >/dev/null) || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl transmission-cli aria2)

# A libtorrent seeder and leecher swarm through the release build.
e2e: build
	tests/e2e/run.sh

# Side by side with aquatic_udp and opentracker (those installed; see
# bench-peers), then the criterion benchmarks of the sans-I/O core.
# Writes docs/BENCHMARKS.md and docs/bench-chart.svg.
bench: build
	/usr/bin/python3 loadgen/bench.py
	$(CARGO) bench --bench core

# Install the trackers we compare with: aquatic_udp from crates.io (plain
# install: --locked fails on current rustc) and Debian's opentracker.
bench-peers:
	command -v aquatic_udp >/dev/null || test -x $(HOME)/.cargo/bin/aquatic_udp || \
		$(CARGO) install aquatic_udp --version 0.9.0 --features io-uring
	command -v opentracker >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opentracker)

# Cluster mode on this machine: two nodes and redis-server; throughput
# with cluster on vs off (alternated), bytes and Redis CPU per announce,
# convergence lag. Writes the cluster section of docs/BENCHMARKS.md.
bench-cluster: build redis
	/usr/bin/python3 loadgen/bench_cluster.py

# Half an hour of mixed UDP and HTTP load at half of max with snapshots and
# reloads every minute: RSS, p99 and socket drops every 10 s. A measurement
# (writes docs/SOAK.md and docs/soak-chart.svg), not a test.
soak: build
	/usr/bin/python3 loadgen/soak.py

# Every cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each, from
# the checked-in corpus; needs the nightly toolchain (installs cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# The Debian package (cargo-deb): target/debian/ringtracker_<version>_amd64.deb.
# The man pages, completions, the packaged config (snapshots under
# /var/lib/ringtracker) and the unit (/usr/bin) come from the binaries and
# contrib/ first, into target/deb.
deb: build
	mkdir -p target/deb
	./target/release/ringtracker --print-man | gzip -9n > target/deb/ringtracker.1.gz
	./target/release/loadgen --print-man | gzip -9n > target/deb/ringtracker-loadgen.1.gz
	./target/release/ringtracker --print-completions bash > target/deb/ringtracker.bash
	./target/release/ringtracker --print-completions zsh > target/deb/_ringtracker
	./target/release/ringtracker --print-completions fish > target/deb/ringtracker.fish
	./target/release/ringtracker --print-config | \
		sed -e 's|^# snapshot = "/var/lib/ringtracker/swarms.snap"|snapshot = "/var/lib/ringtracker/swarms.snap"|' \
		    -e 's|^# state_dir = "/var/lib/ringtracker"|state_dir = "/var/lib/ringtracker"|' \
		> target/deb/ringtracker.toml
	grep -q '^snapshot = "/var/lib/ringtracker/swarms.snap"' target/deb/ringtracker.toml
	grep -q '^state_dir = "/var/lib/ringtracker"' target/deb/ringtracker.toml
	sed -e 's|/usr/local/bin/ringtracker|/usr/bin/ringtracker|g' contrib/ringtracker.service \
		> target/deb/ringtracker.service
	command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) deb --no-build --strip -p ringtracker --output target/debian/

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

ci:
	bash .ci/run
