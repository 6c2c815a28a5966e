"""Signals of the app (``sender`` is ``ZohoToken``), all sent after the transaction commits.

After the store's own refresh attempts:

``refresh_finished(token, outcome)``: after every call to Zoho for a refresh, with
``outcome`` one of ``"refreshed"``, ``"rejected"``, ``"rate_limited"``,
``"unavailable"``, ``"failed"``: count it for your metrics.
``token_refreshed(token)``: a new access token was saved.
``reauthorization_needed(token, error)``: Zoho rejected the refresh token; the user
must consent again.

After a connection through the OAuth views or ``zoho_connect``:

``zoho_connected(token, user)``: a Zoho account was connected for the first time here
(``user`` is the owner, or ``None`` from ``zoho_connect``).
``zoho_reconnected(token, user, replaced_revoked)``: a Zoho account connected before
was connected again; the row was updated, and the refresh token it held was revoked
at Zoho (``replaced_revoked`` is ``False`` when Zoho could not be told, ``None`` when
there was none).
"""

from django.dispatch import Signal

refresh_finished = Signal()
token_refreshed = Signal()
reauthorization_needed = Signal()
zoho_connected = Signal()
zoho_reconnected = Signal()
