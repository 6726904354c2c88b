# The two commands of the README: `make demo` (set up + main job) and `make test`.
.PHONY: setup demo test

STAMP := .venv/.stamp-setup

$(STAMP): scripts/setup.sh requirements.lock pyproject.toml src/distilface/peers/node/package-lock.json \
        web/package-lock.json web/build.mjs $(wildcard web/src/*) $(wildcard src/distilface/runtime/js/*.js)
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/distilface demo --out runs/demo

# One worker per core; a file's tests stay on one worker, so its module fixtures are built once.
# At most 8 workers: a worker peaked at 0.8-1.0 GB and all of the suite's processes together at
# 3.9 GB with 2 workers (measured on the 2-core CI machine), so about 2 GB a worker.
test: $(STAMP)
	.venv/bin/python -m pytest -q -n auto --maxprocesses 8 --dist loadfile
