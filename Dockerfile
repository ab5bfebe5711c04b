# syntax=docker/dockerfile:1
# Build: docker build -t hubcache .
# Run:   docker run -d -p 5000:5000 -v hubcache-data:/data hubcache
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HUBCACHE_LISTEN=0.0.0.0:5000 \
    HUBCACHE_DATA=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 5000
# /healthz answers while the process runs (readiness, incl. a writable cache, is /readyz). The check
# reads the configuration the server reads (HUBCACHE_* environment, HUBCACHE_CONFIG file): another
# HUBCACHE_LISTEN port, or TLS, is followed. Options given as `docker run` arguments are not seen by
# it: give them as HUBCACHE_* variables or in the file.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
  CMD ["node", "dist/main.js", "healthcheck"]
# --max-semi-space-size=8: the young generation at 16 MiB (Node 20 lets it grow to 32, Node 24 to 64):
# peak RSS under 500 connections 206 -> 190 MiB at the same throughput (docs/benchmarks.md, "Memory").
# The same flags as `npm start` (test/unit/node-flags.test.ts).
ENTRYPOINT ["node", "--enable-source-maps", "--max-semi-space-size=8", "dist/main.js"]
