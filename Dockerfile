# Agnes image: build on bookworm with scripts/bootstrap, run on bookworm-slim with only the runtime
# libraries.  Build args bake the version shown by /api/version and /api/health:
#   docker build --build-arg AGNES_VERSION=2026.11.8 --build-arg RELEASE_CHANNEL=stable \
#                --build-arg AGNES_COMMIT_SHA=$(git rev-parse HEAD) --build-arg AGNES_TAG=stable-2026.11.8 .
# Behind a proxy that intercepts TLS (npm ci fails with "self-signed certificate in certificate chain"),
# hand the build your CA:   --build-arg EXTRA_CA_CERT="$(cat /usr/local/share/ca-certificates/corp.crt)"
# (docker compose: EXTRA_CA_CERT in the environment or .env).  It is trusted by the build stage only.
# Works with the classic builder and BuildKit alike (Debian's docker.io and docker-compose 1.29 included).
# Layers from the most stable to the most changing; an ARG is declared just before the first step that
# uses it, because a build arg changes the cache key of every RUN after its ARG line.
FROM debian:bookworm AS build
WORKDIR /src
# Node and npm first, in a layer of their own: they are hundreds of Debian packages (minutes) and change
# far less often than scripts/bootstrap, which then finds them installed.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates sudo nodejs npm >/dev/null && rm -rf /var/lib/apt/lists/*
# EXTRA_CA_CERT: PEM text of CA certificates to trust while *building* (a network that intercepts
# TLS, as corporate proxies do, makes `npm ci` fail with "self-signed certificate in certificate
# chain").  Used by this stage only; the runtime stage below neither declares it nor copies it.
ARG EXTRA_CA_CERT=""
COPY scripts/bootstrap scripts/bootstrap
COPY third_party/duckdb/package.json third_party/duckdb/package-lock.json third_party/duckdb/
# The web pages' pinned libraries (CodeMirror, Chart.js), embedded into the binary by make.
COPY web/package.json web/package-lock.json web/
RUN apt-get update -qq \
    && if [ -n "$EXTRA_CA_CERT" ]; then \
         printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/agnes-build-extra.crt \
         && update-ca-certificates >/dev/null; fi \
    && NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt scripts/bootstrap --build-only \
    && rm -rf /var/lib/apt/lists/*
ARG AGNES_VERSION=dev
ARG RELEASE_CHANNEL=dev
ARG AGNES_COMMIT_SHA=unknown
COPY . .
RUN make -j"$(nproc)" VERSION="$AGNES_VERSION" CHANNEL="$RELEASE_CHANNEL" COMMIT="$AGNES_COMMIT_SHA" \
    && install -D -m 0755 build/agnes /out/bin/agnes \
    && install -D -m 0644 third_party/duckdb/lib/libduckdb.so /out/lib/libduckdb.so

FROM debian:bookworm-slim
ARG AGNES_VERSION=dev
ARG RELEASE_CHANNEL=dev
ARG AGNES_COMMIT_SHA=unknown
ARG AGNES_TAG=dev
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      ca-certificates curl libmicrohttpd12 libjansson4 libsodium23 libjwt0 libcurl4 libyaml-0-2 libpq5 libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 999 agnes && useradd --system --uid 999 --gid 999 --home-dir /data agnes \
    && mkdir -p /data /app/connectors/custom && chown agnes:agnes /data
COPY --from=build /out/bin/agnes /app/bin/agnes
COPY --from=build /out/lib/libduckdb.so /app/lib/libduckdb.so
# Host files that must match this image exactly; a host extracts them with
#   docker run --rm --entrypoint tar IMAGE -C /opt/agnes-host -c . | tar -x -C /opt/agnes
COPY scripts/ops/ /opt/agnes-host/scripts/ops/
COPY scripts/smoke-test.sh /opt/agnes-host/scripts/smoke-test.sh
COPY docker-compose*.yml Caddyfile /opt/agnes-host/
COPY config/instance.yaml.example /opt/agnes-host/config/instance.yaml.example
# The upgrade script prunes only dangling images with this label: the agnes images it replaced, never
# other images or build cache on the host.
LABEL org.opencontainers.image.title="agnes" \
      org.opencontainers.image.version="$AGNES_VERSION" \
      org.opencontainers.image.revision="$AGNES_COMMIT_SHA"
ENV PATH=/app/bin:$PATH \
    DATA_DIR=/data \
    CONNECTORS_DIR=/app/connectors/custom \
    AGNES_LISTEN=0.0.0.0:8000 \
    MALLOC_ARENA_MAX=2 \
    AGNES_VERSION=$AGNES_VERSION \
    RELEASE_CHANNEL=$RELEASE_CHANNEL \
    AGNES_COMMIT_SHA=$AGNES_COMMIT_SHA \
    AGNES_TAG=$AGNES_TAG
USER agnes
WORKDIR /data
EXPOSE 8000
STOPSIGNAL SIGTERM
# /api/health is served from a cache (microseconds); a 10 s interval tells compose and the upgrade
# script within seconds whether a new container is healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/api/health >/dev/null || exit 1
ENTRYPOINT ["/app/bin/agnes"]
CMD ["serve"]
