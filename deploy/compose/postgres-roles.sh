#!/bin/sh
# First start of the compose PostgreSQL: the gateway's read-only role (the embedded server's
# yf_gateway). The ledger's migrations grant it SELECT on the projections.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$YF_GATEWAY_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE yf_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
SQL
