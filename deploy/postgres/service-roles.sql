-- Least-privilege roles for one service's database. Run with psql as a
-- superuser (or a role with CREATEROLE that owns the database), connected to
-- that database, with these psql variables:
--
--   db              the service's database, e.g. order_service
--   owner           the role that owns the schema and runs the migrations
--                   (MIGRATION_DATABASE_URL), e.g. orderflow_order_owner
--   app             the role the service runs as (DATABASE_URL): reads and
--                   writes rows, nothing else, e.g. orderflow_order_app
--   owner_password  their passwords (ignored under trust authentication)
--   app_password
--
--   psql "$ADMIN_URL/order_service" -v ON_ERROR_STOP=1 -v db=order_service \
--     -v owner=orderflow_order_owner -v app=orderflow_order_app \
--     -v owner_password=... -v app_password=... -f deploy/postgres/service-roles.sql
--
-- Idempotent: run it again after a restore or on a database whose tables a
-- superuser created (earlier versions ran everything as the superuser); it
-- hands every table and sequence in the schema to the owner.
--
-- Used by scripts/lib.sh (scripts/up, scripts/test, scripts/bench), by the
-- end-to-end harness for every stack's databases, and by docker-compose.yml
-- (deploy/postgres/init-service-roles.sh). In Kubernetes the databases live
-- outside the cluster: run it once per service (deploy/README.md).

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec
ALTER ROLE :"owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
ALTER ROLE :"app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';

-- Only these two may connect; no one else's service role can read it.
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app";

-- The owner creates and alters the tables; the app may only use them.
ALTER SCHEMA public OWNER TO :"owner";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";

-- Tables and sequences made before the roles existed move to the owner.
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'owner')
FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'owner' \gexec
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', sequencename, :'owner')
FROM pg_sequences s
WHERE schemaname = 'public' AND sequenceowner <> :'owner'
  -- a sequence that a column owns moves with its table
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    JOIN pg_class c ON c.oid = d.objid
    WHERE c.relname = s.sequencename AND c.relkind = 'S' AND d.deptype IN ('a', 'i')
  ) \gexec

-- Rows, on what exists and on what the owner's migrations create later.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
  GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app";
