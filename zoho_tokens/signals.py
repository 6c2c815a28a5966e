"""Signals sent after the store's own refresh attempts (``sender`` is ``ZohoToken``).

``token_refreshed(token)``: a new access token was saved.
``reauthorization_needed(token, error)``: Zoho rejected the refresh token; the user
must consent again. Both are sent after the transaction commits.
"""

from django.dispatch import Signal

token_refreshed = Signal()
reauthorization_needed = Signal()
