# syntax=docker/dockerfile:1
# One image for the whole mesh: `docker run IMAGE serve <service>` runs one service
# (registry, features, inference, router, experiments); `docker run IMAGE up` all five.
# The sources are TypeScript run by tsx (a runtime dependency), so there is no compile step:
# the build stage only installs production dependencies, the native ones included.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- deps: production node_modules, native modules built here with the toolchain ----
FROM ${NODE_IMAGE} AS deps
# better-sqlite3 compiles from source when no prebuilt binary matches the platform; the
# toolchain it needs stays in this stage and never reaches the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# onnxruntime-node's install script would download optional CUDA files; the CPU binaries
# ship inside the npm package, so it is skipped (as in CI).
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 # Fail the build here, not at the first request, if the native modules did not build.
 && node -e "new (require('better-sqlite3'))(':memory:').close(); require('onnxruntime-node')"

# ---- runtime: slim Node, no toolchain, non-root ----
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlmesh" \
      org.opencontainers.image.description="Production ML platform as a gRPC microservices mesh" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    MLMESH_HOST=0.0.0.0 \
    MLMESH_DATA_DIR=/var/lib/mlmesh
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# Only what runs: the CLI, the runtime, the services and the committed generated code.
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY cli ./cli
COPY lib ./lib
COPY gen ./gen
COPY services ./services
# The image's user `node` (uid 1000) owns the data directory and nothing else; the code
# stays root-owned and read-only to it. Numeric uid so Kubernetes' runAsNonRoot can check it.
RUN mkdir -p /var/lib/mlmesh && chown 1000:1000 /var/lib/mlmesh
USER 1000:1000
VOLUME ["/var/lib/mlmesh"]
# gRPC (h2c) 50051-50055 and HTTP (Connect JSON, /metrics, /healthz, /readyz) 8081-8085:
# registry, features, inference, router, experiments in that order.
EXPOSE 50051 50052 50053 50054 50055 8081 8082 8083 8084 8085
# /healthz of the service this container runs: the service name is read from PID 1's
# arguments (`serve <service>`; `up` checks the registry), the port from
# MLMESH_<SERVICE>_HTTP_PORT or the default; HTTPS when MLMESH_TLS_CERT is set (the probe
# checks liveness, not the certificate). Node itself: the slim image has no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const a=require('fs').readFileSync('/proc/1/cmdline','utf8').split('\\0');const i=a.indexOf('serve');const s=i>=0?a[i+1]:'registry';const d={registry:8081,features:8082,inference:8083,router:8084,experiments:8085};const p=process.env['MLMESH_'+String(s).toUpperCase()+'_HTTP_PORT']||d[s]||8081;require(process.env.MLMESH_TLS_CERT?'https':'http').get({host:'127.0.0.1',port:p,path:'/healthz',rejectUnauthorized:false,timeout:2500},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
# SIGTERM drains in-flight calls for MLMESH_SHUTDOWN_GRACE_MS, then exits; Node is PID 1
# and handles the signal itself (lib/process.ts).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/mlmesh.mjs"]
CMD ["serve", "registry"]
