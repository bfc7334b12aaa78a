# The two commands of README.md, and the benchmark.
.PHONY: serve test test-stock test-versions test-install lint bench bench-sessions bench-patterns soak

# Lints and format-checks web/ (JS and CSS; biome.json); installed by scripts/bootstrap.sh test from tools/web.
BIOME := tools/web/node_modules/.bin/biome

serve:
	@scripts/bootstrap.sh serve
	.venv/bin/sessionhub serve

# The suite runs in PYTEST_WORKERS processes (pytest-xdist; each owns its redis-server, ports and
# browser), handed tests as they finish the last ones; PYTEST_WORKERS=0 runs it in one process.
# Three on a 2-core machine: a test waits about half its time (a child process or a browser
# starting, a page, a timer), and a third worker fills those waits (voice, identity, admin: 134 s
# and 116 s on two, 107 s and 100 s on three; the CPU used the same).
# The main run prints its 15 slowest steps: where the suite's time goes, in every CI log.
PYTEST_WORKERS ?= 3
# Bytecode is written even where the environment says PYTHONDONTWRITEBYTECODE (empty turns it
# off): pytest keeps its assertion-rewritten test modules only as .pyc files, and without them
# every worker rewrote and compiled all ~160 of them again at each run (collection 9.2 s of CPU
# against 4.0 s), and in a fresh clone each `serve` child compiled the code it imports.
PYTEST := PYTHONDONTWRITEBYTECODE= .venv/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

test:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/ruff format --check server handlers jobs auth storage protocol tests bench scripts
	.venv/bin/mypy
	$(BIOME) ci --error-on-warnings
	$(PYTEST) --durations=15
	SESSIONHUB_TRANSPORT=stock $(PYTEST) $(STOCK_TESTS)

# The socket-heavy tests on the stock lane (server/transport/stock.py): what serves when an
# installed python-socketio / python-engineio / aiohttp is outside the fast lane's tested range.
# The hostile-input and error-contract tests run there too: a client must see the same answers.
# (The stalled-WebSocket tests start a stock-lane server themselves: test_hostile_sockets_stalled_ws.py, _stock.py.)
STOCK_TESTS = tests/transport tests/test_hostile_preauth.py tests/test_bus.py tests/test_bus_churn.py \
	tests/test_ordering.py tests/streams/test_events.py tests/patterns/test_events.py tests/voice/test_events.py \
	tests/voice/test_recording_lease.py tests/voice/test_active_push.py tests/listening/test_report.py \
	tests/listening/test_kind.py tests/listening/test_bad_input.py tests/test_smoke.py tests/test_pipelined_events.py tests/test_token_renewal.py \
	tests/test_bad_input.py tests/test_error_messages.py tests/test_route_errors.py tests/test_hostile_values.py \
	tests/test_wire_json.py tests/test_random_ids.py tests/test_hostile_sockets_stalled_http.py

test-stock:
	@scripts/bootstrap.sh test
	SESSIONHUB_TRANSPORT=stock $(PYTEST) $(STOCK_TESTS)

# The lowest and the newest versions pyproject.toml allows of every runtime dependency, each set
# in a throwaway venv, on a subset of the suite (scripts/test_versions.py; CI runs it).
test-versions:
	@scripts/bootstrap.sh test
	.venv/bin/python scripts/test_versions.py

# The wheel built from the sdist, installed in a fresh venv, serving (minutes: not in `make test`).
test-install:
	@scripts/bootstrap.sh test
	.venv/bin/python -m pytest -q -m install tests/test_install.py

lint:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/ruff format --check server handlers jobs auth storage protocol tests bench scripts
	.venv/bin/mypy
	$(BIOME) ci --error-on-warnings

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/fanout.py

# Many small sessions (issue 26): K sessions x M subscribers, 64 publishers; the cost of one event.
bench-sessions:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/sessions.py

# Pattern ops (issue 26): Redis time and CPU per op from 1 KB to the largest state (flat), and
# op -> other players delivery with 10 editors x 5 ops/s and 100 watchers.
bench-patterns:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/pattern_ops.py

# Long fault-and-abuse soaks (not part of `make test`); each prints its figures.
soak:
	@scripts/bootstrap.sh test
	cd bench && ../.venv/bin/python soak_faults_wire.py
	.venv/bin/python bench/soak_faults_ops.py --rounds 5
	cd bench && ../.venv/bin/python soak_stalled_uploads.py
	cd bench && ../.venv/bin/python soak_mass_disconnect.py
	cd bench && ../.venv/bin/python soak_flood.py
	cd bench && ../.venv/bin/python soak_partial_frames.py
