-- The customer value matrix: past purchases imported for historical value and the BTYD fit
-- (purchases the app reports live stay `purchase` signals; the value refit reads both).
CREATE TABLE transactions (
    id          bigserial PRIMARY KEY,
    customer_id text NOT NULL,             -- the customer_id devices give (or 'device:<id>')
    ts          timestamptz NOT NULL,
    amount      numeric(14, 2) NOT NULL CHECK (amount >= 0),
    store_id    uuid,                      -- where, when known (history may name closed stores)
    source      text NOT NULL CHECK (source IN ('import')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX transactions_customer_idx ON transactions (customer_id, ts);
