-- Queue indexes, second pass.

-- A registration's rows are only looked up pending (token rotation, deactivation, delete), and finished
-- rows forget their token on completion: index the pending rows only. The index then stays as small as
-- the backlog, where an index over every row cost a random page write per notification.
DROP INDEX ix_notifications_registration;

CREATE INDEX ix_notifications_registration ON notifications (registration_id)
    WHERE registration_id IS NOT NULL AND state IN (0, 2);

-- At most one notification per coalescing key is in flight: a pending row waits while another row with
-- its key is being sent, so a device never gets an older badge after a newer one, and a retry that comes
-- back folds into the pending row (keeping the provider's Retry-After) instead of racing it.
CREATE INDEX ix_notifications_sending_key ON notifications (coalesce_key)
    WHERE coalesce_key IS NOT NULL AND state = 1;
