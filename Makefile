# The two commands of README.md, and the benchmark.
.PHONY: serve test lint bench soak

# Lints web/ (JS and CSS; biome.json); installed by scripts/bootstrap.sh test from tools/web.
BIOME := tools/web/node_modules/.bin/biome

serve:
	@scripts/bootstrap.sh serve
	.venv/bin/sessionhub serve

test:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy
	$(BIOME) lint --error-on-warnings
	.venv/bin/python -m pytest -q

lint:
	@scripts/bootstrap.sh test
	.venv/bin/ruff check server handlers jobs auth storage protocol tests bench
	.venv/bin/mypy
	$(BIOME) lint --error-on-warnings

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/fanout.py

# Long fault-and-abuse soaks (not part of `make test`); each prints its figures.
soak:
	@scripts/bootstrap.sh test
	cd bench && ../.venv/bin/python soak_faults_wire.py
	.venv/bin/python bench/soak_faults_ops.py --rounds 5
