# Multi-stage build: the first stage has the compiler toolchain better-sqlite3 needs; the runtime
# stage has only the app, its production dependencies and a non-root user.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY server ./server
COPY lib ./lib
COPY db ./db
COPY bench ./bench
COPY tests/support ./tests/support
# npm ci runs the `prepare` build (tsc) once the sources are in place.
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 GATEWAY_DB=/data/gateway.db
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
CMD ["node", "dist/server/main.js"]
