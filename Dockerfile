# syntax=docker/dockerfile:1
# jupiter: static binary on distroless (nonroot).
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t jupiter .
#   docker run --rm -p 6379:6379 -p 9090:9090 jupiter serve --backends redis-a:6379,redis-b:6379
#
# The build command is the one `make build` runs (same flags), so a local
# binary and the image's are built alike.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/jupiter ./cmd/jupiter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jupiter /jupiter
USER nonroot:nonroot
# 6379 RESP, 9090 HTTP admin (/healthz /readyz /metrics /v1/status),
# 7070/7071 hedge (--hedge-addr :7070; hedge also uses port+1 for gRPC).
EXPOSE 6379 9090 7070 7071
ENTRYPOINT ["/jupiter"]
CMD ["serve"]
