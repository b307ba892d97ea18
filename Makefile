# Containers the Hard Way — the commands a learner, an instructor and CI type.
#
# `make lab` and `make test` each work as the first command on a fresh Debian/Ubuntu
# machine: they run `make setup` first, which installs only what is missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
# JupyterLab reads every settings/overrides.d/*.json of its app directory
# ({sys.prefix}/share/jupyter/lab) as the defaults of its settings: the course's turn off
# the news prompt and the update check, so that a room of learners sees only the course
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d/hardway.json

REGISTRY_PORT ?= $(or $(HARDWAY_REGISTRY_PORT),5000)
LAB_PORT ?= 8888
LAB_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
NBVAL_ARGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
              --nbval-sanitize-with tests/nbval-sanitize.cfg
ALLOW_ROOT := $(shell [ "$$(id -u)" -eq 0 ] && echo --allow-root)

.PHONY: help setup debs venv lab test test-vm vm-debs registry registry-stop registry-status \
        doctor labs check-labs grade lint lock bench timings clean distclean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: debs venv  ## install what is missing: Debian packages and the .venv

debs:
	@tools/install-debs.sh

venv: $(STAMP) $(LAB_OVERRIDES) $(COMPILED)

# the helper's bytecode, compiled ahead: with PYTHONDONTWRITEBYTECODE set (CI, many
# containers) every `python -m hardway` would otherwise compile its modules again (~45 ms)
$(COMPILED): $(shell find hardway -name '*.py') | $(STAMP)
	@$(PY) -m compileall -q hardway
	@touch $@

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	    echo "setup: the course needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)." >&2; \
	    echo "       Install python3.11 and run: make PYTHON=python3.11 $(MAKECMDGOALS)" >&2; exit 1; }
	@echo "setup: creating $(VENV) with the pinned Python packages (a minute or two, once)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check \
	    -c requirements.lock -e '.[lab,test,dev,bench]'
	@touch $@
	@echo "setup: $(VENV) ready"

$(LAB_OVERRIDES): tools/jupyterlab-overrides.json | $(STAMP)
	@install -D -m 644 $< $@

# the URL JupyterLab prints (and `/`) opens notebook 00, also through an SSH tunnel
lab: setup registry  ## install, start the registry, open JupyterLab on the course
	@echo "JupyterLab is starting: open the URL it prints. Ctrl-C stops it;"
	@echo "the registry keeps running until 'make registry-stop'."
	HARDWAY_REGISTRY_PORT=$(REGISTRY_PORT) $(VENV)/bin/jupyter lab --ip=127.0.0.1 \
	    --port=$(LAB_PORT) --ServerApp.root_dir=$(CURDIR) $(ALLOW_ROOT) \
	    --LabApp.default_url=/lab/tree/notebooks/00-welcome.ipynb $(LAB_ARGS) \
	    notebooks/00-welcome.ipynb

# test-vm runs even when the host suite failed (both verdicts in one CI log); the exit
# status is the first failure's.
test: setup vm-debs  ## install, run every test and notebook (nbval), the browser test, then test-vm
	@status=0; \
	echo "$(PY) -m pytest $(NBVAL_ARGS) $(PYTEST_ARGS) tests notebooks solutions"; \
	$(PY) -m pytest $(NBVAL_ARGS) $(PYTEST_ARGS) tests notebooks solutions || status=$$?; \
	echo "$(PY) tools/vm.py run --skip-if-unable $(VM_ARGS)"; \
	$(PY) tools/vm.py run --skip-if-unable $(VM_ARGS) || { vm=$$?; [ $$status -ne 0 ] || status=$$vm; }; \
	exit $$status

# The cgroup and runtime tests and chapters 02-04 (+ solutions) on a real pure cgroup v2
# kernel: Debian's cloud kernel under qemu, with a guest built by tools/vm_image.py and
# cached in .state/vm/. `make test` runs it too, or prints why this machine cannot.
test-vm: venv vm-debs  ## the cgroup tests and chapters 02-04 on pure cgroup v2, in qemu (3-7 min)
	$(PY) tools/vm.py run $(VM_ARGS)

vm-debs:
	@tools/install-debs.sh --vm

timings: venv  ## execute every chapter and print its time (for docs/instructors.md)
	@$(PY) tools/time_chapters.py $(TIMINGS_ARGS)

registry: setup  ## start the course's registry on 127.0.0.1 (REGISTRY_PORT=5000)
	@$(PY) -m hardway registry start --port $(REGISTRY_PORT)

registry-stop: venv  ## stop it
	@$(PY) -m hardway registry stop --port $(REGISTRY_PORT)

registry-status: venv
	@$(PY) -m hardway registry status --port $(REGISTRY_PORT)

doctor: venv  ## check this machine can run the course
	@$(PY) -m hardway doctor --port $(REGISTRY_PORT)

labs: venv  ## regenerate labs/ from solutions/
	@$(PY) -m hardway labs

check-labs: venv  ## fail when labs/ is out of date with solutions/
	@$(PY) -m hardway labs --check

grade: venv  ## grade a lab notebook or a folder of submissions: make grade LAB=...
	@[ -n "$(LAB)" ] || { echo "usage: make grade LAB=labs/00-warmup.ipynb [GRADE_ARGS='--json out.json']" >&2; exit 2; }
	@$(PY) -m hardway grade $(LAB) $(GRADE_ARGS)

bench: setup  ## benchmarks against umoci, skopeo, tar|gzip: rewrites BENCHMARKS.md (5-15 min)
	$(PY) bench/run.py $(BENCH_ARGS)

lint: venv  ## ruff over the package, tests and tools
	$(VENV)/bin/ruff check hardway tests tools bench conftest.py
	$(VENV)/bin/ruff format --check hardway tests tools bench conftest.py

lock: venv  ## re-pin requirements.lock from the current .venv
	@{ echo "# Every Python package of the course environment, exactly as tested (make lock regenerates it)."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^hardway'; } > requirements.lock

clean:  ## stop the registry, remove crashed containers' leftovers, .state/ and test output
	-@[ -x $(PY) ] && $(PY) -m hardway registry stop --port $(REGISTRY_PORT)
	-@[ -x $(PY) ] && $(PY) -m hardway cleanup --registries
	rm -rf .state test-output

distclean: clean  ## also remove the .venv
	rm -rf $(VENV)
