# Multi-stage build: a static psync-proxy binary on a distroless base, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/psync-proxy ./cmd/psync-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/psync-proxy /usr/local/bin/psync-proxy
USER nonroot:nonroot
VOLUME ["/data"]
EXPOSE 6380
ENTRYPOINT ["/usr/local/bin/psync-proxy", "--dir", "/data", "--listen", "0.0.0.0:6380"]
