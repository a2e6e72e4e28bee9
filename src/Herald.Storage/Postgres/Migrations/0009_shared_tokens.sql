-- Provider tokens shared by every node and every restart (the APNs JWT of a signing key), sealed with the key ring.
CREATE TABLE shared_tokens (
    key           text    NOT NULL PRIMARY KEY,
    sealed_value  text    NOT NULL,
    issued_at     bigint  NOT NULL
);
