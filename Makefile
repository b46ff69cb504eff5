# Two commands set everything up on a fresh machine: `make search` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install search test data postgres clean

install: $(STAMP)

# constraints.txt pins this machine's CPU-only torch stack so pip never pulls CUDA wheels.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,ray,postgres,track]'
	# torchvision's fix at interpreter start, so that `import timm` may come before `import swiftformer`
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "swiftnas-torchvision-fix.pth").write_text("import importlib.util; importlib.util.find_spec(\"_swiftnas_torchvision_hook\") and __import__(\"_swiftnas_torchvision_hook\")\n")'
	touch $@

# Fashion-MNIST, the default proxy dataset, comes from Debian's package (offline, from the package registry).
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
		|| echo "warning: could not install dataset-fashion-mnist (the default proxy dataset)"; \
	else echo "note: dataset-fashion-mnist is absent and this is not root; install it or set NAS_DATA_DIR"; fi

# The distributed-search tests start a throwaway PostgreSQL server: Debian's server package (they skip, saying
# why, where it cannot be installed).
postgres:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's postgresql (a server for the distributed-search tests)"; \
		(apt-get install -y -qq postgresql >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null)) \
		|| echo "warning: could not install postgresql; the PostgreSQL tests will be skipped"; \
	else echo "note: no PostgreSQL server and this is not root; the PostgreSQL tests will be skipped"; fi

# The main job on the default data (Fashion-MNIST): the most accurate SwiftFormer within 1 ms on an iPhone 14.
# Two trainings at once where there are two cores (one thread each uses them better than one training with two);
# one where an earlier `make search` keeps its study in SQLite, which several processes cannot share (it resumes).
SEARCH_WORKERS ?= $(shell test -f runs/swiftformer-iphone14-1ms/study.db && echo 1 || \
	$(PYTHON) -c 'import os; print(min(2, os.cpu_count() or 1))')
search: install data
	$(VENV)/bin/nas search --latency-budget 1ms --workers $(SEARCH_WORKERS)

test: install data postgres
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
