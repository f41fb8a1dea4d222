# `sam build` runs `make build-<LogicalId>` here for every function of template.yaml
# (BuildMethod: makefile, built in the source tree: see samconfig.toml). Every function is the
# same binary, whose Handler in template.yaml says which function it is: the first call builds
# it (cargo-lambda cross-compiles it for Lambda's arm64, with zig), the others find that build
# done and only copy it.

build-%:
	cargo lambda build --release --arm64 --package functions --bin bootstrap
	cp target/lambda/bootstrap/bootstrap $(ARTIFACTS_DIR)/bootstrap
