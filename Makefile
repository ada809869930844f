# feedd build and checks. `make test` is the same command as in the README
# and .ci/run: go test ./...

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build test check vet fmt staticcheck race bench load clean

all: build

## build: a static binary in bin/feedd
build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/feedd ./cmd/feedd

## test: every test (the README's test command)
test:
	go test ./...

## check: vet, gofmt, staticcheck and the tests under the race detector
check: vet fmt staticcheck race

vet:
	go vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

staticcheck:
	go run $(STATICCHECK) ./...

race:
	go test -race ./...

## bench: Go benchmarks of the hot paths (no tests)
bench:
	go test -run '^$$' -bench . -benchmem ./...

## load: wrk comparison of the warm feed endpoint vs bare net/http and nginx
load:
	scripts/load/run.sh

clean:
	rm -rf bin
