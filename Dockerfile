# The pipeline in one image: the supervisor and every actor binary, static
# and stripped, on nothing. A normal multi-stage build, for a machine that
# can pull golang. Without a registry use Dockerfile.scratch (make image).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Every command under cmd/ (.dockerignore leaves out the test tools), so a new
# actor needs no edit here.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/...

# An empty stage: copying its root makes an empty directory with an owner.
FROM scratch AS empty

FROM scratch
COPY --from=build /out/ /
# /data and /tmp owned by the user the supervisor runs as: a new named volume
# on /data takes this ownership when Docker first creates it.
COPY --from=empty --chown=65532:65532 / /data/
COPY --from=empty --chown=65532:65532 / /tmp/
USER 65532:65532
VOLUME /data
EXPOSE 4222 9900
# `supervisor status` exits non-zero unless the supervisor answers on --http
# (default 127.0.0.1:9900, which the CMD's 0.0.0.0:9900 covers).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/supervisor", "status"]
ENTRYPOINT ["/supervisor"]
CMD ["--data-dir", "/data", "--nats-listen", "0.0.0.0:4222", "--http", "0.0.0.0:9900", "--beats", "0", "--rate", "200"]
