# Floodgate: a static binary on a distroless base, run as a non-root user.
#
#   docker build -t floodgate .
#   docker run --rm -p 8081:8081 -p 8080:8080 floodgate
#
# The image serves examples/config.yaml from /etc/floodgate; mount your own
# config directory there (a Kubernetes ConfigMap works as is).

# Both bases can be pinned by digest at build time with --build-arg.
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=gcr.io/distroless/static:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0 gives a static binary, which the distroless static base (no
# libc) needs; -trimpath keeps build paths out of it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sidecar ./cmd/sidecar
# /bin/ratelimit runs the same binary as envoyproxy/ratelimit's drop-in: run
# under that name it reads the reference's environment variables (Envoy
# Gateway's envoy-ratelimit Deployment runs /bin/ratelimit). The runtime
# base has no shell, so the link is made here and its directory copied
# (a directory copy keeps links as links).
RUN mkdir -p /out/bin && ln -s /sidecar /out/bin/ratelimit

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/sidecar /sidecar
COPY --from=build /out/bin/ /bin/
COPY examples/config.yaml /etc/floodgate/config.yaml
# The nonroot user (65532) of the distroless image: nothing here needs root,
# and the listeners use ports above 1024.
USER nonroot:nonroot
# 8081: gRPC (Envoy's rate-limit API, grpc.health.v1); 8080: HTTP (/healthz,
# /readyz, /healthcheck, /json, /metrics, /debug/config). As /bin/ratelimit
# it also serves the reference's debug port 6070 (/rlconfig).
EXPOSE 8081 8080
ENTRYPOINT ["/sidecar"]
CMD ["serve", "--config", "/etc/floodgate"]
