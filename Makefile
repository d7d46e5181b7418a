# Thin wrappers: the logic lives in course_utils and tests/. See README.md.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Jupyter refuses to run as root unless told; containers often run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
STAMP  := $(VENV)/.installed

.PHONY: lab test release solutions grade

## make lab: install if needed, copy new chapters into work/ (never overwriting), start the student's JupyterLab on work/
# lab/student/ holds the student's settings (no instructor tools, no news pop-up); tests/browser/ runs this line.
lab: $(STAMP)
	$(PY) -m course_utils.course.workspace
	JUPYTER_CONFIG_PATH="$(CURDIR)/lab/student$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))" $(VENV)/bin/jupyter lab --ServerApp.root_dir=work $(ROOT_FLAG) $(LAB_ARGS)

## make test: install if needed, then the whole test suite (what CI runs)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## make release: regenerate notebooks/ from solutions/ with nbgrader
release: $(STAMP)
	$(PY) -m course_utils.course.release

## make grade CHAPTER=01_attention|all [-j N | JOBS=N]: autograde every submission in submitted/*/CHAPTER/ over N worker processes (default: every core), print the scores
# make's own -j N is read from MAKEFLAGS (at recipe time, hence `=`); JOBS=N says the same.
GRADE_JOBS = $(or $(JOBS),$(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))))
grade: $(STAMP)
	$(PY) -m course_utils.course.grading $(or $(CHAPTER),$(error give CHAPTER=<id> or CHAPTER=all)) $(if $(GRADE_JOBS),-j $(GRADE_JOBS)) $(GRADE_ARGS)

## make solutions [CHAPTERS="09_multi30k"]: re-execute solutions/ in place (full mode) so their committed outputs are fresh
solutions: $(STAMP)
	$(PY) -m course_utils.course.release --execute-solutions $(CHAPTERS)

## make bench: every benchmark at its real size (about 45 minutes on 2 cores); results in benchmarks/RESULTS.md
.PHONY: bench
bench: $(STAMP)
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.attention
	$(PY) -m benchmarks.decoding
	$(PY) -m benchmarks.quality_per_minute
	$(PY) -m benchmarks.test_suite

$(STAMP): requirements.txt requirements-overrides.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, from its exact pin and with pip, which knows where a machine keeps its local
	# CPU build (a looser request would pull several GB of CUDA wheels); uv from its pin too.
	$(PY) -m pip install --quiet --no-compile "$$(grep '^torch==' requirements.txt)" "$$(grep '^uv==' requirements.txt)"
	# uv installs the rest in parallel; it keeps the torch above, which satisfies the pin. The
	# overrides keep out a package that costs every Jupyter process 1.5 s (see that file).
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt --override requirements-overrides.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	# Then the bytecode of everything, on every core: where PYTHONDONTWRITEBYTECODE is set (as on
	# the course machines), a module without it is compiled again by every process that imports it
	# (the suite took 844 s instead of 486). A file written for a newer Python is skipped, as pip does.
	$(PY) -m compileall -q -j 0 $(VENV)/lib/python*/site-packages >/dev/null 2>&1 || true
	touch $@
