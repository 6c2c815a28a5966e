"""What an error report shows when the store fails inside a refresh: never a secret.

Django's error page with ``DEBUG`` off and the admins' error mail (``ExceptionReporter``)
list every frame of the traceback, the HTML version with its local variables, as error
trackers do. The failure here comes after Zoho answered, while the refresh writes the new
access token (its second UPDATE; the first claimed the refresh): every secret of the row
and the new token are in the frames.
"""

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.views.debug import ExceptionReporter
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException

from zoho_tokens.models import ZohoToken

# Every token the fake Zoho issues (refresh and access tokens) has this shape.
ZOHO_TOKEN = re.compile(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}")


def error_report(call: Callable[[], Any]) -> tuple[str, BaseException]:
    """The text and HTML of Django's report of what ``call()`` raised, and the exception."""
    try:
        call()
    except Exception as exc:
        reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
        return reporter.get_traceback_text() + reporter.get_traceback_html(), exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (DatabaseError("the disk is full"), "the disk is full"),
        (RuntimeError("a bug"), "unexpected RuntimeError"),
    ],
    ids=["database error", "unexpected exception"],
)
def test_the_report_of_a_failed_refresh_shows_no_secret(
    sdk, fake_zoho, tokens_zoho_knows, caplog, failure, message
):
    (row,) = tokens_zoho_knows("ann", expiring=True)
    secrets = [row.client_secret, row.refresh_token, row.access_token]
    caplog.set_level(logging.DEBUG)

    updates: list[str] = []

    def fail_the_write(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE") and ZohoToken._meta.db_table in sql:
            updates.append(sql)
            if len(updates) == 2:  # the claim went through; applying Zoho's answer fails
                raise failure
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_the_write):
        report, exc = error_report(lambda: sdk(OAuthToken(id=row.token_id)))

    assert isinstance(exc, SDKException)
    assert exc.code == "TOKEN_STORE"
    assert message in str(exc)
    assert fake_zoho.count("refresh_token") == 1  # Zoho answered; writing its answer failed
    assert "in refresh_with_claim" in report  # the frames are reported ...
    for secret in secrets:  # ... without a secret of the row ...
        assert secret not in report
    assert not ZOHO_TOKEN.findall(report)  # ... or the access token Zoho just issued
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "DjangoTokenStore.find_token_by_id failed" in logged
    for secret in secrets:
        assert secret not in logged
    assert not ZOHO_TOKEN.findall(logged)


def test_with_debug_on_the_store_s_own_values_show_masked(sdk, fake_zoho, tokens_zoho_knows, settings):
    """``DEBUG`` turns Django's filter off: then the values themselves must not show secrets."""
    (row,) = tokens_zoho_knows("ann", expiring=True)
    settings.DEBUG = True

    def fail_the_claim(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("UPDATE") and ZohoToken._meta.db_table in sql:
            raise DatabaseError("the connection was lost")  # the lookup found the row; claiming fails
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_the_claim):
        report, exc = error_report(lambda: sdk(OAuthToken(id=row.token_id)))

    assert "the connection was lost" in str(exc)
    assert fake_zoho.count("refresh_token") == 0
    assert "StoredValues(" in report  # shown, with DEBUG on ...
    assert f"refresh_token=…{row.refresh_token[-4:]}," in report  # ... masked
    for secret in (row.client_secret, row.refresh_token, row.access_token):
        assert secret not in report
