# rotplan: `make demo` runs the seed's whole run (examples/everything.hcl)
# against a local prod-like bed: Vault, the apps' Vault Agents and nginx (as
# root; otherwise the control plane alone), then, as root, the fleet part:
# examples/cluster.hcl on a 3-node Vault cluster and examples/fleet.hcl on
# four nginx hosts, hosts in network namespaces; `make test` runs every test,
# Vault-backed ones included, and as root the fleet bed's (hosts in network
# namespaces running OpenSSH).

GO          ?= go
VAULT_VERSION := 1.21.0
# The Vault server is slow to build (about 9 minutes on 2 cores), so it is
# cached outside the work tree, under a name that changes with its pin.
CACHE_DIR   ?= $(HOME)/.cache/rotplan
VAULT_PIN   := $(shell cat internal/vaultbuild/go.mod internal/vaultbuild/go.sum | sha256sum | cut -c1-12)
VAULT_BIN   := $(CACHE_DIR)/vault-$(VAULT_VERSION)-$(VAULT_PIN)/vault
ROTPLAN_BIN := bin/rotplan
GO_DIRS     := cmd engine steps plans internal

.PHONY: all build vault nginx openssh test check demo bench bench-fleet golden clean

all: build

# The version is what git says of the checkout (a tag, or a commit), and
# -buildvcs=auto has the go command record the commit even where GOFLAGS
# turns that off; without git, rotplan reports "dev".
VERSION     := $(shell git describe --tags --always --dirty 2>/dev/null)

build:
	$(GO) build -buildvcs=auto -ldflags "-X main.version=$(VERSION)" -o $(ROTPLAN_BIN) ./cmd/rotplan

# No prerequisites on purpose: a fresh clone has new mtimes, and the pin is in
# the file name already.
$(VAULT_BIN):
	@echo "Building Vault $(VAULT_VERSION) from its Go module (cached in $(dir $@); takes several minutes once)"
	@mkdir -p $(dir $@)
	cd internal/vaultbuild && $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp github.com/hashicorp/vault
	@mv $@.tmp $@

vault: $(VAULT_BIN)

# nginx from Debian's package for the harness's edge proxy, installed once
# when missing and root (its own service is not started: the harness runs
# its own instances on loopback); otherwise the tests that need it skip.
nginx:
	@sh internal/testvault/install-nginx.sh

# OpenSSH (server and client) from Debian's packages for the fleet test bed
# (internal/testhosts), installed once when missing and root; Debian's ssh
# service is neither started nor enabled: the harness runs its own sshd in
# each host's network namespace. Otherwise the tests that need it skip, and
# the demo skips its fleet part.
openssh:
	@sh internal/testhosts/install-openssh.sh

check:
	@unformatted=$$(gofmt -l $(GO_DIRS)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run ./cmd/rotplan fmt -check examples

# Then fuzzing of whole plans and variable files (engine FuzzCompile),
# about 20 seconds here; a failing input is saved under engine/testdata/fuzz.
# The budget is a count of inputs, not a time: with -fuzztime 20s, go1.26's
# fuzz coordinator sometimes fails with a bare "context deadline exceeded"
# when the time runs out (golang/go#75804, seen here in make test). Inputs
# are minimised for at most 100 runs, else minimising took the whole budget.
test: check vault nginx openssh
	ROTPLAN_VAULT_BIN=$(VAULT_BIN) $(GO) test -count=1 -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime 20000x -fuzzminimizetime 100x ./engine/

demo: build vault nginx openssh
	$(GO) run ./internal/cmd/demo -vault $(VAULT_BIN) -rotplan $(ROTPLAN_BIN) -dir .demo -plan examples/prod.hcl -everything examples/everything.hcl -cluster examples/cluster.hcl -fleet examples/fleet.hcl

# A benchmark, never a test: rotplan against the same work straight through
# vault/api and against a shell loop, on a real Vault; prints a table.
# BENCH_ARGS=-n 200 for a quicker run; BENCH_ARGS="-baseline OLD_BINARY" compares
# with an earlier build in the same rounds. Also: go test -run XXX -bench . ./engine/...
# Then the fleet series (bench-fleet).
bench: build vault bench-fleet
	$(GO) run ./internal/cmd/bench -vault $(VAULT_BIN) -rotplan $(ROTPLAN_BIN) -dir .bench $(BENCH_ARGS)

# The fleet series: 8 nginx hosts of the fleet bed (network namespaces,
# as root; skipped otherwise) rotated by examples/fleet.hcl in batches of
# 1, 2, 4 and 8, against a shell loop of ssh + scp + ssh doing the same
# work, alternating in each round: ms per host of each, and their ratio.
# FLEET_BENCHTIME=1x for a quicker run.
FLEET_BENCHTIME ?= 3x
bench-fleet: vault nginx openssh
	ROTPLAN_VAULT_BIN=$(VAULT_BIN) $(GO) test -count=1 -run '^$$' -bench '^BenchmarkFleet$$' -benchtime $(FLEET_BENCHTIME) -timeout 30m ./internal/e2e/

# Rewrites the golden files (the CLI's, and the preview's against a real
# Vault); review the diff before committing.
golden: vault
	$(GO) test ./cmd/rotplan -run Golden -update
	ROTPLAN_VAULT_BIN=$(VAULT_BIN) $(GO) test ./internal/e2e -run Golden -update

clean:
	rm -rf bin .demo .bench .bench.old
