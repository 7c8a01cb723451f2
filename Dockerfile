# syntax=docker/dockerfile:1
#
# The crmgate container image: a static binary on distroless, run as the
# nonroot user (65532:65532), with a read-only root filesystem in mind: the
# only place it writes is the /data volume (the SQLite store).
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t crmgate .
#
# cmd/crmgate/dockerfile_test.go parses this file, checks the rules below
# and runs the builder stage's go build command; keep them in step.
#
# Base images are pinned by tag and digest. The digests were not resolved
# against a registry here (no container engine or registry client runs where
# this file was written): they are the ones public Dockerfiles on GitHub pin
# for these tags, as found by code search on 2026-12-03. Before a release,
# check them with `docker buildx imagetools inspect IMAGE:TAG` (or crane
# digest) and update tag and digest together.

# golang:1.26.8-bookworm, the toolchain go.mod asks for (go 1.26).
FROM golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build

WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .

# VERSION is what `crmgate version` prints (main.version, cmd/crmgate/version.go).
ARG VERSION=dev
# A static binary without paths of the build machine or VCS stamps
# (.git is not in the build context, see .dockerignore).
RUN CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/crmgate ./cmd/crmgate

# The /data volume's mount point, owned by the nonroot user, so that a new
# (empty) named volume mounted there is writable by it.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

# gcr.io/distroless/static-debian12:nonroot: CA certificates, tzdata,
# /etc/passwd with nonroot (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab

ARG VERSION=dev
LABEL org.opencontainers.image.title="crmgate" \
      org.opencontainers.image.description="Authentication gateway for web sites whose customers live in Microsoft Dataverse" \
      org.opencontainers.image.source="https://github.com/crmgate/crmgate" \
      org.opencontainers.image.url="https://github.com/crmgate/crmgate" \
      org.opencontainers.image.documentation="https://github.com/crmgate/crmgate#container-image" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"

COPY --from=build /out/crmgate /crmgate
COPY --from=build --chown=65532:65532 /out/data /data

# The default store is SQLite on the volume; set CRMGATE_DATABASE_URL to a
# postgres:// URL for several replicas (then /data stays unused).
ENV CRMGATE_DATABASE_URL=sqlite:/data/crmgate.db
VOLUME ["/data"]
WORKDIR /data

USER 65532:65532

# 8080: the gateway (CRMGATE_LISTEN); 9090: health and metrics (CRMGATE_OPS_LISTEN).
EXPOSE 8080 9090

ENTRYPOINT ["/crmgate"]
CMD ["serve"]
