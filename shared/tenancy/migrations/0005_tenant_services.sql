-- What a tenant offers and how long an appointment takes: the booking agent asks which service
-- when there is a list, and books `appointment_minutes` from the chosen start.
SET LOCAL ROLE voice_owner;

ALTER TABLE public.tenant_settings
  ADD COLUMN IF NOT EXISTS services jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(services) = 'array'),
  ADD COLUMN IF NOT EXISTS appointment_minutes integer NOT NULL DEFAULT 30
    CHECK (appointment_minutes BETWEEN 5 AND 480);
