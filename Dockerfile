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

FROM scratch
COPY --from=build /out/ /
VOLUME /data
EXPOSE 4222 9900
ENTRYPOINT ["/supervisor"]
CMD ["--data-dir", "/data", "--nats-listen", "0.0.0.0:4222", "--http", "0.0.0.0:9900", "--beats", "0", "--rate", "200"]
