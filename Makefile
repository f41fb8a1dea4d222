# `sam build` runs `make build-<LogicalId>` here for every function of template.yaml
# (BuildMethod: makefile, built in the source tree: see samconfig.toml). The first call builds
# every function binary in one cargo build for Lambda's arm64 (cargo-lambda, with zig); the
# others find that build done and only copy their binary. A function's binary is its logical
# id without `Function`, in kebab case: CreateCampaignFunction -> create-campaign.

FUNCTION = $(shell echo '$*' | sed -E 's/WhatsApp/Whatsapp/; s/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z')

build-%Function:
	cargo lambda build --release --arm64 --package functions
	cp target/lambda/$(FUNCTION)/bootstrap $(ARTIFACTS_DIR)/bootstrap
