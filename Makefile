# `sam build` runs `make build-<LogicalId>` here for every function of template.yaml
# (BuildMethod: makefile, built in the source tree: see samconfig.toml). Every function is the
# same binary, whose Handler in template.yaml says which function it is: the first call builds
# it (cargo-lambda cross-compiles it for Lambda's arm64, with zig), the others find that build
# done and only copy it.

# Lambda's architecture (template.yaml: arm64); ARCH=--x86-64 builds for x86_64 instead.
ARCH ?= --arm64

# Where cargo builds (CARGO_TARGET_DIR when it is set).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

# The binary links position-dependent and without unwind tables (functions/build.rs): no
# dynamic relocation table, no .eh_frame.

build-%:
	cargo lambda build --release $(ARCH) --package functions --bin bootstrap
	cp $(TARGET_DIR)/lambda/bootstrap/bootstrap $(ARTIFACTS_DIR)/bootstrap
