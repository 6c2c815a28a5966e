# The two commands of the README:
#   make demo   runs the example project on SQLite with an embedded fake Zoho
#   make test   runs the test suite (DATABASES="sqlite postgresql mysql" for all three)
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

test: $(VENV)/.installed $(foreach db,$(filter-out sqlite,$(DATABASES)),$(VENV)/.$(db))
	$(BIN)/coverage erase
	set -e; for db in $(DATABASES); do \
		echo "=== tests on $$db ==="; \
		ZOHO_TOKENS_TEST_DB=$$db $(BIN)/coverage run -m pytest $(PYTEST_ARGS); \
	done
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
	rm -rf $(VENV) .tox .coverage .coverage.* htmlcov example_project/db.sqlite3
