#!/bin/sh
# First-start initialisation of a service's PostgreSQL container in
# docker-compose.yml (mounted into /docker-entrypoint-initdb.d): makes the
# service's owner and app roles for $POSTGRES_DB with
# deploy/postgres/service-roles.sql (mounted at /orderflow/service-roles.sql).
# ORDERFLOW_SERVICE names the service (order, inventory, ...); the
# development passwords are the role names.
set -eu
owner="orderflow_${ORDERFLOW_SERVICE}_owner"
app="orderflow_${ORDERFLOW_SERVICE}_app"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$POSTGRES_DB" -v owner="$owner" -v app="$app" \
  -v owner_password="$owner" -v app_password="$app" \
  -f /orderflow/service-roles.sql
