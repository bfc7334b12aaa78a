# The two commands of README.md, and the benchmark.
.PHONY: serve test lint bench bench-sessions soak

serve:
	@scripts/bootstrap.sh serve
	.venv/bin/sessionhub serve

test:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

lint:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/fanout.py

# Many small sessions (issue 26): K sessions x M subscribers, 64 publishers; the cost of one event.
bench-sessions:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/sessions.py

# Long fault-and-abuse soaks (not part of `make test`); each prints its figures.
soak:
	@scripts/bootstrap.sh test
	cd bench && ../.venv/bin/python soak_faults_wire.py
	.venv/bin/python bench/soak_faults_ops.py --rounds 5
