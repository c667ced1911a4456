"""The shared HTTP client's error messages: what a server echoes back never carries our secret."""

from __future__ import annotations

import httpx
import pytest

from connectors.http import HttpSource, PermanentStatus

TOKEN = "crm-secret-token-0123456789abcdef"


@pytest.mark.parametrize("offset", [0, 150, 160])
def test_an_echoed_secret_is_redacted_wherever_the_message_is_cut(offset):
    """The message is cut to 200 characters; a token the cut runs through must not keep its first part."""
    message = "x" * offset + f"bad header Authorization: Bearer {TOKEN}" + "y" * 300

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": message})

    source = HttpSource(client=httpx.Client(transport=httpx.MockTransport(answer)), secret=TOKEN,
                        requests_per_second=None)
    try:
        with pytest.raises(PermanentStatus) as raised:
            source.get_json("http://crm.test/objects")
    finally:
        source.close()
    text = str(raised.value)
    assert "401" in text
    assert TOKEN[:8] not in text  # neither whole nor the part before a cut
