-- Runs as the migrating administrator (superuser locally, the cluster master user in Aurora).
-- Roles are cluster-wide: create each once and leave an existing one as it is.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_owner') THEN
    CREATE ROLE voice_owner NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object THEN NULL;  -- another database of this cluster migrated at the same time
END $$;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_app') THEN
    CREATE ROLE voice_app LOGIN;
  END IF;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- The app role owns nothing and can never step around row-level security. Only a true superuser may
-- change SUPERUSER or BYPASSRLS, and Aurora's master user is not one: check them, set the rest.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voice_app' AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'role voice_app must be NOSUPERUSER NOBYPASSRLS: fix it as a superuser, then migrate';
  END IF;
END $$;
ALTER ROLE voice_app NOCREATEDB NOCREATEROLE NOINHERIT;

-- The migrator switches to voice_owner (SET LOCAL ROLE) so every object belongs to it, not to a login.
GRANT voice_owner TO CURRENT_USER;

-- btree_gist lets one exclusion constraint say "same resource AND overlapping time" (no double booking).
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO voice_owner', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO voice_app', current_database());
END $$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO voice_owner;
GRANT USAGE ON SCHEMA public TO voice_app;
