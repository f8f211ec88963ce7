"""SHOUTcast DNAS reports, parsed from tests/fixtures/shoutcast and from samples."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from audimeter.observations import Listener, ListenerList, decode_all
from audimeter.sources.shoutcast import (
    MAX_CONNECT_TIME,
    Dnas2Stream,
    parse_dnas1_status,
    parse_dnas2_listeners_json,
    parse_dnas2_listeners_xml,
    parse_dnas2_statistics,
    parse_dnas2_uptime,
)
from audimeter.sources.xml import FormatError
from tests.support.fixtures import SHOUTCAST

FIXTURES = SHOUTCAST


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
FROM_DNAS_SOURCE = [
    Listener("10157", "203.0.113.7", "VLC/3.0.18 LibVLC/3.0.18", 412),
    Listener(
        "10162", "198.51.100.23", CHROME, 35, "https://www.example.org/player.html", "192.0.2.44"
    ),
]
# The listener of Nullsoft's 2018 documentation example; its uid "01234567" is read as a number.
DOC_LISTENER = Listener("1234567", "127.0.0.1", "WinampMPEG/5.66", 1337, "/admin.cgi", "")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def listeners(table: ListenerList) -> list[Listener]:
    return decode_all(table)


# -- every fixture -------------------------------------------------------------------------------


def test_dnas2_json_as_the_dnas_source_writes_it() -> None:
    table = parse_dnas2_listeners_json(fixture("v2_viewjson_page3_from_dnas_source.json"))
    assert listeners(table) == FROM_DNAS_SOURCE
    assert table.client_ids == ["10157", "10162"]


def test_dnas2_xml_as_the_dnas_source_writes_it() -> None:
    table = parse_dnas2_listeners_xml(fixture("v2_viewxml_page3_from_dnas_source.xml"))
    assert listeners(table) == FROM_DNAS_SOURCE


def test_dnas1_full_status() -> None:
    status = parse_dnas1_status(fixture("v1_admin_viewxml_full.xml"))
    assert status.version == "1.9.8"
    assert status.current_listeners == 2
    assert status.song == "Fake Song Title"
    assert listeners(status.listeners) == [
        Listener("11575", "127.0.0.1", "testclient/1.2.3", 67),
        Listener("11577", "127.0.0.2", "badgerous/3.2.1", 351),
    ]


@pytest.mark.parametrize("parse", [parse_dnas2_listeners_xml, parse_dnas1_status])
def test_counts_page_is_not_a_listener_list(parse: Callable[[bytes], object]) -> None:
    # page=1 has counts only: reading it as "nobody listening" would end every session.
    with pytest.raises(FormatError, match="no <LISTENERS>"):
        parse(fixture("v2_admin_viewxml_page1_counts.xml"))


def test_documentation_xml_example() -> None:
    # The documentation puts a comment before the XML declaration, which no XML parser (and no
    # DNAS) accepts; without that comment it is a valid page-3 answer.
    raw = fixture("v2_doc_viewxml_page3.xml")
    with pytest.raises(FormatError, match="XML declaration allowed only at the start"):
        parse_dnas2_listeners_xml(raw)
    body = raw[raw.index(b"<?xml") :]
    assert listeners(parse_dnas2_listeners_xml(body)) == [DOC_LISTENER]


def test_documentation_json_example() -> None:
    # Comments and missing commas: not JSON, and no DNAS writes it (the 2.6 source writes the
    # numbers bare). The parser refuses it rather than guessing; repaired, it shows that numbers
    # given as strings are read.
    raw = fixture("v2_doc_viewjson_page3.jsonc")
    with pytest.raises(FormatError, match="not DNAS 2 listener JSON"):
        parse_dnas2_listeners_json(raw)
    text = raw.decode()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    text = re.sub(r'"\n(\s*")', r'",\n\1', text)
    assert listeners(parse_dnas2_listeners_json(text.encode())) == [DOC_LISTENER]


def test_every_fixture_is_covered() -> None:
    assert {path.name for path in FIXTURES.iterdir()} == {
        "v1_admin_viewxml_full.xml",
        "v2_admin_viewxml_page1_counts.xml",
        "v2_doc_viewjson_page3.jsonc",
        "v2_doc_viewxml_page3.xml",
        "v2_viewjson_page3_from_dnas_source.json",
        "v2_viewxml_page3_from_dnas_source.xml",
    }


# -- tolerance -----------------------------------------------------------------------------------


def test_json_tolerates_strings_missing_keys_and_odd_values() -> None:
    body = (
        b'[{"hostname":"192.0.2.1","useragent":"A\\/1","connecttime":"60","uid":"010157"},'
        b'{"uid":7},'
        b'{"hostname":"192.0.2.3","connecttime":-5,"uid":8,"referer":null,"xff":12},'
        b'{"hostname":"192.0.2.4","connecttime":1700000000,"uid":9.0},'
        b'{"hostname":"192.0.2.5","connecttime":12.7,"uid":10},'
        b'{"hostname":"no uid"},{"uid":true},{"uid":"x"},{"uid":-3}]'
    )
    assert listeners(parse_dnas2_listeners_json(body)) == [
        Listener("10157", "192.0.2.1", "A/1", 60),
        Listener("7", "", "", 0),
        Listener("8", "192.0.2.3", "", 0, "", "12"),
        Listener("9", "192.0.2.4", "", 0),
        Listener("10", "192.0.2.5", "", 12),
    ]


def test_json_decodes_bad_utf8_and_control_characters() -> None:
    body = b'\xef\xbb\xbf[{"hostname":"192.0.2.1","useragent":"Caf\xe9\tPlayer","uid":1}]'
    assert listeners(parse_dnas2_listeners_json(body)) == [
        Listener("1", "192.0.2.1", "Caf\ufffd\tPlayer", 0)
    ]


def test_empty_listener_lists() -> None:
    assert listeners(parse_dnas2_listeners_json(b"[]")) == []
    empty_xml = b"<SHOUTCASTSERVER><LISTENERS/></SHOUTCASTSERVER>"
    assert listeners(parse_dnas2_listeners_xml(empty_xml)) == []


def test_xml_skips_listeners_without_uid_and_clamps_times() -> None:
    body = (
        b"<SHOUTCASTSERVER><LISTENERS>"
        b"<LISTENER><HOSTNAME>a</HOSTNAME><CONNECTTIME>5</CONNECTTIME></LISTENER>"
        b"<LISTENER><HOSTNAME>b</HOSTNAME><CONNECTTIME>-1</CONNECTTIME><UID>0042</UID></LISTENER>"
        b"<LISTENER><HOSTNAME>c</HOSTNAME><CONNECTTIME>%d</CONNECTTIME><UID>43</UID></LISTENER>"
        b"</LISTENERS></SHOUTCASTSERVER>" % (MAX_CONNECT_TIME + 1)
    )
    assert listeners(parse_dnas2_listeners_xml(body)) == [
        Listener("42", "b", "", 0),
        Listener("43", "c", "", 0),
    ]


def test_dnas1_connect_time_as_clock_time() -> None:
    body = (
        b"<SHOUTCASTSERVER><CURRENTLISTENERS>1</CURRENTLISTENERS><LISTENERS><LISTENER>"
        b"<HOSTNAME>h</HOSTNAME><USERAGENT>u</USERAGENT><CONNECTTIME>1:02:03</CONNECTTIME>"
        b"<UID>5</UID></LISTENER><LISTENER><HOSTNAME>i</HOSTNAME><CONNECTTIME>02:03</CONNECTTIME>"
        b"<UID>6</UID></LISTENER></LISTENERS></SHOUTCASTSERVER>"
    )
    status = parse_dnas1_status(body)
    assert (status.version, status.current_listeners) == ("", 1)
    assert listeners(status.listeners) == [
        Listener("5", "h", "u", 3723),
        Listener("6", "i", "", 123),
    ]


# -- statistics and uptime -----------------------------------------------------------------------

STATISTICS = (
    b'{"totalstreams":3,"activestreams":2,"currentlisteners":7,"peaklisteners":9,'
    b'"maxlisteners":512,"uniquelisteners":6,"averagetime":140,'
    b'"version":"2.6.1.777 (posix(linux x64))","streams":['
    b'{"id":1,"currentlisteners":5,"peaklisteners":6,"maxlisteners":512,"uniquelisteners":4,'
    b'"averagetime":100,"servergenre":"Jazz","serverurl":"http:\\/\\/radio.example","servertitle":'
    b'"Radio Jazz","songtitle":"Tune","streamhits":50,"streamstatus":1,"backupstatus":0,'
    b'"streamlisted":0,"streamlistederror":200,"streampath":"\\/stream","streamuptime":3000,'
    b'"bitrate":"128","samplerate":"44100","content":"audio\\/mpeg"},'
    b'{"id":2,"currentlisteners":2,"servertitle":"Talk","streamstatus":1,"streampath":"live",'
    b'"streamuptime":20},'
    b'{"id":3,"currentlisteners":0,"servertitle":"","streamstatus":0}]}'
)


def test_statistics() -> None:
    statistics = parse_dnas2_statistics(STATISTICS)
    assert statistics.version == "2.6.1.777 (posix(linux x64))"
    assert statistics.streams == {
        1: Dnas2Stream(1, "/stream", "/stream", 5, "Radio Jazz", "Tune", True),
        2: Dnas2Stream(2, "/live", "/live", 2, "Talk", "", True),
        3: Dnas2Stream(3, "/stream/3/", "", 0, "", "", False),
    }


def test_statistics_without_streams_and_with_shared_paths() -> None:
    bare = parse_dnas2_statistics(b'{"totalstreams":0,"version":"2.5.5.733 (win32)"}')
    assert (bare.version, bare.streams) == ("2.5.5.733 (win32)", {})
    shared = parse_dnas2_statistics(
        b'{"version":"2","streams":[{"id":1,"streampath":"\\/"},{"id":2,"streampath":"\\/"},'
        b'{"id":4,"streampath":"\\/four"},{"streampath":"\\/no-id"}]}'
    )
    assert {sid: stream.mount for sid, stream in shared.streams.items()} == {
        1: "/stream/1/",
        2: "/stream/2/",
        4: "/four",
    }


def test_uptime() -> None:
    body = b'{"total":0,"sent":0,"recv":0,"time":86400,"clientsent":{"total":0,"v2":0}}'
    assert parse_dnas2_uptime(body) == 86400
    assert parse_dnas2_uptime(b'{"time":"12"}') == 12


# -- bad input -----------------------------------------------------------------------------------

LOGIN_PAGE = (
    b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Shoutcast Administrator</title>'
    b"</head><body>Login</body></html>"
)
UNAUTHORIZED = b"<html><head>Unauthorized<title>Shoutcast Administrator</title></head></html>"
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE SHOUTCASTSERVER [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b"<SHOUTCASTSERVER><LISTENERS><LISTENER><HOSTNAME>&c;</HOSTNAME><UID>1</UID></LISTENER>"
    b"</LISTENERS></SHOUTCASTSERVER>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE SHOUTCASTSERVER [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<SHOUTCASTSERVER><VERSION>&x;</VERSION><LISTENERS/></SHOUTCASTSERVER>"
)

XML_DOCUMENT = b'<?xml version="1.0"?><SHOUTCASTSERVER/>'

BAD_JSON = {
    "empty": (b"", "empty answer"),
    "blank": (b" \r\n", "empty answer"),
    "login page": (LOGIN_PAGE, "an HTML page"),
    "401 body": (UNAUTHORIZED, "an HTML page"),
    "xml": (XML_DOCUMENT, "XML or HTML"),
    "truncated": (b'[{"hostname":"1.2.3.4","uid":5', "not DNAS 2 listener JSON"),
    "object": (b'{"uid":5}', "a JSON dict, expected an array"),
    "string": (b'"listeners"', "a JSON str"),
    "entries not objects": (b"[1,2]", "an entry is a JSON int"),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000, "not DNAS 2 listener JSON"),
}


@pytest.mark.parametrize(("body", "message"), BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_json_listings(body: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=re.escape(message)):
        parse_dnas2_listeners_json(body)


BAD_XML = {
    "empty": (b"", "empty"),
    "login page": (LOGIN_PAGE, "an HTML page"),
    "401 body": (UNAUTHORIZED, "an HTML page"),
    "json": (b"[]", "not"),
    "truncated": (b"<SHOUTCASTSERVER><LISTENERS><LISTENER><UID>5</UID>", "not"),
    "wrong root": (b"<icestats><source mount='/a'/></icestats>", "root element <icestats>"),
    "entity bomb": (BOMB, "document type declaration"),
    "external entity": (EXTERNAL, "document type declaration"),
}


@pytest.mark.parametrize(("body", "message"), BAD_XML.values(), ids=BAD_XML.keys())
@pytest.mark.parametrize("parse", [parse_dnas2_listeners_xml, parse_dnas1_status])
def test_bad_xml(parse: Callable[[bytes], object], body: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=re.escape(message)):
        parse(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        LOGIN_PAGE,
        b'{"totalstreams":1,"streams":[{"id":1',
        b"[]",
        b'{"other":1}',
        b'{"version":"2","streams":{"id":1}}',
        b'{"version":"2","streams":[1]}',
        XML_DOCUMENT,
    ],
    ids=["empty", "html", "truncated", "array", "unrelated", "streams object", "stream", "xml"],
)
def test_bad_statistics(body: bytes) -> None:
    with pytest.raises(FormatError):
        parse_dnas2_statistics(body)


@pytest.mark.parametrize(
    "body",
    [b"", LOGIN_PAGE, b"[]", b'{"total":0}', b'{"time":-1}', b'{"time":"soon"}', b'{"time":'],
    ids=["empty", "html", "array", "no time", "negative", "text", "truncated"],
)
def test_bad_uptime(body: bytes) -> None:
    with pytest.raises(FormatError):
        parse_dnas2_uptime(body)
