# One command per chore. `make up` and `make test` work on a fresh machine with Python 3.11+,
# make and the system's package manager.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: up test check bench lock clean console screenshots

# The web console (console/, React): built into the package, which the server serves at "/".
CONSOLE_BUILT := src/cumulo/console/dist/index.html
CONSOLE_SRC   := $(shell find console/src -type f 2>/dev/null) console/index.html \
                 console/vite.config.ts console/tsconfig.json

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Cumulo needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[dataframes,ml]'
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	@touch $@

# The S3 clients the S3 API is tested with (the aws command, s3fs), as users install them: a
# virtualenv of their own, since their botocore is not the one Cumulo pins.
.venv-s3tools/.installed: constraints-s3tools.txt
	$(PYTHON) -m venv .venv-s3tools
	.venv-s3tools/bin/python -m pip install --quiet --disable-pip-version-check \
		-c constraints-s3tools.txt awscli s3fs
	@touch $@

console/node_modules/.installed: console/package.json console/package-lock.json
	@command -v npm >/dev/null || { echo "error: the web console needs Node.js 20 or newer (and npm): install it with your package manager" >&2; exit 1; }
	npm ci --prefix console --no-audit --no-fund --loglevel=error
	@touch $@

# The OpenID Connect provider the single sign-on tests sign in with (tests/oidc/).
tests/oidc/node_modules/.installed: tests/oidc/package.json tests/oidc/package-lock.json
	@command -v npm >/dev/null || { echo "error: the single sign-on tests need Node.js 20 or newer (and npm): install it with your package manager" >&2; exit 1; }
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	@touch $@

$(CONSOLE_BUILT): console/node_modules/.installed $(CONSOLE_SRC)
	npm run --prefix console --silent build -- --logLevel warn

console: $(CONSOLE_BUILT)

up: $(VENV)/.installed $(CONSOLE_BUILT)
	$(BIN)/cumulo up

test: $(VENV)/.installed-test $(CONSOLE_BUILT) tests/oidc/node_modules/.installed \
		.venv-s3tools/.installed
	@scripts/install-test-services
	$(BIN)/pytest -n 2 --dist loadfile --durations=25

check: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/python scripts/check_layers.py
	npm run --prefix console --silent check

bench: $(VENV)/.installed-test
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/sql.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/envs.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/tune.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/metrics_overhead.py
	$(MAKE) bench-overhead
	$(BIN)/python bench/pipelines.py
	$(BIN)/python bench/dr.py
	$(MAKE) bench-secure-invoke
	$(MAKE) bench-control-plane-load
	$(MAKE) bench-authz
	$(MAKE) bench-scale
	$(MAKE) bench-s3
	$(MAKE) bench-streams
	$(MAKE) bench-notebooks
	$(MAKE) bench-monitors

# An endpoint invoked with and without a token: the replicas' own check, the control plane's.
.PHONY: bench-secure-invoke bench-control-plane-load bench-authz bench-scale bench-s3 \
	bench-streams bench-notebooks
bench-secure-invoke: $(VENV)/.installed-test
	$(BIN)/python bench/secure_invoke.py

bench-control-plane-load: $(VENV)/.installed-test
	$(BIN)/python bench/control_plane_load.py

# A model monitor's drift report over 1 million captured requests (goal: under 10 s), and the
# same figures the plain way in pandas.
.PHONY: bench-monitors
bench-monitors: $(VENV)/.installed-test
	$(BIN)/python bench/monitors.py

# What metrics and metering cost (goal: under 2%): the serving and jobs benches' own figures on
# two servers, both on and both off, in alternating rounds.
.PHONY: bench-overhead bench-serving-overhead bench-jobs-overhead
bench-overhead: bench-serving-overhead bench-jobs-overhead

bench-serving-overhead: $(VENV)/.installed-test
	$(BIN)/python bench/serving.py --overhead

bench-jobs-overhead: $(VENV)/.installed-test
	$(BIN)/python bench/jobs.py --overhead

# The console's pictures in docs/screenshots, taken by its browser tests.
screenshots: $(VENV)/.installed-test $(CONSOLE_BUILT)
	@scripts/install-test-services
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest tests/console -q

# Re-pin constraints.txt from what is installed now (after changing pyproject.toml). Some pins
# are on purpose (jsonschema 4.23: tests/test_constraints.py says why).
lock: $(VENV)/.installed-test
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache console/node_modules src/cumulo/console/dist \
	       tests/oidc/node_modules

# What authorization adds: a read with 1,000 policies across 100 groups; SQL with masks.
bench-authz: $(VENV)/.installed-test
	$(BIN)/python bench/authz.py

# Jobs per second through one control plane and through two on one PostgreSQL and S3 (needs
# PostgreSQL's initdb, as the tests do).
bench-scale: $(VENV)/.installed-test
	$(BIN)/python bench/scale.py

# The S3 API through boto3, against the SDK and against moto's S3 server: 1 GiB up and down,
# listing 100,000 keys, the server's peak memory.
bench-s3: $(VENV)/.installed-test
	$(BIN)/python bench/s3.py

# Kinesis peers of the streams bench: kinesalite (npm), pinned in bench/node/package-lock.json.
bench/node/node_modules/.installed: bench/node/package.json bench/node/package-lock.json
	@command -v npm >/dev/null || { echo "error: the streams bench needs Node.js 20 or newer (and npm) for kinesalite: install it with your package manager" >&2; exit 1; }
	npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
	@touch $@

# Streams through boto3's Kinesis client: durable PutRecords from 4 producers against
# kinesalite and moto's Kinesis, put-to-get latency through a push subscription, and the lag
# of a delivery into a table at 20,000 records/s.
bench-streams: $(VENV)/.installed-test bench/node/node_modules/.installed
	$(BIN)/python bench/streams.py

# A notebook from create to a usable JupyterLab page through the proxy, and stop/start, against
# plain `jupyter lab` started by hand on the same machine.
bench-notebooks: $(VENV)/.installed-test
	$(BIN)/python bench/notebooks.py
