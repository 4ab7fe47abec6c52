# Everything a fresh clone needs is installed from here: only Python 3.11 must be present.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck unit bench clean browser install-check smtp-sink bench-deliver

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "Python 3.11 or newer is needed: install it, or set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/journey demo

lint: $(STAMP)
	$(BIN)/ruff check engine workers tests bench
	$(BIN)/ruff format --check engine workers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests drive Debian's headless Chromium; install it when it is missing and we may.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser tests will say so"; \
	    else echo "chromium is not installed: the browser tests will say so"; fi; }

# bench/deliver.py's SMTP server: postfix's smtp-sink (a C server), installed like Chromium above;
# the bench falls back to aiosmtpd, and says so, when it is missing
smtp-sink:
	@command -v smtp-sink >/dev/null 2>&1 || test -x /usr/sbin/smtp-sink || \
	  { if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	      (echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	       apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null) \
	      || echo "could not install postfix: bench/deliver.py will use aiosmtpd"; \
	    else echo "postfix's smtp-sink is not installed: bench/deliver.py will use aiosmtpd"; fi; }

#: the share of engine/ and workers/ the suite must run (measured with the suite in-process)
COVERAGE_MIN := 92

unit: $(STAMP) browser
	$(BIN)/pytest -q --durations=15 --cov --cov-report=term --cov-fail-under=$(COVERAGE_MIN)

# the production install (no dev extras, what the Dockerfile runs) starts a worker on Redis and on
# RabbitMQ, a scheduler and the API, each answering; pip's cache makes a second run quick
install-check: $(STAMP)
	$(BIN)/python -m tests.install_check

test: lint typecheck unit install-check

# no services, no subprocesses: under a minute
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not postgres and not redis and not slow"

bench: $(STAMP)
	$(BIN)/python bench/evaluate.py

bench-deliver: $(STAMP) smtp-sink
	$(BIN)/python bench/deliver.py

clean:
	rm -rf $(VENV) journey.db outbox .mypy_cache .pytest_cache .ruff_cache
