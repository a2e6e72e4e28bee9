-- Queue indexes, second pass (mirrors the SQLite script).

DROP INDEX ix_notifications_registration;

CREATE INDEX ix_notifications_registration ON notifications (registration_id)
    WHERE registration_id IS NOT NULL AND state IN (0, 2);

CREATE INDEX ix_notifications_sending_key ON notifications (coalesce_key)
    WHERE coalesce_key IS NOT NULL AND state = 1;
