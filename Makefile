# The front door: `make run` runs the controller (against the current cluster, or a local
# demo one when none answers), `make test` passes the tests.
# Both install what they need on a fresh Debian machine (venv, pip packages, and the
# Debian packages the tests drive: docker-registry, skopeo, htpasswd, tinyproxy,
# microsocks).

VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# binary:package pairs the tests need on PATH.
DEB_TOOLS := docker-registry:docker-registry skopeo:skopeo htpasswd:apache2-utils tinyproxy:tinyproxy microsocks:microsocks kubectl:kubernetes-client
PYTEST_ARGS ?=

.PHONY: install debs test lint typecheck unit controlplane flux-controllers cluster cluster-down conformance

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Install the Debian packages the tests drive, only when a binary is missing.
debs:
	@missing=""; for pair in $(DEB_TOOLS); do \
	  bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	if [ -d /run/systemd/system ] && systemctl is-enabled docker-registry >/dev/null 2>&1; then \
	  echo "disabling the docker-registry system service (it listens on *:5000; tests start their own on 127.0.0.1)"; \
	  $(SUDO) systemctl disable --now docker-registry; \
	fi

lint: install
	$(VENV)/bin/ruff check imagereflector tests testbed bench conformance
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

# The real control plane and the Flux programs are built (once, into
# ~/.cache/imagereflector) before the tests: tests/testbed and every test using
# `kube_cluster` run against the control plane; tests/e2e drive both Flux CLIs.
unit: install debs controlplane flux-controllers
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck unit

.PHONY: manifests
# Regenerate the CRDs from the pydantic models (a test fails if they drift).
manifests: install
	$(PY) -m imagereflector.api.crd manifests/crds

.PHONY: run
RUN_STORAGE ?= ./data
# Run the controller in the foreground (console logs, metrics 127.0.0.1:8080, probes
# 127.0.0.1:9440, tag store $(RUN_STORAGE)). When the cluster of the current kubeconfig
# answers: `imagereflector install-crds`, then the controller against it. When none
# does: the local demo of testbed/demo.py in $(CLUSTER_STATE)/ (the control plane built
# on first use, a docker-registry with sample tags, the manifests and a sample
# ImageRepository + ImagePolicy), the commands to look at it, then the controller as
# the manifests' ServiceAccount. `make cluster-down` stops the demo.
run: install
	@$(PY) -m testbed run --state-dir $(CLUSTER_STATE) --storage-path $(RUN_STORAGE)

.PHONY: bench bench-quick
# Benchmarks (bench/): measure only, never assert. `bench` runs every benchmark at full
# size and rewrites docs/performance.md (pyinstrument for the scan profile, py-spy for the
# fleet profile taken when a fleet target is missed);
# `bench-quick` runs reduced sizes in under two minutes and prints one line per result.
bench: install debs
	$(VENV)/bin/pip install --quiet pyinstrument py-spy
	$(PY) -m bench --write-doc

bench-quick: install debs
	$(PY) -m bench --quick

.PHONY: soak
# Soak (bench/soak.py): 10,000 ImageRepositories, intervals 1m..1h, against the real
# controller for SOAK_MINUTES (SOAK_OBJECTS sets the fleet size). Samples RSS, CPU, queue
# depth, reconciles and requests every 10 s, then checks its invariants (non-zero exit only
# when one is broken, never on a timing); writes bench/results/soak.json and the "## Soak"
# section of docs/performance.md. Not part of `make test`.
SOAK_MINUTES ?= 10
soak: install debs
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) -m bench.soak

# The test bed (testbed/, docs/testbed.md): real Kubernetes and Flux programs built from
# the pins in tools/*/go.mod into ${XDG_CACHE_HOME:-~/.cache}/imagereflector; only
# missing binaries are built, so a warm cache costs seconds. The last line printed is
# the bin dir.
CLUSTER_STATE ?= .cluster

# kube-apiserver, kubectl, etcd and the Flux 2.2 CLI (`flux`).
controlplane: install
	$(PY) -m testbed build controlplane

# Flux's image-reflector-controller and CLI of both Flux lines (v2.2.3 with the
# controller v0.31.0; the newest Flux and controller v1.x served).
flux-controllers: install
	$(PY) -m testbed build flux

# etcd + kube-apiserver on 127.0.0.1 with an admin kubeconfig in $(CLUSTER_STATE)/;
# builds the control plane first when it is missing; reuses a running cluster.
cluster: install
	@$(PY) -m testbed cluster up --state-dir $(CLUSTER_STATE)

# Stops, by PID, the cluster and the demo registry of `make run`, if there is one.
cluster-down: install
	$(PY) -m testbed demo down --state-dir $(CLUSTER_STATE)

# Differential conformance (conformance/): the corpus against our controller and Flux's
# image-reflector-controller v0.31.0 and v1.2.4 (ours in the matching --flux-compatibility
# mode) on one real API server. Records Flux's outcomes in
# conformance/expected/ (what `make test` holds ours to) and rewrites docs/conformance.md.
CONFORMANCE_PEERS ?= ours,flux-v0.31,ours-v1.2,flux-v1.2
conformance: install debs controlplane flux-controllers
	$(PY) -m conformance --peers $(CONFORMANCE_PEERS) --record --write-doc
