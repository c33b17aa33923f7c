"""Webhooks: every moment, push outcome, feedback and conversion streamed to the customer's own
systems, signed, at least once.

`events` writes the stream inside the transactions of the facts it reports; `relay` fans it out
to subscriptions and POSTs it (`sender`), with retries and dead letters; `safety` decides which
URLs and addresses may be called; `signing` and `sealing` hold the HMAC and the encrypted secrets;
`store` is the SQL of subscriptions, attempts and replays; `model` the API's shapes.
"""
