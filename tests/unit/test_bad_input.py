"""Bad input for every parser of server answers and access-log lines.

The contract: whatever a server or a log hands over, a parser either returns a sane result
(stated per case below) or raises its module's `FormatError`; access-log parsers return None
(or `Skip.BAD`). Never another exception, never a hang, never an entity expanded, never a file
read or a connection made because a document asked for it.
"""

from __future__ import annotations

import calendar
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from audimeter.events import SessionKeptAlive
from audimeter.observations import (
    Listener,
    ListenerLeft,
    ListenerList,
    ListenerTable,
    MountPolled,
    Observation,
    Tick,
    decode_all,
)
from audimeter.sessionizer import Sessionizer
from audimeter.sources.accesslog import (
    LogEntry,
    Skip,
    parse_icecast_line,
    parse_shoutcast_line,
    scan_icecast_line,
    scan_shoutcast_line,
)
from audimeter.sources.icecast import ServerStats, parse_listclients, parse_stats
from audimeter.sources.shoutcast import (
    MAX_CONNECT_TIME,
    Dnas2Statistics,
    Dnas2Stream,
    parse_dnas1_status,
    parse_dnas2_listeners_json,
    parse_dnas2_listeners_xml,
    parse_dnas2_statistics,
    parse_dnas2_uptime,
)
from audimeter.sources.xml import FormatError

pytestmark = pytest.mark.timeout(30)

IP = "203.0.113.7"
OTHER_IP = "198.51.100.23"
VLC = "VLC/3.0.18 LibVLC/3.0.18"
GOOD = Listener("8", OTHER_IP, "Good/1.0", 5)
"""The second listener of every listing below, which must survive whatever the first one does."""
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>"
    b'<form method="post" action="/login"><input type="password" name=password>'
    b"<input type=submit value=Login></form></body></html>\n"
)
XHTML_LOGIN_PAGE = (
    b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Login'
    b"</title></head><body><p>Please log in</p></body></html>"
)


# -- one listing, four formats -------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """One listener as raw bytes, spliced into a document unescaped: XML markup, JSON tokens."""

    uid: bytes = b"7"
    ip: bytes = IP.encode()
    ua: bytes = VLC.encode()
    connected: bytes = b"5"


GOOD_FIELDS = Fields(b"8", OTHER_IP.encode(), b"Good/1.0", b"5")


@dataclass(frozen=True)
class Format:
    name: str
    render: Callable[[Sequence[Fields], bytes], bytes]
    """(listeners, prolog) → the document; the prolog replaces the XML declaration."""
    parse: Callable[[bytes], list[Listener]]
    declaration: bytes
    root: bytes
    """The root element's name, for document type declarations."""


def _check_table(table: ListenerTable) -> list[Listener]:
    listeners = decode_all(table)
    assert list(table.client_ids) == [listener.client_id for listener in listeners]
    return listeners


def _icecast_render(listeners: Sequence[Fields], prolog: bytes) -> bytes:
    body = b"".join(
        b"<listener><IP>%s</IP><UserAgent>%s</UserAgent><Connected>%s</Connected><ID>%s</ID>"
        b"</listener>" % (f.ip, f.ua, f.connected, f.uid)
        for f in listeners
    )
    return (
        prolog + b'<icestats><source mount="/live.mp3"><Listeners>%d</Listeners>%s</source>'
        b"</icestats>\n" % (len(listeners), body)
    )


def _icecast_parse(body: bytes) -> list[Listener]:
    mount, table = parse_listclients(body)
    assert mount == "/live.mp3"
    return _check_table(table)


def _dnas_xml_listeners(listeners: Sequence[Fields]) -> bytes:
    return b"".join(
        b"<LISTENER><HOSTNAME>%s</HOSTNAME><USERAGENT>%s</USERAGENT><CONNECTTIME>%s</CONNECTTIME>"
        b"<UID>%s</UID><TYPE>2052</TYPE></LISTENER>" % (f.ip, f.ua, f.connected, f.uid)
        for f in listeners
    )


def _dnas2_xml_render(listeners: Sequence[Fields], prolog: bytes) -> bytes:
    return (
        prolog
        + b"<SHOUTCASTSERVER><LISTENERS>"
        + _dnas_xml_listeners(listeners)
        + b"</LISTENERS></SHOUTCASTSERVER>"
    )


def _dnas1_render(listeners: Sequence[Fields], prolog: bytes) -> bytes:
    return (
        prolog + b"<SHOUTCASTSERVER><CURRENTLISTENERS>%d</CURRENTLISTENERS><VERSION>1.9.8</VERSION>"
        b"<LISTENERS>%s</LISTENERS></SHOUTCASTSERVER>"
        % (len(listeners), _dnas_xml_listeners(listeners))
    )


def _dnas1_parse(body: bytes) -> list[Listener]:
    status = parse_dnas1_status(body)
    assert status.version == "1.9.8"
    return _check_table(status.listeners)


def _json_render(listeners: Sequence[Fields], prolog: bytes) -> bytes:
    entries = b",".join(
        b'{"hostname":"%s","useragent":"%s","connecttime":%s,"uid":%s,"type":2052,'
        b'"referer":"","xff":""}' % (f.ip, f.ua, f.connected, f.uid)
        for f in listeners
    )
    return prolog + b"[" + entries + b"]"


ICECAST = Format(
    "icecast",
    _icecast_render,
    _icecast_parse,
    b'<?xml version="1.0"?>\n',
    b"icestats",
)
DNAS2_XML = Format(
    "dnas2-xml",
    _dnas2_xml_render,
    lambda body: _check_table(parse_dnas2_listeners_xml(body)),
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>',
    b"SHOUTCASTSERVER",
)
DNAS1 = Format(
    "dnas1",
    _dnas1_render,
    _dnas1_parse,
    b'<?xml version="1.0" encoding="utf-8"?>\n',
    b"SHOUTCASTSERVER",
)
DNAS2_JSON = Format(
    "dnas2-json",
    _json_render,
    lambda body: _check_table(parse_dnas2_listeners_json(body)),
    b"",
    b"",
)
XML_FORMATS = [ICECAST, DNAS2_XML, DNAS1]
FORMATS = [*XML_FORMATS, DNAS2_JSON]


def document(fmt: Format, first: Fields = Fields(), prolog: bytes | None = None) -> bytes:
    """A listing of `first` and the good listener."""
    return fmt.render([first, GOOD_FIELDS], fmt.declaration if prolog is None else prolog)


def by_name(formats: Sequence[Format]) -> dict[str, Format]:
    return {fmt.name: fmt for fmt in formats}


def test_the_documents_parse() -> None:
    for fmt in FORMATS:
        assert fmt.parse(document(fmt)) == [Listener("7", IP, VLC, 5), GOOD], fmt.name


# -- malformed, truncated, not what was asked for ------------------------------------------------

NOT_A_LISTING = {
    "empty": b"",
    "whitespace": b" \r\n\t ",
    "binary": bytes(range(256)),
    "html login page": LOGIN_PAGE,
    "html login page after blank lines": b"\r\n\r\n" + LOGIN_PAGE,
    "xhtml login page": XHTML_LOGIN_PAGE,
    "plain text refusal": b"You need to authenticate\r\n",
    "json object": b'{"error": "unauthorised"}',
    "json string": b'"nobody"',
    "json array of numbers": b"[1, 2, 3]",
    "xml of another server": b"<?xml version='1.0'?><rss><channel/></rss>",
    "unclosed element": b"<icestats><source mount='/a'><listener><ID>1</ID></source></icestats>",
    "two roots": b"<icestats/><icestats/>",
    "nul bytes": b"\x00" * 64,
    "bom then nothing": b"\xef\xbb\xbf",
}


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("body", NOT_A_LISTING.values(), ids=NOT_A_LISTING.keys())
def test_what_is_not_a_listing_is_a_format_error(fmt: Format, body: bytes) -> None:
    with pytest.raises(FormatError):
        fmt.parse(body)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_an_html_login_page_is_named_as_such(fmt: Format) -> None:
    with pytest.raises(FormatError) as caught:
        fmt.parse(LOGIN_PAGE)
    expected = "not Icecast XML" if fmt is ICECAST else "an HTML page"
    assert expected in str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize(
    "first", [Fields(), Fields(ua=b"VLC\xff\x01/3.0")], ids=["good", "bytes to replace"]
)
def test_a_truncated_listing_never_parses_to_another_listing(fmt: Format, first: Fields) -> None:
    """Every prefix of a listing is a FormatError, or (only the trailing newline cut) the same."""
    whole = document(fmt, first)
    expected = fmt.parse(whole)
    for end in range(len(whole)):
        try:
            result = fmt.parse(whole[:end])
        except FormatError:
            continue
        assert result == expected, whole[:end]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_listing_with_a_listener_cut_short_is_a_format_error(fmt: Format) -> None:
    whole = document(fmt)
    with pytest.raises(FormatError):
        fmt.parse(whole[: whole.index(b"Good")])


# -- entities, document types, external resources ------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """A secret file and a listening port that a parser must never read or connect to."""

    secret: Path
    dtd: Path
    port: int
    sock: socket.socket

    MARKER = "CANARY-c4e1b7"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _ = self.sock.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Canary]:
    secret = tmp_path / "secret.txt"
    secret.write_text(Canary.MARKER + "\n")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(
        f'<!ENTITY ua "{Canary.MARKER}-dtd">\n<!ENTITY file SYSTEM "{secret.as_uri()}">\n'
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield Canary(secret, dtd, sock.getsockname()[1], sock)


def billion_laughs(root: bytes) -> tuple[bytes, bytes]:
    entities = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (level, (b"&lol%d;" % (level - 1) if level else b"&lol;") * 10)
        for level in range(10)
    )
    return b"<!DOCTYPE %s [%s]>" % (root, entities), b"&lol9;"


def quadratic_blowup(root: bytes) -> tuple[bytes, bytes]:
    return b'<!DOCTYPE %s [<!ENTITY a "%s">]>' % (root, b"x" * 50_000), b"&a;" * 5_000


Attack = Callable[[bytes, Canary], tuple[bytes, bytes]]
"""(root element, canary) → (document type declaration, user agent markup)."""

ATTACKS: dict[str, Attack] = {
    "billion laughs": lambda root, c: billion_laughs(root),
    "quadratic blowup": lambda root, c: quadratic_blowup(root),
    "external entity file://": lambda root, c: (
        b'<!DOCTYPE %s [<!ENTITY x SYSTEM "%s">]>' % (root, c.secret.as_uri().encode()),
        b"&x;",
    ),
    "external entity http://127.0.0.1": lambda root, c: (
        b'<!DOCTYPE %s [<!ENTITY x SYSTEM "http://127.0.0.1:%d/x">]>' % (root, c.port),
        b"&x;",
    ),
    "parameter entity http://127.0.0.1": lambda root, c: (
        b'<!DOCTYPE %s [<!ENTITY %% p SYSTEM "http://127.0.0.1:%d/p.dtd"> %%p;]>' % (root, c.port),
        b"ua",
    ),
    "external dtd file://": lambda root, c: (
        b'<!DOCTYPE %s SYSTEM "%s">' % (root, c.dtd.as_uri().encode()),
        b"&ua;&file;",
    ),
    "external dtd http://127.0.0.1": lambda root, c: (
        b'<!DOCTYPE %s SYSTEM "http://127.0.0.1:%d/evil.dtd">' % (root, c.port),
        b"&ua;",
    ),
    "internal entity": lambda root, c: (b'<!DOCTYPE %s [<!ENTITY v "Evil/1.0">]>' % root, b"&v;"),
    "plain doctype": lambda root, c: (b"<!DOCTYPE %s>" % root, b"VLC"),
    "xinclude file://": lambda root, c: (
        b"",
        b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="%s" parse="text"/>'
        % c.secret.as_uri().encode(),
    ),
}


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_entities_and_external_resources_are_never_followed(
    fmt: Format, attack: Attack, canary: Canary
) -> None:
    """Icecast: a document type is accepted but no entity is expanded (the user agent comes out
    blank, or the amplification limit makes it a FormatError). SHOUTcast: any document type is a
    FormatError, since DNAS never writes one."""
    doctype, ua = attack(fmt.root, canary)
    body = document(fmt, Fields(ua=ua), fmt.declaration + doctype)
    try:
        listeners = fmt.parse(body)
    except FormatError:
        listeners = None
    assert canary.connections() == 0
    if doctype and fmt is not ICECAST:
        assert listeners is None
    if listeners is not None:
        assert Canary.MARKER not in repr(listeners)
        assert listeners[1] == GOOD
        assert len(listeners[0].user_agent) <= len("VLC"), "an entity was expanded"


def test_an_entity_in_an_icecast_id_blanks_it_and_the_listener_is_left_out() -> None:
    doctype = b'<!DOCTYPE icestats [<!ENTITY n "9">]>'
    body = document(ICECAST, Fields(uid=b"&n;"), ICECAST.declaration + doctype)
    assert ICECAST.parse(body) == [GOOD]


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
def test_a_deeply_nested_document_is_a_format_error(fmt: Format) -> None:
    """libxml2's depth limit (256 without huge_tree) applies; nothing recurses in Python."""
    nested = b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(FormatError, match="depth"):
        fmt.parse(document(fmt, Fields(ua=nested)))


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'[{"uid":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}]"],
    ids=["arrays", "inside an entry"],
)
def test_deeply_nested_json_is_a_format_error(body: bytes) -> None:
    with pytest.raises(FormatError, match="nested too deeply"):
        parse_dnas2_listeners_json(body)


def test_nested_json_values_are_blank() -> None:
    nested = b"[" * 200 + b"]" * 200
    body = b'[{"uid":7,"hostname":"%s","useragent":%s,"connecttime":{"a":%s}},%s]' % (
        IP.encode(),
        nested,
        nested,
        _json_render([GOOD_FIELDS], b"")[1:-1],
    )
    assert DNAS2_JSON.parse(body) == [Listener("7", IP, "", 0), GOOD]


# -- absurd values -------------------------------------------------------------------------------

BIG = str(10**30)
DIGITS = b"9" * 5_000
"""More digits than int() converts (sys.get_int_max_str_digits(), 4300 by default)."""
LONG_UA = "Player/1.0 " + "x" * 100_000


@dataclass(frozen=True)
class Absurd:
    fields: Fields
    """As JSON tokens; the XML formats get the text of string tokens."""
    icecast: Listener | None
    """What Icecast's parser makes of the first listener (None: left out)."""
    dnas_xml: Listener | None
    """What the DNAS 2 XML and DNAS 1 parsers make of it."""
    dnas_json: Listener | None = None
    """What the DNAS 2 JSON parser makes of it, when not the same as `dnas_xml`."""


def just(connected: int = 5, uid: str = "7", ua: str = VLC, ip: str = IP) -> Listener:
    return Listener(uid, ip, ua, connected)


ABSURD = {
    "negative Connected: 0 (Icecast: by the sessionizer)": Absurd(
        Fields(connected=b"-5"), just(0), just(0)
    ),
    "Connected not a number: 0": Absurd(Fields(connected=b'"soon"'), just(0), just(0)),
    "Connected a fraction": Absurd(Fields(connected=b"5.5"), just(0), just(0), just(5)),
    "Connected in h:mm:ss (DNAS 1)": Absurd(Fields(connected=b'"1:02:03"'), just(0), just(3723)),
    "Connected of ten years and a second: just connected": Absurd(
        Fields(connected=str(MAX_CONNECT_TIME + 1).encode()), just(0), just(0)
    ),
    "Connected of 57 years (a zero start time): just connected": Absurd(
        Fields(connected=b"1800000000"), just(0), just(0)
    ),
    "Connected of 10**12: just connected": Absurd(
        Fields(connected=b"1000000000000"), just(0), just(0)
    ),
    "Connected of 2**64 - 5 (Icecast's unsigned now - con_time after a clock step back)": Absurd(
        Fields(connected=str(2**64 - 5).encode()), just(0), just(0)
    ),
    "Connected of 10**30 h:mm:ss: just connected (DNAS)": Absurd(
        Fields(connected=b'"%s:00:00"' % BIG.encode()), just(0), just(0)
    ),
    "id of 10**30 kept": Absurd(Fields(uid=BIG.encode()), just(uid=BIG), just(uid=BIG)),
    "id of 5000 digits: kept by Icecast, left out by DNAS": Absurd(
        Fields(uid=b'"%s"' % DIGITS), just(uid=DIGITS.decode()), None
    ),
    "Connected of 5000 digits: 0": Absurd(Fields(connected=b'"%s"' % DIGITS), just(0), just(0)),
    "Connected of 5000 digits h:mm:ss: 0": Absurd(
        Fields(connected=b'"%s:00:00"' % DIGITS), just(0), just(0)
    ),
    "empty id: left out": Absurd(Fields(uid=b'""'), None, None),
    "blank id: kept by Icecast, left out by DNAS": Absurd(Fields(uid=b'" "'), just(uid=" "), None),
    "negative id: kept by Icecast, left out by DNAS": Absurd(
        Fields(uid=b"-1"), just(uid="-1"), None
    ),
    "id not a number: kept by Icecast, left out by DNAS": Absurd(
        Fields(uid=b'"x1"'), just(uid="x1"), None
    ),
    "id with leading zeros: the number for DNAS": Absurd(
        Fields(uid=b'"0007"'), just(uid="0007"), just(uid="7")
    ),
    "100,000-character user agent kept whole": Absurd(
        Fields(ua=LONG_UA.encode()), just(ua=LONG_UA), just(ua=LONG_UA)
    ),
    "empty user agent and address": Absurd(
        Fields(ua=b"", ip=b""), just(ua="", ip=""), just(ua="", ip="")
    ),
}


def _xml_fields(fields: Fields) -> Fields:
    """JSON tokens as XML text: `"x"` → `x`."""
    return replace(fields, uid=fields.uid.strip(b'"'), connected=fields.connected.strip(b'"'))


def as_counted(listeners: list[Listener]) -> list[Listener]:
    """Listeners as the sessionizer counts them: a negative or absurd Connected (Icecast's parser
    passes it on, the SHOUTcast parsers do not) is just connected."""
    return [
        listener._replace(connected=0)
        if not 0 <= listener.connected <= MAX_CONNECT_TIME
        else listener
        for listener in listeners
    ]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("case", ABSURD.values(), ids=ABSURD.keys())
def test_absurd_values(fmt: Format, case: Absurd) -> None:
    if fmt is ICECAST:
        expected = case.icecast
    elif fmt is DNAS2_JSON:
        expected = case.dnas_json or case.dnas_xml
    else:
        expected = case.dnas_xml
    fields = case.fields if fmt is DNAS2_JSON else _xml_fields(case.fields)
    listeners = as_counted(fmt.parse(document(fmt, fields)))
    assert listeners == ([expected] if expected else []) + [GOOD]


@pytest.mark.parametrize(
    "connected", [-5, MAX_CONNECT_TIME + 1, 1_800_000_000, 10**12, 2**64 - 5], ids=str
)
def test_an_absurd_icecast_connected_starts_the_session_at_the_poll(connected: int) -> None:
    """Icecast prints Connected as an unsigned now - connect time: a clock step back on its host
    makes it about 2**64. Counted from then, the session would need a catch-up keep-alive for
    every visit_length of 584 billion years."""
    _, table = parse_listclients(document(ICECAST, Fields(connected=str(connected).encode())))
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=120, catchup_gap=1799)
    events = sessionizer.observe(MountPolled("main", 1_000_000, "i", "/live.mp3", table))
    assert [(type(e).__name__, e.session.client_id, e.at) for e in events] == [
        ("SessionStarted", "7", 1_000_000),
        ("SessionStarted", "8", 999_995),
    ]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_duplicate_ids_are_passed_on(fmt: Format) -> None:
    """Both listeners come out under one id; the sessionizer counts it once (see
    test_a_duplicate_id_in_a_listing_is_kept_alive_once)."""
    body = fmt.render([Fields(uid=b"8"), GOOD_FIELDS], fmt.declaration)
    assert fmt.parse(body) == [Listener("8", IP, VLC, 5), GOOD]


def test_json_numbers_out_of_range() -> None:
    body = _json_render(
        [
            Fields(uid=b"1e400", connected=b"-1e400"),
            Fields(uid=b"NaN", connected=b"Infinity"),
            Fields(uid=b"true", connected=b"1e300"),
            Fields(uid=b"3.9", connected=b"[5]"),
            GOOD_FIELDS,
        ],
        b"",
    )
    assert DNAS2_JSON.parse(body) == [Listener("3", IP, VLC, 0), GOOD]


# -- encodings -----------------------------------------------------------------------------------

BAD_UTF8 = b"VLC\x80\xe9\xff/3.0"


def latin1(fmt: Format, declared: bool) -> bytes:
    ua = "Lecteur café/1.0 ÿ".encode("latin-1")
    if fmt is DNAS2_JSON:
        return document(fmt, Fields(ua=ua))
    prolog = b'<?xml version="1.0" encoding="ISO-8859-1"?>' if declared else b""
    return document(fmt, Fields(ua=ua), prolog)


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
def test_a_declared_latin1_document_is_decoded(fmt: Format) -> None:
    assert fmt.parse(latin1(fmt, declared=True))[0].user_agent == "Lecteur café/1.0 ÿ"


def test_json_with_bytes_that_are_not_utf8_replaces_them() -> None:
    listeners = DNAS2_JSON.parse(document(DNAS2_JSON, Fields(ua=BAD_UTF8)))
    assert listeners == [Listener("7", IP, "VLC\ufffd\ufffd\ufffd/3.0", 5), GOOD]
    listeners = DNAS2_JSON.parse(latin1(DNAS2_JSON, declared=False))
    assert listeners[0].user_agent == "Lecteur caf\ufffd/1.0 \ufffd"


def test_json_control_characters_and_escapes() -> None:
    ua = b"a\x01b\\u0000c\\/d\\u00e9"
    assert DNAS2_JSON.parse(document(DNAS2_JSON, Fields(ua=ua)))[0].user_agent == "a\x01b\x00c/dé"


def test_icecast_2_4_4_escapes_bad_user_agents_itself() -> None:
    """A listing captured from Debian's icecast2 2.4.4 (libxml2 2.9.14) with listeners whose
    User-Agent headers were b"caf\\xe9 player", b"\\xe9t\\xe9", b"x\\x80y", b"ctl\\x01x" and
    b"tab\\there": libxml2 writes invalid UTF-8 as (wrong) character references and blanks a value
    with control characters, so the real server's listing always parses."""
    captured = (
        b'<?xml version="1.0"?>\n<icestats><source mount="/live.mp3"><Listeners>5</Listeners>'
        b"<listener><IP>127.0.0.1</IP><UserAgent>caf&#x9830;layer</UserAgent><Connected>2"
        b"</Connected><ID>3</ID></listener><listener><IP>127.0.0.1</IP><UserAgent>&#x9D29;"
        b"</UserAgent><Connected>2</Connected><ID>4</ID></listener><listener><IP>127.0.0.1</IP>"
        b"<UserAgent></UserAgent><Connected>2</Connected><ID>5</ID></listener><listener>"
        b"<IP>127.0.0.1</IP><UserAgent></UserAgent><Connected>1</Connected><ID>6</ID></listener>"
        b"<listener><IP>127.0.0.1</IP><UserAgent>tab\there</UserAgent><Connected>1</Connected>"
        b"<ID>11</ID></listener></source></icestats>\n"
    )
    assert [listener.user_agent for listener in ICECAST.parse(captured)] == [
        "caf\u9830layer",
        "\u9d29",
        "",
        "",
        "tab\there",
    ]


RAW_BYTES = {
    "bytes 0x80-0xff in a user agent": (
        lambda fmt: document(fmt, Fields(ua=BAD_UTF8)),
        "VLC\ufffd\ufffd\ufffd/3.0",
    ),
    "latin-1 without a declaration": (
        lambda fmt: latin1(fmt, declared=False),
        "Lecteur caf\ufffd/1.0 \ufffd",
    ),
}


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize(("make", "user_agent"), RAW_BYTES.values(), ids=RAW_BYTES.keys())
def test_one_user_agent_with_bytes_that_are_not_utf8_spoils_nothing_else(
    fmt: Format, make: Callable[[Format], bytes], user_agent: str
) -> None:
    """Debian's Icecast 2.4.4 escapes such bytes itself (see
    test_icecast_2_4_4_escapes_bad_user_agents_itself), DNAS passes client strings through; the
    XML parsers replace them, as the JSON parser does."""
    assert fmt.parse(make(fmt)) == [Listener("7", IP, user_agent, 5), GOOD]


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
def test_one_user_agent_with_a_control_character_spoils_nothing_else(fmt: Format) -> None:
    listeners = fmt.parse(document(fmt, Fields(ua=b"VLC\x01\x1b/3.0")))
    assert listeners == [Listener("7", IP, "VLC\ufffd\ufffd/3.0", 5), GOOD]


UNREADABLE = {
    "a latin-1 letter": (b"caf\xe9 player", "caf\ufffd player"),
    "a UTF-8 sequence cut short": (b"caf\xc3", "caf\ufffd"),
    "good UTF-8 next to a bad byte: kept": (b"caf\xc3\xa9 \xff", "caf\u00e9 \ufffd"),
    "an encoded surrogate": (b"a\xed\xa0\x80b", "a\ufffd\ufffd\ufffdb"),
    "an overlong '<': no markup": (b"a\xc0\xbcb", "a\ufffd\ufffdb"),
    "a NUL": (b"a\x00b", "a\ufffdb"),
    "escape and form feed": (b"a\x1b\x0cb", "a\ufffd\ufffdb"),
    "U+FFFE and U+FFFF": (b"a\xef\xbf\xbe\xef\xbf\xbfb", "a\ufffd\ufffdb"),
    "DEL and C1 controls, which XML allows: kept": (b"a\x01\x7f\xc2\x85b", "a\ufffd\x7f\x85b"),
}


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize(("raw", "text"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_what_xml_cannot_hold_is_replaced_in_its_field_only(
    fmt: Format, raw: bytes, text: str
) -> None:
    assert fmt.parse(document(fmt, Fields(ua=raw))) == [Listener("7", IP, text, 5), GOOD]
    assert fmt.parse(document(fmt, Fields(ip=raw))) == [Listener("7", text, VLC, 5), GOOD]


@pytest.mark.parametrize("fmt", XML_FORMATS, ids=lambda f: f.name)
def test_a_document_in_another_encoding_is_never_read_as_utf8(fmt: Format) -> None:
    """Its bytes stand for other characters, so it is not repaired: a control character in it
    is a FormatError, as before, rather than its é misread as "ï¿½"."""
    body = latin1(fmt, declared=True).replace(b"/1.0", b"/1.0\x01")
    with pytest.raises(FormatError):
        fmt.parse(body)


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udcff", b"\\udbff\\u0041"])
def test_a_lone_surrogate_in_json_is_replaced(escape: bytes) -> None:
    """json.loads would keep it, and the user agent could not be encoded as UTF-8: audimeter run
    would crash in Pipeline.feed (RequestMapper, or Store.commit), again after every restart."""
    listeners = DNAS2_JSON.parse(document(DNAS2_JSON, Fields(ua=b"VLC" + escape)))
    assert listeners[1] == GOOD
    listeners[0].user_agent.encode("utf-8")


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (b"\\ud800", "\ufffd"),
        (b"a\\uDBFFb\\uDC00c", "a\ufffdb\ufffdc"),
        (b"\\ud83d\\ude00 \\uD83D\\uDE00", "\U0001f600 \U0001f600"),
        (b"\\ud83d\\ud83d\\ude00", "\ufffd\U0001f600"),
        (b"\\ude00\\ud83d", "\ufffd\ufffd"),
        (b"\\\\ud800", "\\ud800"),
        (b"\\\\\\ud800", "\\\ufffd"),
        (b"\\\\\\ud83d\\ude00", "\\\U0001f600"),
        (b"\\u00e9\\ufffd", "\u00e9\ufffd"),
    ],
    ids=[
        "lone high",
        "upper-case hex",
        "pairs",
        "high before a pair",
        "low before high",
        "escaped backslash",
        "escaped backslash, then a lone escape",
        "escaped backslash, then a pair",
        "other escapes",
    ],
)
def test_json_surrogate_escapes(ua: bytes, expected: str) -> None:
    assert DNAS2_JSON.parse(document(DNAS2_JSON, Fields(ua=ua)))[0].user_agent == expected


# -- numbers Python will not convert ---------------------------------------------------------------


@pytest.mark.parametrize(
    "parse_body",
    [
        lambda: parse_dnas2_listeners_json(document(DNAS2_JSON, Fields(uid=DIGITS))),
        lambda: parse_dnas2_listeners_json(document(DNAS2_JSON, Fields(connected=DIGITS))),
        lambda: parse_dnas2_statistics(b'{"version":"2.6","streams":[{"id":%s}]}' % DIGITS),
        lambda: parse_dnas2_uptime(b'{"time":%s}' % DIGITS),
    ],
    ids=["dnas2 json uid", "dnas2 json connecttime", "statistics id", "uptime"],
)
def test_a_json_number_too_long_to_convert_is_a_format_error(
    parse_body: Callable[[], object],
) -> None:
    """Not a ValueError: the pollers catch only FormatError, so the poll task would die and
    audimeter run stop. DNAS writes those numbers itself, so one this long spoils the answer."""
    with pytest.raises(FormatError, match=r" JSON \(a number too long to convert\)$"):
        parse_body()


def test_a_number_too_long_to_convert_as_text_is_absent() -> None:
    assert DNAS2_XML.parse(document(DNAS2_XML, Fields(uid=DIGITS))) == [GOOD]
    assert DNAS1.parse(document(DNAS1, Fields(connected=DIGITS)))[0].connected == 0
    status = parse_dnas1_status(
        DNAS1.render([GOOD_FIELDS], DNAS1.declaration).replace(
            b">1</CURRENT", b">%s</CURRENT" % DIGITS
        )
    )
    assert status.current_listeners == 1
    statistics = b'{"version":"2.6","streams":[{"id":"%s"},{"id":1,"currentlisteners":"%s"}]}'
    assert parse_dnas2_statistics(statistics % (DIGITS, DIGITS)).streams == {
        1: stream(1, "/stream/1/")
    }
    with pytest.raises(FormatError, match="no uptime"):
        parse_dnas2_uptime(b'{"time":"%s"}' % DIGITS)


def test_icecast_numbers_too_long_to_convert_count_as_zero() -> None:
    body = document(ICECAST, Fields(uid=DIGITS, connected=DIGITS))
    assert ICECAST.parse(body) == [Listener(DIGITS.decode(), IP, VLC, 0), GOOD]


# -- listings whose ids and details disagree -------------------------------------------------------


ODD_ICECAST_IDS = {
    "two ID elements: the first": (b"<ID>5</ID><ID>6</ID>", "5"),
    "ID and id: the ID": (b"<id>6</id><ID>5</ID>", "5"),
    "an empty ID and an id: the id": (b"<ID/><id>6</id>", "6"),
    "an empty ID first: none": (b"<ID/><ID>6</ID>", None),
    "text after a processing instruction": (b"<ID><?pi?>5</ID>", "5"),
    "text split by a processing instruction: the first part": (b"<ID>1<?pi?>2</ID>", "1"),
    "nothing but a processing instruction: none": (b"<ID><?pi?></ID>", None),
}
NEIGHBOURS = {
    "after a listener with an ID": b"<ID>8</ID>",
    "after a listener with an id": b"<id>8</id>",
    "after a listener without one": b"",
}


@pytest.mark.parametrize("neighbour", NEIGHBOURS.values(), ids=NEIGHBOURS.keys())
@pytest.mark.parametrize(
    ("markup", "expected"), ODD_ICECAST_IDS.values(), ids=ODD_ICECAST_IDS.keys()
)
def test_icecast_ids_match_their_listeners(
    markup: bytes, expected: str | None, neighbour: bytes
) -> None:
    """A listener's id is the first text in its first <ID>, or failing that in its first <id>;
    whether the listing's ids are read all at once or listener by listener, each stays with its
    listener. (Counting text nodes once paired the first listener's second id with the next.)"""
    body = (
        b'<icestats><source mount="/a"><listener><IP>10.0.0.2</IP>%s</listener>'
        b"<listener><IP>10.0.0.1</IP>%s</listener></source></icestats>" % (neighbour, markup)
    )
    _, table = parse_listclients(body)
    listeners = [Listener("8", "10.0.0.2", "", 0)] if neighbour else []
    if expected is not None:
        listeners.append(Listener(expected, "10.0.0.1", "", 0))
    assert _check_table(table) == listeners


def test_a_duplicate_id_in_a_listing_is_kept_alive_once() -> None:
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=120)
    events = []
    for at in (1_000, 1_130, 1_250):
        listing = ListenerList(
            [Listener("7", IP, VLC, at - 995), Listener("7", OTHER_IP, "Other", at - 995)]
        )
        events += sessionizer.observe(MountPolled("main", at, "i", "/live.mp3", listing))
    keepalives = [e.at for e in events if isinstance(e, SessionKeptAlive)]
    assert keepalives == [1_115, 1_235]


# -- Icecast /admin/stats and DNAS 2 /statistics -------------------------------------------------

STATS = (
    b"<icestats><server_id>Icecast 2.4.4</server_id>"
    b"<server_start_iso8601>%s</server_start_iso8601>%s</icestats>"
)
ODD_STATS = {
    "negative listeners: 0 or kept (only shown by audimeter check)": (
        b"<source mount='/a'><listeners>-4</listeners></source>",
        {"/a": 0},
    ),
    "listener count of 5000 digits: 0": (
        b"<source mount='/a'><listeners>%s</listeners></source>" % DIGITS,
        {"/a": 0},
    ),
    "a mount listed twice: the last": (
        b"<source mount='/a'/><source mount='/a'><listeners>3</listeners></source>",
        {"/a": 3},
    ),
    "sources without a mount: left out": (b"<source mount=''/><source/>", {}),
    "a 100,000-character mount": (
        b"<source mount='/%s'/>" % (b"m" * 100_000),
        {"/" + "m" * 100_000: 0},
    ),
    "a title in Latin-1 and a control character: the mounts still read": (
        b"<source mount='/a'><title>Caf\xe9 \x01</title><listeners>2</listeners></source>",
        {"/a": 2},
    ),
}


@pytest.mark.parametrize(("sources", "expected"), ODD_STATS.values(), ids=ODD_STATS.keys())
def test_icecast_stats_with_odd_values(sources: bytes, expected: dict[str, int]) -> None:
    stats = parse_stats(STATS % (b"T", sources))
    assert (stats.server_id, stats.instance) == ("Icecast 2.4.4", "T")
    assert {mount: max(count, 0) for mount, count in stats.mounts.items()} == expected


def _stats_bomb() -> bytes:
    doctype, ua = billion_laughs(b"icestats")
    return doctype + STATS % (ua, b"")


NOT_STATS = {
    "no start time": (STATS % (b"", b""), "no server_start_iso8601"),
    "html login page": (LOGIN_PAGE, "not Icecast XML"),
    "xhtml login page": (XHTML_LOGIN_PAGE, "root element"),
    "listclients' 401 text": (b"You need to authenticate\r\n", "not Icecast XML"),
    "empty": (b"", "not Icecast XML"),
    "truncated": (STATS[:60], "not Icecast XML"),
    "billion laughs": (_stats_bomb(), "not Icecast XML"),
    "deep": (STATS % (b"T", b"<a>" * 300 + b"</a>" * 300), "depth"),
}


@pytest.mark.parametrize(("body", "match"), NOT_STATS.values(), ids=NOT_STATS.keys())
def test_icecast_stats_that_are_not_stats(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_stats(body)


def test_icecast_stats_entities_are_not_expanded(canary: Canary) -> None:
    """Entities in text are left out; an external entity in an attribute is a FormatError."""
    doctype = (
        b'<!DOCTYPE icestats [<!ENTITY x SYSTEM "%s"><!ENTITY y SYSTEM "http://127.0.0.1:%d/">'
        b'<!ENTITY i "-evil">]>' % (canary.secret.as_uri().encode(), canary.port)
    )
    body = doctype + STATS % (
        b"T&x;&y;&i;",
        b"<source mount='/a'><listeners>&i;</listeners></source>",
    )
    assert parse_stats(body) == ServerStats("Icecast 2.4.4", "T", {"/a": 0}, {"/a": ""})
    for attribute in (b"/a&x;", b"/a&y;"):
        with pytest.raises(FormatError, match="external entity"):
            parse_stats(doctype + STATS % (b"T", b"<source mount='%s'/>" % attribute))
    assert canary.connections() == 0


def statistics(*streams: bytes) -> bytes:
    return b'{"totalstreams":%d,"version":"2.6.1.777 (posix(linux x64))","streams":[%s]}' % (
        len(streams),
        b",".join(streams),
    )


def stream(sid: int, mount: str, listeners: int = 0, path: str = "") -> Dnas2Stream:
    return Dnas2Stream(sid, mount, path, listeners, "", "", False)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            statistics(b'{"id":1,"currentlisteners":-3}', b'{"id":-1}', b'{"id":0}', b'{"id":"x"}'),
            {1: stream(1, "/stream/1/")},
        ),
        (statistics(b'{"id":%s}' % BIG.encode()), {10**30: stream(10**30, f"/stream/{BIG}/")}),
        (
            statistics(b'{"id":1,"streampath":"\\/a"}', b'{"id":1,"streampath":"/b"}'),
            {1: stream(1, "/b", path="/b")},
        ),
        (
            statistics(b'{"id":1,"streampath":"/a"}', b'{"id":2,"streampath":"a"}'),
            {1: stream(1, "/stream/1/", path="/a"), 2: stream(2, "/stream/2/", path="/a")},
        ),
        (
            statistics(b'{"id":1,"streampath":"/caf\xe9","currentlisteners":1e400}'),
            {1: stream(1, "/caf\ufffd", path="/caf\ufffd")},
        ),
        (
            statistics(b'{"id":1,"streampath":["/a"],"currentlisteners":{"n":1}}'),
            {1: stream(1, "/stream/1/")},
        ),
    ],
    ids=[
        "bad ids skipped, negative count 0",
        "id 10**30",
        "duplicate id: last wins",
        "duplicate path: default mounts",
        "bad utf-8 replaced, infinite count 0",
        "wrong types blank",
    ],
)
def test_dnas2_statistics_with_odd_values(body: bytes, expected: dict[int, Dnas2Stream]) -> None:
    assert parse_dnas2_statistics(body) == Dnas2Statistics("2.6.1.777 (posix(linux x64))", expected)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty answer"),
        (LOGIN_PAGE, "an HTML page"),
        (b"<?xml version='1.0'?><SHOUTCASTSERVER/>", "an XML or HTML document"),
        (statistics(b'{"id":1}')[:-5], "not DNAS 2 statistics JSON"),
        (b"[]", "expected an object"),
        (b"{}", "no version and no totalstreams"),
        (b'{"version":"2","streams":{}}', "streams is not an array"),
        (b'{"version":"2","streams":[1]}', "a stream is not an object"),
        (b'{"version":"2","streams":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
    ],
    ids=["empty", "html", "xml", "truncated", "array", "object", "streams", "stream", "deep"],
)
def test_dnas2_statistics_that_are_not_statistics(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_dnas2_statistics(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"time":-1}', "no uptime"),
        (b'{"time":"soon"}', "no uptime"),
        (b"[1]", "expected a JSON object"),
        (LOGIN_PAGE, "an HTML page"),
    ],
)
def test_dnas2_uptime_that_is_not_one(body: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        parse_dnas2_uptime(body)


# -- access-log lines ----------------------------------------------------------------------------

ICECAST_LINE = (
    '203.0.113.7 - - [26/Nov/2026:12:44:30 +0000] "GET /live.mp3 HTTP/1.1" 200 10958 '
    '"-" "VLC/3.0.18 LibVLC/3.0.18" 3'
)
ICECAST_END = 1_795_697_070
W3C_LINE = (
    "203.0.113.7 203.0.113.7 2026-11-26 12:44:05 /stream?title=A%20Song 200 VLC%2F3.0 48000 3 128"
)


def icecast_entry(**changes: object) -> LogEntry:
    entry = LogEntry(IP, ICECAST_END, 3, "GET", "/live.mp3", 200, 10958, "", VLC)
    return replace(entry, **changes)  # type: ignore[arg-type]


BAD_ICECAST_LINES = {
    "empty": "",
    "truncated": ICECAST_LINE[:60],
    "truncated before the seconds": ICECAST_LINE.rsplit(" ", 1)[0],
    "negative duration": ICECAST_LINE[:-1] + "-3",
    "no such day": ICECAST_LINE.replace("26/Nov/2026", "31/Nov/2026"),
    "no such month": ICECAST_LINE.replace("Nov", "Noo"),
    "no such hour": ICECAST_LINE.replace("12:44:30", "24:44:30"),
    "year 0": ICECAST_LINE.replace("2026", "0000"),
    "html": "<html><body>not a log</body></html>",
    "a w3c line": W3C_LINE,
    "nul bytes": "\x00" * 100,
}


@pytest.mark.parametrize("line", BAD_ICECAST_LINES.values(), ids=BAD_ICECAST_LINES.keys())
def test_bad_icecast_log_lines(line: str) -> None:
    assert parse_icecast_line(line) is None
    assert scan_icecast_line(line) is Skip.BAD


ODD_ICECAST_LINES = {
    "replacement characters (bytes the tailer could not decode)": (
        ICECAST_LINE.replace("VLC/3.0.18 ", "VLC\ufffd\ufffd/3.0.18 "),
        icecast_entry(user_agent="VLC\ufffd\ufffd/3.0.18 LibVLC/3.0.18"),
    ),
    "quotes inside the user agent": (
        ICECAST_LINE.replace("VLC/3.0.18 ", 'a" "b" "c '),
        icecast_entry(user_agent='a" "b" "c LibVLC/3.0.18'),
    ),
    "100,000-character user agent": (
        ICECAST_LINE.replace("VLC/3.0.18 LibVLC/3.0.18", LONG_UA),
        icecast_entry(user_agent=LONG_UA),
    ),
    "zero seconds but bytes sent": (ICECAST_LINE[:-1] + "0", icecast_entry(duration=0)),
    "year 9999": (
        ICECAST_LINE.replace("2026", "9999"),
        icecast_entry(end=calendar.timegm((9999, 11, 26, 12, 44, 30, 0, 0, 0))),
    ),
    "odd zone offset": (
        ICECAST_LINE.replace("+0000", "-9959"),
        icecast_entry(end=ICECAST_END + (99 * 60 + 59) * 60),
    ),
}


@pytest.mark.parametrize(
    ("line", "expected"), ODD_ICECAST_LINES.values(), ids=ODD_ICECAST_LINES.keys()
)
def test_odd_icecast_log_lines(line: str, expected: LogEntry) -> None:
    assert parse_icecast_line(line) == expected
    assert scan_icecast_line(line) == expected


BAD_W3C_LINES = {
    "empty": "",
    "directive": "#Fields: c-ip c-dns date time cs-uri-stem c-status cs(User-Agent) sc-bytes",
    "truncated": W3C_LINE[:50],
    "negative duration": W3C_LINE.replace(" 3 128", " -3 128"),
    "no such date": W3C_LINE.replace("2026-11-26", "2026-02-30"),
    "no such time": W3C_LINE.replace("12:44:05", "25:44:05"),
    "relative path": W3C_LINE.replace("/stream", "stream"),
    "an icecast line": ICECAST_LINE,
}


@pytest.mark.parametrize("line", BAD_W3C_LINES.values(), ids=BAD_W3C_LINES.keys())
def test_bad_w3c_log_lines(line: str) -> None:
    assert parse_shoutcast_line(line) is None
    assert scan_shoutcast_line(line) in (Skip.BAD, Skip.DIRECTIVE)


def test_odd_w3c_log_lines() -> None:
    def agent(line: str) -> str:
        entry = parse_shoutcast_line(line)
        assert entry is not None
        return entry.user_agent

    assert agent(W3C_LINE.replace("VLC%2F3.0", "VLC%FF%FE%2F3.0")) == "VLC\ufffd\ufffd/3.0"
    assert agent(W3C_LINE.replace("VLC%2F3.0", "%ED%A0%80")) == "\ufffd\ufffd\ufffd"
    assert agent(W3C_LINE.replace("VLC%2F3.0", "x" * 100_000)) == "x" * 100_000
    assert agent(W3C_LINE.replace("VLC%2F3.0", "Two words+here")) == "Two words here"
    # The average bandwidth is not read.
    long_bitrate = W3C_LINE.removesuffix(" 128") + " " + "9" * 5_000
    assert parse_shoutcast_line(long_bitrate) == parse_shoutcast_line(W3C_LINE)


POISON_LINES = {
    "icecast: bytes sent with 5000 digits": (
        scan_icecast_line,
        ICECAST_LINE.replace("10958", DIGITS.decode()),
    ),
    "icecast: seconds with 5000 digits": (scan_icecast_line, ICECAST_LINE[:-1] + DIGITS.decode()),
    "icecast: status with 5000 digits": (
        scan_icecast_line,
        ICECAST_LINE.replace(" 200 ", f" {DIGITS.decode()} "),
    ),
    "icecast: year with 5000 digits": (
        scan_icecast_line,
        ICECAST_LINE.replace("2026", DIGITS.decode()),
    ),
    "icecast: zone with 5000 digits": (
        scan_icecast_line,
        ICECAST_LINE.replace("+0000", "+" + DIGITS.decode()),
    ),
    "icecast: arabic-indic digits in the status": (
        scan_icecast_line,
        ICECAST_LINE.replace(" 200 ", " \u0662\u0660\u0660 "),
    ),
    "icecast: arabic-indic digits in the year": (
        scan_icecast_line,
        ICECAST_LINE.replace("2026", "\u0662\u0660\u0662\u0666"),
    ),
    "w3c: bytes sent with 5000 digits": (
        scan_shoutcast_line,
        W3C_LINE.replace("48000", DIGITS.decode()),
    ),
    "w3c: duration with 5000 digits": (
        scan_shoutcast_line,
        W3C_LINE.replace(" 3 128", f" {DIGITS.decode()} 128"),
    ),
    "w3c: status with 5000 digits": (
        scan_shoutcast_line,
        W3C_LINE.replace(" 200 ", f" {DIGITS.decode()} "),
    ),
    "w3c: year with 5000 digits": (scan_shoutcast_line, W3C_LINE.replace("2026", DIGITS.decode())),
    "w3c: arabic-indic digits in the date": (
        scan_shoutcast_line,
        W3C_LINE.replace("2026", "\u0662\u0660\u0662\u0666"),
    ),
    "w3c: arabic-indic digits in the time": (
        scan_shoutcast_line,
        W3C_LINE.replace("12:44", "\u0661\u0662:44"),
    ),
    "w3c: superscript digit in bytes sent": (scan_shoutcast_line, W3C_LINE.replace("48000", "48²")),
    "w3c: superscript digit in the duration": (
        scan_shoutcast_line,
        W3C_LINE.replace(" 3 128", " ³ 128"),
    ),
}


@pytest.mark.parametrize(("scan", "line"), POISON_LINES.values(), ids=POISON_LINES.keys())
def test_log_lines_with_unconvertible_numbers_are_bad_lines(
    scan: Callable[[str], LogEntry | Skip], line: str
) -> None:
    parse = parse_icecast_line if scan is scan_icecast_line else parse_shoutcast_line
    assert parse(line) is None
    assert scan(line) is Skip.BAD


@pytest.mark.parametrize(
    ("scan", "line"),
    [
        (scan_icecast_line, ICECAST_LINE[:-1] + "1000000000000"),
        (scan_shoutcast_line, W3C_LINE.replace(" 3 128", " 1000000000000 128")),
    ],
    ids=["icecast", "w3c"],
)
def test_log_lines_claiming_absurd_durations_are_refused(
    scan: Callable[[str], LogEntry | Skip], line: str
) -> None:
    entry = scan(line)
    assert isinstance(entry, Skip) or entry.duration <= MAX_CONNECT_TIME


@pytest.mark.parametrize(
    ("polled", "logged"),
    [
        ('Radio "Best" Player/2.0', "Radio .Best. Player/2.0"),
        ("Lecteur Média/1.0", "Lecteur M..dia/1.0"),
        ("Wow!Player/1.0", "Wow.Player/1.0"),
    ],
    ids=["quotes", "non-ascii", "exclamation mark"],
)
def test_a_log_line_with_a_mangled_user_agent_ends_its_session(polled: str, logged: str) -> None:
    line = ICECAST_LINE.replace("VLC/3.0.18 LibVLC/3.0.18", logged).replace('" 3', '" 300')
    entry = parse_icecast_line(line)
    assert entry is not None
    assert entry.user_agent == logged
    start = entry.end - entry.duration
    sessionizer = Sessionizer(keepalive_interval=120, outage_grace=120, exact_ends={"main": 15})
    observations: list[Observation] = [
        MountPolled(
            "main", at, "i", "/live.mp3", ListenerList([Listener("1", IP, polled, at - start)])
        )
        for at in range(start + 5, entry.end, 10)
    ]
    observations += [
        ListenerLeft(
            "main", entry.end, entry.path, entry.duration, ip=entry.ip, user_agent=entry.user_agent
        ),
        MountPolled("main", entry.end + 5, "i", "/live.mp3", ListenerList([])),
        Tick(entry.end + 100),
    ]
    events = [e for o in observations for e in sessionizer.observe(o)]
    assert [
        (type(e).__name__, e.session.client_id)
        for e in events
        if not isinstance(e, SessionKeptAlive)
    ] == [
        ("SessionStarted", "1"),
        ("SessionEnded", "1"),
    ]
