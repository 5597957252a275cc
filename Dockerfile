# keyward: the operator, the verification webhook and the migrate command in one image.
#
#   docker build -t keyward:dev .
#
# Without a container engine, devenv/image/build.sh performs these same steps and writes the
# image as an archive (it reads the runtime stage's USER, ENV, WORKDIR, ENTRYPOINT and LABELs
# from this file, so the two cannot drift apart).
ARG NODE_IMAGE=docker.io/library/node:24.22.3-bookworm-slim

# Compiles the TypeScript. Test and benchmark sources are compiled too (the tsconfig covers them)
# but never leave this stage.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && find dist -name '*.map' -delete

# Production dependencies only, installed without running package scripts.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ARG NODE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
WORKDIR /app
COPY --from=deps /app/package.json /app/package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/api ./dist/api
COPY --from=build /src/dist/credentials ./dist/credentials
COPY --from=build /src/dist/lib ./dist/lib
COPY --from=build /src/dist/store ./dist/store
COPY --from=build /src/dist/operator ./dist/operator
COPY --from=build /src/dist/webhook ./dist/webhook
COPY --from=build /src/dist/cli ./dist/cli
COPY store/migrations ./dist/store/migrations
ENV NODE_ENV=production
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]
LABEL org.opencontainers.image.title="keyward"
LABEL org.opencontainers.image.description="Declarative service users and API keys for Kubernetes: operator, Postgres credential store of hashes, verification webhook"
LABEL org.opencontainers.image.licenses="Apache-2.0"
LABEL org.opencontainers.image.source="https://github.com/keyward/keyward"
LABEL org.opencontainers.image.version="${VERSION}"
LABEL org.opencontainers.image.revision="${REVISION}"
LABEL org.opencontainers.image.base.name="${NODE_IMAGE}"
