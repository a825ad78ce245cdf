# The two commands of the README:
#   make demo   set up, synthesise the demo case, analyse it end to end
#   make test   set up, run the test suite
.PHONY: setup demo test bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/voiceman demo make demo/case
	.venv/bin/snakemake --profile profiles/local
	@echo "case summary: results/case.json"

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/voiceman bench --out bench/bench.json
