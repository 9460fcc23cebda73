# syntax=docker/dockerfile:1
# Novamesh image: every app and meshctl, built from this npm-workspaces monorepo.
#   docker build -t novamesh:local .
#   docker run --rm -e NATS_URL=nats://host:4222 -e REDIS_URL=redis://host:6379 novamesh:local   # discovery
#   docker run --rm --entrypoint node novamesh:local apps/cli/dist/main.js --help               # meshctl
# docker-compose.yml at the repo root runs it with a 3-node NATS cluster and Redis.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- manifests: only the package.json of every workspace (libs/*, apps/*) -------------------
# Copying them this way (instead of one COPY line per workspace) keeps the `npm ci` layers below
# cached while sources change, and cannot go stale when a workspace is added.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY libs/ libs/
COPY apps/ apps/
RUN find libs apps -mindepth 2 -maxdepth 2 ! -name package.json -exec rm -rf {} +

# ---- build: all dependencies (typescript is a root devDependency), then `tsc -b` ------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=manifests /src/ ./
# No dependency needs an install script to build (the only one with a script is nx, a dev tool).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.base.json ./
COPY libs/ libs/
COPY apps/ apps/
# Collect every workspace's dist/ into /out (fails if a workspace produced none).
RUN npx tsc -b \
 && mkdir -p /out \
 && for ws in libs/* apps/*; do \
      mkdir -p "/out/$ws" && cp -R "$ws/dist" "/out/$ws/dist" || exit 1; \
    done

# ---- runtime: production dependencies + compiled output only --------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=manifests /src/ ./
# Installs every workspace's dependencies and links @novamesh/* to libs/*, apps/* (no devDependencies).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /out/ ./
# Sample service definitions, for `meshctl register -f examples/orders.yaml`.
COPY examples/ examples/
# The certificate authority's key directory: owned by the runtime user, so a named volume
# mounted here starts writable (Docker copies this ownership into a new volume).
RUN mkdir -p /var/lib/novamesh/ca && chown node:node /var/lib/novamesh/ca && chmod 700 /var/lib/novamesh/ca

USER node
# discovery drains (stops pulling, finishes and acks in-flight events, closes NATS) on SIGTERM.
STOPSIGNAL SIGTERM
CMD ["node", "apps/discovery/dist/main.js"]
