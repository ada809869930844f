# syntax=docker/dockerfile:1
# Multi-stage build: a static feedd binary on a distroless, non-root base.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse --short HEAD) -t feedd .
#   docker run -p 8080:8080 -v feedd-data:/data -e FEEDD_PUBLIC_URL=https://feeds.example.com feedd

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
	-o /out/feedd ./cmd/feedd \
	&& mkdir -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/feedd /feedd
# The data dir belongs to the nonroot user (65532) so a fresh volume is writable.
COPY --from=build --chown=65532:65532 /out/data /data
ENV FEEDD_DATA_DIR=/data \
	FEEDD_ADDR=:8080
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/feedd", "healthcheck"]
ENTRYPOINT ["/feedd"]
CMD ["serve"]
