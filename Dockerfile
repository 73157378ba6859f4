# syntax=docker/dockerfile:1
# Production image: compiled JavaScript and pages, production dependencies only, non-root, with a health check.
# Runs against MongoDB (MONGODB_URI); the embedded development database is not part of the image.
# test/e2e/runtime-image.test.ts rebuilds what the runtime stage holds, without Docker, and starts it.
#
# Base image: node:20-bookworm-slim (= node:20-slim, node:20.20.2-slim), pinned by its multi-platform index digest.
# This machine has no registry access; the digest was checked against public build logs in which BuildKit resolved
# docker.io/library/node:20-slim@sha256:2cf067cf… and against projects pinning it for these tags.
# Check or refresh it with: docker buildx imagetools inspect node:20-bookworm-slim
ARG NODE_IMAGE=node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts ./scripts
# The server (tsc) and the pages (their browser scripts bundled by esbuild, HTML and CSS) into dist/.
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production HUREN_MODE=production PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
# No build tools at run time: esbuild, tsx and TypeScript are development dependencies. --omit=optional leaves out
# the embedded PostgreSQL binaries (the image runs on MongoDB), about 60 MB.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY profiles ./profiles
COPY seed ./seed
# Read-only root filesystem (compose: read_only): nothing is written under /app; npm and Node get a writable /tmp.
ENV HOME=/tmp npm_config_cache=/tmp/.npm
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/main.js"]
