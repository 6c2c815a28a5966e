# The two commands of the README:
#   make demo   runs the example project on SQLite with an embedded fake Zoho
#   make test   runs the test suite (DATABASES="sqlite postgresql mysql" for all three, at once)
# Both create their own virtualenv in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATABASES ?= sqlite
PYTEST_ARGS ?=
COVERAGE_MIN ?= 95
PORT ?= 8000
export PORT

.PHONY: demo test lint tox clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,example,dev]"
	touch $@

$(VENV)/.postgresql: | $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[postgresql]"
	touch $@

# mysqlclient compiles against the MariaDB/MySQL client headers (Debian: libmariadb-dev).
$(VENV)/.mysql: | $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[mysql]"
	touch $@

.env: | $(VENV)/.installed
	$(BIN)/python example_project/make_env.py > $@

demo: $(VENV)/.installed .env
	$(BIN)/python manage.py migrate --verbosity 0
	$(BIN)/python manage.py zoho_demo --runserver 127.0.0.1:$(PORT)

# One database: pytest's output as it runs. Several: the databases at once (each suite
# spends much of its time waiting on its database, its workers or the fake Zoho), each
# one's output in $(TEST_LOGS)/DB.log, printed in order once all are done.
TEST_LOGS ?= .test-logs

test: $(VENV)/.installed $(foreach db,$(filter-out sqlite,$(DATABASES)),$(VENV)/.$(db))
	$(BIN)/coverage erase
	@set -e; set -- $(DATABASES); \
	if [ $$# -eq 1 ]; then \
		echo "=== tests on $$1 ==="; \
		ZOHO_TOKENS_TEST_DB=$$1 $(BIN)/coverage run -m pytest $(PYTEST_ARGS); \
	else \
		mkdir -p $(TEST_LOGS); pids=""; \
		echo "=== tests on $(DATABASES), at once; output in $(TEST_LOGS)/ ==="; \
		for db in $(DATABASES); do \
			ZOHO_TOKENS_TEST_DB=$$db $(BIN)/coverage run -m pytest $(PYTEST_ARGS) \
				> $(TEST_LOGS)/$$db.log 2>&1 & pids="$$pids $$!"; \
		done; \
		status=0; set -- $$pids; \
		for db in $(DATABASES); do \
			if wait $$1; then result=passed; else result=FAILED; status=1; fi; shift; \
			echo "=== tests on $$db: $$result ==="; cat $(TEST_LOGS)/$$db.log; \
		done; \
		exit $$status; \
	fi
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report --fail-under=$(COVERAGE_MIN)

lint: $(VENV)/.installed $(VENV)/.postgresql
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy zoho_tokens

# The whole matrix of tox.ini (12 envs); python3.12 and python3.13 must be on PATH
# (with pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0 make tox).
tox: $(VENV)/.installed
	$(BIN)/tox run-parallel --parallel 3

clean:
	rm -rf $(VENV) .tox .coverage .coverage.* htmlcov $(TEST_LOGS) example_project/db.sqlite3
