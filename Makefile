# The course's two commands (README): `make lab` opens the course, `make test` runs every check.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test clean book student

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG) $(LAB_ARGS)

# `make test`: every test and every notebook (FAST=1) on all cores (pytest-xdist; one torch thread per
# process), then the tests marked `serial` alone: they bound wall-clock times. (Exit status 5 means
# PYTEST_ARGS selected none of them.)
test: $(STAMP)
	FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto -m "not serial" tests --nbmake notebooks $(PYTEST_ARGS)
	FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m serial tests $(PYTEST_ARGS) || test $$? -eq 5

clean:
	rm -rf build *.egg-info .pytest_cache _book _student tests/_artifacts

# `make book`: run the student copy of every notebook (FAST=1 for a quick run) and write the static
# HTML course to _book/ (open _book/index.html; works offline: MathJax comes from the PyPI package
# jupyter-server-mathjax); `make book SOLUTIONS=1` builds the teacher's book, solutions folded.
# `make student`: the notebooks without their solutions and hidden tests, in _student/notebooks/.
book: $(STAMP)
	FAST=$(FAST) $(BIN)/python scripts/build_book.py --out _book $(if $(SOLUTIONS),--solutions,)

student: $(STAMP)
	$(BIN)/python scripts/make_student.py --out _student
