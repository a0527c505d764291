-- Per-turn latency figures of a call (the service's TurnMetrics summaries: stt_ms, llm_ttft_ms,
-- tts_ttfb_ms, voice_to_voice_ms, barge_in, errors), written with the call at its end, so the tenant
-- API shows the figures `GET /websocket-status` showed live.
-- Tenant tables come from provision_tenant_schema: the 0003 function is kept under a versioned name
-- and wrapped, so a tenant created from now on gets the column too; existing tenants are altered below.
SET LOCAL ROLE voice_owner;

ALTER FUNCTION public.provision_tenant_schema(uuid) RENAME TO provision_tenant_schema_0003;
REVOKE ALL ON FUNCTION public.provision_tenant_schema_0003(uuid) FROM PUBLIC;

CREATE FUNCTION public.provision_tenant_schema(p_tenant_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $fn$
DECLARE
  s text;
BEGIN
  PERFORM public.provision_tenant_schema_0003(p_tenant_id);
  SELECT t.schema_name INTO STRICT s FROM public.tenants t WHERE t.id = p_tenant_id;
  EXECUTE format($sql$ALTER TABLE %I.calls ADD COLUMN IF NOT EXISTS turn_metrics jsonb NOT NULL DEFAULT '[]'
                     CHECK (jsonb_typeof(turn_metrics) = 'array')$sql$, s);
END
$fn$;

REVOKE ALL ON FUNCTION public.provision_tenant_schema(uuid) FROM PUBLIC;

SELECT public.provision_tenant_schema(id) FROM public.tenants;
