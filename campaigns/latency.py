"""How long a campaign's pushes took: from the receipt of the ping batch that triggered each one
to FCM accepting it.

One rule: a delivery's latency is `sent_at - created_at`, both written by the service's clock —
`created_at` is the ping batch request's instant (the delivery is inserted in that batch's
transaction), `sent_at` the instant FCM's acceptance was heard, on the attempt that succeeded, so
a retried push counts its waits. Only sent deliveries have one; a negative difference (the clocks
of two machines disagreeing) counts as 0, as in the dispatcher's metric.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from geo.store import Connection

PERCENTILES = (0.5, 0.95, 0.99)

# percentile_cont interpolates linearly between the two nearest ranks (numpy's default); over no
# rows it is NULL. Like the other stats, it covers the campaign's whole life.
LATENCY_MS = """
SELECT percentile_cont($2::float8[]) WITHIN GROUP (
           ORDER BY 1000 * extract(epoch FROM greatest(sent_at - created_at, interval '0'))::float8)
FROM deliveries WHERE campaign_id = $1 AND status = 'sent' AND sent_at IS NOT NULL
"""


class Latency(msgspec.Struct, kw_only=True, frozen=True):
    """Percentiles of ping received → FCM accepted, in milliseconds (to the microsecond); all
    null while the campaign has no sent delivery."""

    p50: float | None
    p95: float | None
    p99: float | None


async def latency(conn: Connection, campaign_id: UUID) -> Latency:
    values: list[float] | None = await conn.fetchval(LATENCY_MS, campaign_id, list(PERCENTILES))
    if values is None:
        return Latency(p50=None, p95=None, p99=None)
    p50, p95, p99 = (round(v, 3) for v in values)
    return Latency(p50=p50, p95=p95, p99=p99)
