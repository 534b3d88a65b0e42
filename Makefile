# Weir — `make` lists the targets. Build output lives outside the clone so warm runs are fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/weir/target
WEIR := $(CARGO_TARGET_DIR)/release/weir

.PHONY: help run test deps fmt lint crds chart unit e2e node-smoke bench bench-sql bench-scaling sql-conformance-record

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 10

run: ## run the main example, a SQL job, locally (examples/user_metrics.sql: generated clicks, 1-minute windows, printed)
	bash worker/engine/install-rocksdb-deps.sh
	cargo build --release --locked -p weir
	$(WEIR) run examples/user_metrics.sql

test: deps fmt lint crds chart unit e2e node-smoke ## everything CI runs: installs test servers, format check, clippy, CRD and chart checks, all tests, the end-to-end suite, the real node's smoke test

deps: ## install what the tests start: s3s-fs and moto (S3), the noida-db Kafka broker, the RocksDB libraries and openssl, the local Kubernetes control plane and a real node (containerd, kubelet, kube-proxy), Chromium with playwright-core for the dashboard test (all cached in ~/.cache/weir)
	bash worker/storage/install-s3s-fs.sh
	bash worker/storage/install-moto.sh
	bash worker/cluster/browser/install.sh
	bash worker/kafka/install-noida-db.sh
	bash worker/engine/install-rocksdb-deps.sh
	bash e2e/controlplane/install.sh
	bash e2e/node/install.sh

crds: ## fail when crds/ (or the chart's copy) differs from what crdgen generates from the Rust types
	bash operator/check-crds.sh

chart: ## lint and render charts/weir-operator with Helm's Go SDK (installed into ~/.cache/weir) and check it
	"$$(bash charts/install-helm-sdk.sh | tail -1)" charts/check-chart.py

fmt: ## check formatting
	cargo fmt --all -- --check

lint: ## clippy with warnings as errors, all targets
	cargo clippy --locked --workspace --all-targets -- -D warnings

unit: ## unit, integration and doc tests of every crate
	cargo test --locked --workspace

e2e: ## the end-to-end suite: a StreamJob on the local Kubernetes control plane (process-kubelet, s3s-fs), see e2e/README.md
	bash e2e/run.sh

node-smoke: ## a real node next to the local control plane (containerd, kubelet, kube-proxy, cluster DNS): pods, logs/exec, Services, DNS, OOM kills (root; see e2e/README.md)
	bash e2e/node/smoke.sh

bench: ## engine-core throughput side by side with Apache Flink (see bench/README.md)
	bash bench/engine-core.sh

bench-sql: ## the same SQL on Flink 2.3 and Weir: tumbling + Nexmark q0 q1 q2 q5 q7 q8 (see bench/README.md)
	bash bench/sql.sh

bench-scaling: ## Nexmark q0 q1 q5 q7 at parallelism 1 and 2 on Weir and Flink 2.3 (run on an idle machine; see bench/README.md)
	bash bench/scaling.sh

sql-conformance-record: ## re-record Apache Flink 2.3's results for worker/sql/tests/conformance/cases.txt (a deliberate step, not CI; a few minutes)
	"$$(bash bench/setup.sh | tail -1)/bin/python" worker/sql/tests/conformance/record.py
