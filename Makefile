# The two commands of README.md, and the benchmark.
.PHONY: serve test test-install lint bench soak

serve:
	@scripts/bootstrap.sh serve
	.venv/bin/sessionhub serve

test:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

# The wheel built from the sdist, installed in a fresh venv, serving (minutes: not in `make test`).
test-install:
	@scripts/bootstrap.sh test
	.venv/bin/python -m pytest -q -m install tests/test_install.py

lint:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/fanout.py

# Long fault-and-abuse soaks (not part of `make test`); each prints its figures.
soak:
	@scripts/bootstrap.sh test
	cd bench && ../.venv/bin/python soak_faults_wire.py
	.venv/bin/python bench/soak_faults_ops.py --rounds 5
