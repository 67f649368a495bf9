# Two entry points: `make demo` serves a model trained on MovieLens 100K,
# `make test` runs the test suite. Both set up the virtualenv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Where MovieLens 100K lives (any of the three layouts the importer reads).
RTREC_DATA ?= ../shared/data/ml-100k
export RTREC_DATA

.PHONY: demo test install bench bench-ml100k

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py import_movielens "$(RTREC_DATA)"
	$(BIN)/python manage.py train
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/run.py

bench-ml100k: install
	$(BIN)/python bench/ml100k.py
