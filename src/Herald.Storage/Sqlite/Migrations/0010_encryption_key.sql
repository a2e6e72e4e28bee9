-- The device's HPKE public key for style preview-encrypted (3): an uncompressed P-256 point, 65 bytes. Public, not a
-- secret; stored like the rest of the registration and replaced by PATCH (key rotation). NULL without one.
ALTER TABLE registrations ADD COLUMN encryption_key BLOB NULL;
