"""Signals sent after the store's own refresh attempts (``sender`` is ``ZohoToken``).

``refresh_finished(token, outcome)``: after every call to Zoho for a refresh, with
``outcome`` one of ``"refreshed"``, ``"rejected"``, ``"rate_limited"``,
``"unavailable"``, ``"failed"``: count it for your metrics.
``token_refreshed(token)``: a new access token was saved.
``reauthorization_needed(token, error)``: Zoho rejected the refresh token; the user
must consent again. All are sent after the transaction commits.
"""

from django.dispatch import Signal

refresh_finished = Signal()
token_refreshed = Signal()
reauthorization_needed = Signal()
