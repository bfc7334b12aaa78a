# The two commands of README.md, and the benchmark.
.PHONY: serve test bench

serve:
	@scripts/bootstrap.sh serve
	.venv/bin/sessionhub serve

test:
	@scripts/bootstrap.sh test
	.venv/bin/python -m pytest -q

bench:
	@scripts/bootstrap.sh test
	.venv/bin/python bench/fanout.py
