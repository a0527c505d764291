-- One schema per tenant, built by one idempotent function: creating a tenant calls it, and a later
-- migration that changes tenant tables edits this function and re-runs it for every tenant.
-- Two layers hold each table: the schema (by name) and RLS on tenant_id (by row), plus a CHECK that
-- pins tenant_id to the schema's own tenant, so even a write to the wrong schema is refused.
SET LOCAL ROLE voice_owner;

CREATE FUNCTION public.provision_tenant_schema(p_tenant_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
DECLARE
  s   text;
  tid text := p_tenant_id::text;
  tbl text;
  current_tenant constant text := $$nullif(current_setting('app.tenant_id', true), '')::uuid$$;
BEGIN
  SELECT t.schema_name INTO STRICT s FROM public.tenants t WHERE t.id = p_tenant_id;
  EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION voice_owner', s);
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO voice_app', s);

  EXECUTE format($sql$
    CREATE TABLE IF NOT EXISTS %1$I.calls (
      tenant_id   uuid NOT NULL DEFAULT %3$s CHECK (tenant_id = %2$L::uuid),
      call_sid    text PRIMARY KEY,
      from_number text NOT NULL DEFAULT '',
      to_number   text NOT NULL DEFAULT '',
      status      text NOT NULL DEFAULT 'in-progress',
      started_at  timestamptz NOT NULL DEFAULT now(),
      ended_at    timestamptz,
      duration_s  integer CHECK (duration_s >= 0),
      outcome     text,  -- free text summary set at the end: booked, transferred, abandoned, ...
      next_action text NOT NULL DEFAULT 'continue' CHECK (next_action IN ('continue', 'hangup', 'transfer')),
      transfer_to text,
      updated_at  timestamptz NOT NULL DEFAULT now()
    )$sql$, s, tid, current_tenant);
  EXECUTE format('CREATE INDEX IF NOT EXISTS calls_started_idx ON %I.calls (started_at DESC, call_sid DESC)', s);

  -- No foreign key to calls: turns buffered during a Postgres outage must still land even if the
  -- call row could not be written at call start.
  EXECUTE format($sql$
    CREATE TABLE IF NOT EXISTS %1$I.transcript_turns (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      tenant_id   uuid NOT NULL DEFAULT %3$s CHECK (tenant_id = %2$L::uuid),
      call_sid    text NOT NULL,
      seq         integer NOT NULL CHECK (seq >= 0),
      role        text NOT NULL CHECK (role IN ('caller', 'agent', 'system', 'tool')),
      text        text NOT NULL,
      started_at  timestamptz,
      ended_at    timestamptz,
      interrupted boolean NOT NULL DEFAULT false,
      heard_text  text,
      UNIQUE (call_sid, seq)
    )$sql$, s, tid, current_tenant);

  EXECUTE format($sql$
    CREATE TABLE IF NOT EXISTS %1$I.bookings (
      id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id       uuid NOT NULL DEFAULT %3$s CHECK (tenant_id = %2$L::uuid),
      resource        text NOT NULL DEFAULT 'default',
      starts_at       timestamptz NOT NULL,
      ends_at         timestamptz NOT NULL,
      customer_name   text NOT NULL DEFAULT '',
      customer_phone  text,
      notes           text,
      status          text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'cancelled')),
      call_sid        text,
      idempotency_key text UNIQUE,
      created_at      timestamptz NOT NULL DEFAULT now(),
      updated_at      timestamptz NOT NULL DEFAULT now(),
      CHECK (ends_at > starts_at),
      CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
        resource WITH =, tstzrange(starts_at, ends_at) WITH &&) WHERE (status = 'confirmed')
    )$sql$, s, tid, current_tenant);
  EXECUTE format('CREATE INDEX IF NOT EXISTS bookings_starts_idx ON %I.bookings (starts_at, id)', s);

  FOREACH tbl IN ARRAY ARRAY['calls', 'transcript_turns', 'bookings'] LOOP
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s, tbl);
    EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', s, tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I.%I', s, tbl);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I.%I USING (tenant_id = %s) WITH CHECK (tenant_id = %s)',
                   s, tbl, current_tenant, current_tenant);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO voice_app', s, tbl);
  END LOOP;
  EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO voice_app', s);
END
$fn$;

REVOKE ALL ON FUNCTION public.provision_tenant_schema(uuid) FROM PUBLIC;

SELECT public.provision_tenant_schema(id) FROM public.tenants;
