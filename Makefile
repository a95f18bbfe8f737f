# taskdash: thin wrappers around scripts/. Every target runs as-is on a fresh clone.
.PHONY: run setup images lint test clean

# Serve the app (hypercorn, on TASKDASH_HOST:TASKDASH_PORT) once the engine, .venv and images
# are ready.
run: setup
	exec .venv/bin/python -m taskdash.serve

setup:
	scripts/setup.sh

# Build the runtime images if missing or if their recipe changed (FORCE=1 rebuilds).
images:
	scripts/build-images.sh $(if $(FORCE),--force)

lint:
	scripts/test.sh lint

# Lint, type-check and run the test suite on SQLite, then on a throwaway PostgreSQL cluster
# (CI runs this via .ci/run; TASKDASH_TEST_DATABASES=sqlite for one pass).
test:
	scripts/test.sh

# Removes the virtualenv only; never data/.
clean:
	rm -rf .venv
