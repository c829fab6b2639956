from __future__ import annotations

import pytest

from drover.shared.natsurls import join_urls, split_urls


def test_split_normalises_each_url_and_keeps_order() -> None:
    assert split_urls("nats://a:4222, b:5222 ,c,,tls://d:1") == [
        "nats://a:4222", "nats://b:5222", "nats://c:4222", "tls://d:1"
    ]
    assert split_urls(["a", "nats://b:1,c"]) == ["nats://a:4222", "nats://b:1", "nats://c:4222"]
    assert split_urls("a,a:4222") == ["nats://a:4222"]  # duplicates once
    assert join_urls(" a , b ") == "nats://a:4222,nats://b:4222"


@pytest.mark.parametrize("empty", ["", ",", " , ", []])
def test_no_url_is_an_error(empty: str | list[str]) -> None:
    with pytest.raises(ValueError, match="no NATS URL given"):
        split_urls(empty)
