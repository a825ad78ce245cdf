# The README's commands:
#   make demo   set up, synthesise the demo case, analyse it end to end
#   make test   set up, run the test suite
#   make lint   set up, lint and dry-run the workflow on the committed .test case, check formatting
.PHONY: setup demo test lint bench

TEST_CONFIG = .test/config/config.yaml

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/voiceman demo make demo/case
	.venv/bin/snakemake --profile profiles/local
	@echo "case summary: results/case.json"

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/snakemake --profile profiles/local --configfile $(TEST_CONFIG) --lint
	.venv/bin/snakemake --profile profiles/local --configfile $(TEST_CONFIG) --dry-run --quiet rules
	.venv/bin/snakefmt --check Snakefile workflow/
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	.venv/bin/voiceman bench --out bench/bench.json
