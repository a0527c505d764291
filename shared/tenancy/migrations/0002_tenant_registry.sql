-- The shared registry. The app role gets no table privileges here: it reads through the
-- SECURITY DEFINER functions below, one narrow question at a time (which tenant owns this number,
-- this tenant's profile, which tenant owns this API key hash), so it can never list tenants.
SET LOCAL ROLE voice_owner;

CREATE TABLE public.tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{1,39}$'),
  name        text NOT NULL,
  schema_name text NOT NULL UNIQUE,
  active      boolean NOT NULL DEFAULT true,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.phone_numbers (
  e164       text PRIMARY KEY CHECK (e164 ~ '^\+[1-9][0-9]{6,14}$'),
  tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_numbers_tenant_idx ON public.phone_numbers (tenant_id);

CREATE TABLE public.tenant_settings (
  tenant_id                uuid PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
  greeting                 text,
  voice_id                 text,
  language                 text NOT NULL DEFAULT 'en',
  timezone                 text NOT NULL DEFAULT 'UTC',
  prompt_overrides         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(prompt_overrides) = 'object'),
  faq_text                 text,
  address                  text,
  tool_endpoint            text,
  toolbox                  jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(toolbox) = 'array'),
  fallback_transfer_number text CHECK (fallback_transfer_number ~ '^\+[1-9][0-9]{6,14}$'),
  business_hours           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(business_hours) = 'object'),
  updated_at               timestamptz NOT NULL DEFAULT now()
);

-- Keys are 32 random bytes, so a fast SHA-256 is enough (no password-style stretching needed).
CREATE TABLE public.tenant_api_keys (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id  uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  key_prefix text NOT NULL,
  key_hash   text NOT NULL UNIQUE,
  label      text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE FUNCTION public.tenant_profile_json(p_tenant_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT jsonb_build_object(
           'tenant_id', t.id, 'slug', t.slug, 'name', t.name, 'schema_name', t.schema_name,
           'settings', coalesce(to_jsonb(s) - 'tenant_id' - 'updated_at', '{}'::jsonb))
  FROM public.tenants t LEFT JOIN public.tenant_settings s ON s.tenant_id = t.id
  WHERE t.id = p_tenant_id AND t.active
$$;

CREATE FUNCTION public.resolve_phone_number(p_e164 text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT public.tenant_profile_json(n.tenant_id) FROM public.phone_numbers n WHERE n.e164 = p_e164
$$;

CREATE FUNCTION public.api_key_tenant(p_key_hash text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT k.tenant_id FROM public.tenant_api_keys k JOIN public.tenants t ON t.id = k.tenant_id
  WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL AND t.active
$$;

REVOKE ALL ON FUNCTION public.tenant_profile_json(uuid), public.resolve_phone_number(text),
  public.api_key_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_profile_json(uuid), public.resolve_phone_number(text),
  public.api_key_tenant(text) TO voice_app;
