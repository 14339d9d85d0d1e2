# The Keel worker and CLI, for registries-reachable deployments (docker-compose.yml).
# The sandbox image is a different one: sandbox/Dockerfile.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev
ENTRYPOINT ["node", "bin/keel.js"]
CMD ["worker"]
