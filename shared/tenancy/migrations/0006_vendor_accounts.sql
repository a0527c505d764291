-- Vendor capacity and per-tenant vendor accounts (issue 17).
-- Settings (plain, returned with the profile): what a tenant's calls do when its vendor budget or the
-- fleet is full, and the non-secret choices of its own vendor accounts (models, budgets).
-- Secrets (never in tenant_settings): a tenant's own vendor keys, encrypted by the application before
-- they reach the database (see shared/tenancy/vendor_secrets.py), in a table the app role cannot read;
-- it gets one tenant's ciphertexts at a time through a SECURITY DEFINER function.
SET LOCAL ROLE voice_owner;

ALTER TABLE public.tenant_settings
  ADD COLUMN IF NOT EXISTS overflow_policy text NOT NULL DEFAULT 'offline'
    CHECK (overflow_policy IN ('hold', 'offline', 'forward', 'busy')),
  ADD COLUMN IF NOT EXISTS overflow_hold_s integer NOT NULL DEFAULT 60 CHECK (overflow_hold_s BETWEEN 0 AND 600),
  ADD COLUMN IF NOT EXISTS stt_model text,
  ADD COLUMN IF NOT EXISTS tts_model text,
  ADD COLUMN IF NOT EXISTS llm_model text,
  ADD COLUMN IF NOT EXISTS deepgram_max_streams integer CHECK (deepgram_max_streams >= 0),
  ADD COLUMN IF NOT EXISTS elevenlabs_max_concurrent_requests integer
    CHECK (elevenlabs_max_concurrent_requests >= 0),
  ADD COLUMN IF NOT EXISTS openai_max_requests_per_minute integer CHECK (openai_max_requests_per_minute >= 0);

CREATE TABLE IF NOT EXISTS public.tenant_vendor_secrets (
  tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  vendor     text NOT NULL CHECK (vendor IN ('deepgram', 'elevenlabs', 'openai')),
  ciphertext text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, vendor)
);

CREATE OR REPLACE FUNCTION public.tenant_vendor_ciphertexts(p_tenant_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT coalesce(jsonb_object_agg(v.vendor, v.ciphertext), '{}'::jsonb)
  FROM public.tenant_vendor_secrets v JOIN public.tenants t ON t.id = v.tenant_id
  WHERE v.tenant_id = p_tenant_id AND t.active
$$;

REVOKE ALL ON FUNCTION public.tenant_vendor_ciphertexts(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_vendor_ciphertexts(uuid) TO voice_app;
