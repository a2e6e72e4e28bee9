-- The token fingerprint (Herald.Core.Security.TokenFingerprint: the first 32 bits of the token's SHA-256, printed as
-- tok:xxxxxxxx in logs and the API), stored so GET /v1/registrations?fingerprint= is an index lookup per tenant.
-- NULL once deleted (the token is gone). Existing rows are filled here with herald_token_fp(), a function the store
-- registers on its connection before migrating.
ALTER TABLE registrations ADD COLUMN token_fp INTEGER NULL;

UPDATE registrations SET token_fp = herald_token_fp(token) WHERE token <> '' AND status <> 2;

CREATE INDEX ix_registrations_token_fp ON registrations (tenant_id, token_fp, id) WHERE token_fp IS NOT NULL;

-- GET /v1/registrations pages through a tenant by id: (tenant_id, id) serves that without sorting the tenant, and
-- everything the (tenant_id) index it replaces served.
DROP INDEX ix_registrations_tenant;
CREATE INDEX ix_registrations_tenant ON registrations (tenant_id, id);
