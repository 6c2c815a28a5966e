import pytest

from zoho_tokens.models import mask


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        (None, "—"),
        ("", "—"),
        ("short-secret", "…"),  # 12 characters: too short to show any of it
        ("1000.abcdef.0123456789wxyz", "…wxyz"),
    ],
)
def test_at_most_the_last_four_characters_are_shown(secret, shown):
    assert mask(secret) == shown
