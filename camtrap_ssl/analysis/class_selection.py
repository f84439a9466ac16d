"""Study 3's class selection: the study's four criteria on per-class precision and recall.

The study chose zebra (high precision and recall for both models), guineaFowl (high for SSL only),
ostrich (high for SL only) and lionMale (low for both) without stating thresholds;
:func:`select_classes` makes the criteria and thresholds explicit and says why each class was
chosen, and :meth:`ClassSelection.classes_or_fallback` handles the case of no qualifying class.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CRITERIA: dict[str, str] = {
    "both_high": "high precision and recall for both models",
    "ssl_only": "high for the SSL model only",
    "sl_only": "high for the SL model only",
    "both_low": "low precision and recall for both models",
}
"""The study's four class-selection criteria, in the order of its preferred classes."""

STUDY_CLASSES: tuple[str, ...] = ("zebra", "guineaFowl", "ostrich", "lionMale")
"""The classes the study chose, one per criterion of :data:`CRITERIA`."""



def _metrics_frame(metrics, name: str) -> pd.DataFrame:
    """Accept a DataFrame (index or ``class`` column; ``precision``/``recall`` columns) or a dict
    class -> (precision, recall) / {"precision": .., "recall": ..}."""
    if isinstance(metrics, pd.DataFrame):
        frame = metrics.set_index("class") if "class" in metrics.columns else metrics
        missing = {"precision", "recall"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}; it needs 'precision' and "
                             f"'recall', one row per class")
        frame = frame[["precision", "recall"]]
    elif isinstance(metrics, Mapping):
        rows = {}
        for cls, val in metrics.items():
            if isinstance(val, Mapping):
                rows[cls] = (val["precision"], val["recall"])
            elif isinstance(val, Sequence) and len(val) == 2:
                rows[cls] = tuple(val)
            else:
                raise ValueError(f"{name}[{cls!r}]={val!r}; expected (precision, recall)")
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["precision", "recall"])
    else:
        raise ValueError(f"{name} must be a pandas DataFrame or a dict class -> (precision, "
                         f"recall), got {type(metrics).__name__}")
    frame = frame.astype(float)
    frame.index = frame.index.map(str)
    if frame.index.has_duplicates:
        raise ValueError(f"{name} lists a class more than once")
    bad = frame[(frame < 0).any(axis=1) | (frame > 1).any(axis=1)]
    if len(bad):
        raise ValueError(f"{name}: precision/recall must lie in [0, 1]; "
                         f"bad classes {list(bad.index)}")
    return frame


@dataclass
class ClassSelection:
    """Result of :func:`select_classes`.

    ``table``: one row per class, both models' precision and recall and one boolean column per
    criterion. ``choices``: one row per criterion with the qualifying classes, the chosen class (or
    None) and why. ``chosen``: criterion -> class or None.
    """
    table: pd.DataFrame
    choices: pd.DataFrame
    chosen: dict[str, str | None]
    high: float
    low: float
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """The chosen classes in criterion order, without the criteria that found none."""
        return [c for c in self.chosen.values() if c is not None]

    def classes_or_fallback(self, available: Sequence[str],
                            fallback: Sequence[str] = STUDY_CLASSES) -> tuple[list[str], str | None]:
        """The chosen classes, or, when no criterion found one, a stated fallback.

        Weak models (the ``tiny`` profile's fine-tuning learns little) can leave every criterion
        empty; a study must then still look at *some* classes rather than fail on an empty image
        set. The fallback is the study's classes that exist in ``available`` (the target's
        classes), else the first four of ``available``. Returns ``(classes, note)``; ``note`` is
        None when the selection itself is used and says what was substituted otherwise.
        """
        if self.classes:
            return self.classes, None
        available = [str(c) for c in available]
        if not available:
            raise ValueError("available lists no classes to fall back on")
        picked = [c for c in fallback if c in available] or available[:len(CRITERIA)]
        source = "the study's classes present" if picked[0] in fallback else "the first classes"
        return picked, (f"no class met any criterion (high={self.high:.3g}, low={self.low:.3g}); "
                        f"using {source} in the target instead: {picked}")


def select_classes(metrics_ssl, metrics_sl, high: float | None = None, low: float | None = None,
                   prefer: Sequence[str | None] | None = STUDY_CLASSES, *,
                   high_quantile: float = 0.5, low_quantile: float = 0.5) -> ClassSelection:
    """Pick one class per criterion of :data:`CRITERIA` from both models' per-class precision and
    recall, the study's way, with the thresholds it left unstated made explicit.

    A class is *high* for a model when precision and recall are both >= ``high`` and *low* when both
    are < ``low``. Criteria: ``both_high`` (high for both models), ``ssl_only`` (high for SSL, not
    high for SL), ``sl_only`` (the reverse) and ``both_low`` (low for both). With ``low <= high``
    the four are mutually exclusive, so no class can be chosen twice.

    The study gives no thresholds, and absolute ones would not carry over from Serengeti's 48
    classes to the small embedded world, so by default both are quantiles of the pooled precision
    and recall values of both models (``high_quantile``/``low_quantile``, the median unless set):
    "high" means better than the typical class, "low" worse. Pass ``high``/``low`` as numbers to fix
    them.

    ``prefer`` holds one class per criterion (default: the study's zebra, guineaFowl, ostrich,
    lionMale). The preferred class is chosen when it qualifies; otherwise the qualifying class that
    fits the criterion best (largest min(P, R) over both models for ``both_high``; largest gap
    between the models' min(P, R) for the one-model criteria; smallest max(P, R) over both models
    for ``both_low``); otherwise None, with the reason in ``choices``. Classes missing from one
    table or with an undefined (NaN) value qualify for nothing.
    """
    ssl = _metrics_frame(metrics_ssl, "metrics_ssl")
    sl = _metrics_frame(metrics_sl, "metrics_sl")
    criteria = list(CRITERIA)
    if prefer is None:
        prefer = [None] * len(criteria)
    prefer = list(prefer)
    if len(prefer) != len(criteria):
        raise ValueError(f"prefer needs one class (or None) per criterion {criteria}, "
                         f"got {len(prefer)}")
    for q, name in ((high_quantile, "high_quantile"), (low_quantile, "low_quantile")):
        if not 0 <= q <= 1:
            raise ValueError(f"{name}={q} must lie in [0, 1]")
    table = ssl.add_prefix("ssl_").join(sl.add_prefix("sl_"), how="outer")
    if table.empty:
        raise ValueError("metrics_ssl and metrics_sl list no classes")
    pooled = table.to_numpy().ravel()
    pooled = pooled[~np.isnan(pooled)]
    if pooled.size == 0:
        raise ValueError("no finite precision/recall values in metrics_ssl and metrics_sl")
    high = float(np.quantile(pooled, high_quantile)) if high is None else float(high)
    low = float(np.quantile(pooled, low_quantile)) if low is None else float(low)
    if low > high:
        raise ValueError(f"low={low} must not exceed high={high}, or a class could be both")

    ssl_min = table[["ssl_precision", "ssl_recall"]].min(axis=1, skipna=False)
    sl_min = table[["sl_precision", "sl_recall"]].min(axis=1, skipna=False)
    ssl_max = table[["ssl_precision", "ssl_recall"]].max(axis=1, skipna=False)
    sl_max = table[["sl_precision", "sl_recall"]].max(axis=1, skipna=False)
    complete = table.notna().all(axis=1)
    ssl_high, sl_high = complete & (ssl_min >= high), complete & (sl_min >= high)
    table["both_high"] = ssl_high & sl_high
    table["ssl_only"] = ssl_high & ~sl_high
    table["sl_only"] = sl_high & ~ssl_high
    table["both_low"] = complete & (ssl_max < low) & (sl_max < low)
    score = {
        "both_high": pd.concat([ssl_min, sl_min], axis=1).min(axis=1),
        "ssl_only": ssl_min - sl_min,
        "sl_only": sl_min - ssl_min,
        "both_low": -pd.concat([ssl_max, sl_max], axis=1).max(axis=1),
    }
    rows, chosen, notes = [], {}, []
    for crit, pref in zip(criteria, prefer):
        qualifying = list(table.index[table[crit]])
        ranked = sorted(qualifying, key=lambda c: (-score[crit][c], c))
        if pref is not None and pref in qualifying:
            pick, reason = pref, "preferred class qualifies"
        elif ranked:
            pick = ranked[0]
            why = ("is not in the tables" if pref not in table.index
                   else "lacks a value for a model" if not complete[pref]
                   else "does not qualify")
            reason = ("best qualifying class" if pref is None
                      else f"preferred {pref!r} {why}; best qualifying class")
        else:
            pick, reason = None, (f"no class qualifies ({CRITERIA[crit]}; high={high:.3g}, "
                                  f"low={low:.3g})")
            notes.append(f"{crit}: {reason}")
        chosen[crit] = pick
        rows.append({"criterion": crit, "description": CRITERIA[crit], "qualifying": ranked,
                     "preferred": pref, "chosen": pick, "reason": reason})
    choices = pd.DataFrame(rows).set_index("criterion")
    return ClassSelection(table=table, choices=choices, chosen=chosen, high=high, low=low,
                          notes=notes)
