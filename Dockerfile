# syntax=docker/dockerfile:1
# One image for every process type of Automata-Signal (see docs/deployment.md):
#   node dist/src/api.js              API (default command)
#   node dist/src/worker.js           Temporal worker
#   node dist/src/cli/migrate.js      migrations (fly release_command, compose "migrate" service)
# The workflow code is bundled at build time (bundleWorkflowCode) and AUTOMATA_WORKFLOW_BUNDLE
# points the worker at it, so a worker does not run webpack when it starts.

ARG NODE_IMAGE=node:20-bookworm-slim

##### build: compile TypeScript, prebuild the workflow bundle, drop dev dependencies #####
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# npm 10 (bundled with Node 20) ignores package.json "allowScripts" and runs every install script.
ENV SCARF_ANALYTICS=false \
    npm_config_update_notifier=false
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Sources (the .dockerignore keeps node_modules, dist, .git, local data and env files out).
COPY . .
RUN npm run build \
 && node dist/src/cli/bundle-workflows.js dist/workflow-bundle.js \
 && rm -rf dist/test dist/bench \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force

##### runtime: only dist/, production node_modules and package.json; runs as the non-root "node" user #####
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    AUTOMATA_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js \
    AUTOMATA_HOME=/tmp/automata \
    PORT=8080 \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./package.json
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
# Files stay root-owned and read-only for the process; it writes nothing but /tmp.
USER node
# 8080: API; 9463: API metrics (/metrics is not on 8080, which the public proxy routes);
# 9464: worker metrics; 9465: Temporal SDK metrics of the worker.
EXPOSE 8080 9463 9464 9465
# Node is PID 1 and handles SIGTERM itself (src/infra/process.ts): the API drains, the worker
# stops polling and lets in-flight activities finish within AUTOMATA_SHUTDOWN_GRACE.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/api.js"]
