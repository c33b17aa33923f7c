"""Fitting the value matrix's buy-till-you-die models on a population's histories: Pareto/NBD
for how many purchase days, Gamma-Gamma for their spend, both with pymc-marketing's CLV models
fitted by MAP (a point estimate: seconds, where sampling would take minutes on this machine).

One rule: a fit either returns finite parameters or raises `CannotFit`, and the caller keeps the
parameters it had; pymc-marketing is imported only when there is something to fit, since its
import and first compilation cost seconds that a shop with no purchases never needs to pay.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from customers.value import History, Params, finite_params

log = logging.getLogger("contexto.value")

# Below these, the MAP estimate is mostly the priors speaking: keep the parameters in hand.
MIN_CUSTOMERS = 50
MIN_REPEATERS = 20


class CannotFit(Exception):
    """Too few customers or repeat purchases to fit, or a fit that did not converge."""


def fit(customers: Mapping[str, History]) -> Params:
    """Pareto/NBD and Gamma-Gamma parameters fitted on `customers` by MAP."""
    repeaters = {c: h for c, h in customers.items() if h.frequency > 0}
    spenders = [h for h in customers.values() if h.monetary > 0]
    if len(customers) < MIN_CUSTOMERS or len(repeaters) < MIN_REPEATERS:
        raise CannotFit(f"{len(customers)} customers, {len(repeaters)} with repeat purchases "
                        f"(needs {MIN_CUSTOMERS} and {MIN_REPEATERS})")
    import pandas as pd
    from pymc_marketing.clv import GammaGammaModel, ParetoNBDModel

    ids = list(customers)
    counts = pd.DataFrame({
        "customer_id": range(len(ids)),
        "frequency": [customers[c].frequency for c in ids],
        "recency": [customers[c].recency for c in ids],
        "T": [customers[c].age for c in ids],
    })
    spends = pd.DataFrame({
        "customer_id": range(len(spenders)),
        "frequency": [h.frequency + 1 for h in spenders],  # purchase days, as `monetary` counts
        "monetary_value": [h.monetary for h in spenders],
    })
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pytensor's BLAS notice, pymc's progress chatter
            counting = ParetoNBDModel(data=counts)
            counting.fit(method="map", progressbar=False)
            gg = GammaGammaModel(data=spends)
            gg.fit(method="map", progressbar=False)
    except Exception as exc:  # pymc raises many kinds on a degenerate population
        raise CannotFit(f"the MAP fit failed: {exc}") from exc
    counted, spent = _summary(counting), _summary(gg)
    params = Params(r=counted["r"], alpha=counted["alpha"], s=counted["s"], beta=counted["beta"],
                    p=spent["p"], q=spent["q"], v=spent["v"],
                    source=f"fitted on {len(customers)} customers")
    if not finite_params(params):
        raise CannotFit(f"the fit gave unusable parameters {params}")
    return params


def _summary(model: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in model.fit_summary().items()}
