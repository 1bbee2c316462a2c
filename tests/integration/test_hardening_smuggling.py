"""Request smuggling: hostile requests, each followed by a second request in the
same bytes, against a raw recording backend (rawbackend.RawBackend).

For every row of CASES, one of two outcomes must hold:
  - REJECT: tidegate answers the hostile request itself (the status listed) and
    the backend receives no byte at all;
  - ACCEPT: the backend receives exactly one request, framed unambiguously
    (its strict reader finds no anomaly), with exactly the expected body; the
    trailing request (Host: nowhere.test, which has no route) is answered 404
    by tidegate itself, so the backend never sees it.
Then the connection is either closed by tidegate or a following legitimate
request gets its own correct answer (no desynchronisation).

The response side: a backend sending an ambiguous response gets the client a
502, the backend connection is closed (never reused), and the next request on
the same client connection gets a fresh, correct answer.

The table is printed (-s) as "case: outcome" lines for the report.
"""
import json
import socket
import time

import pytest

from backends import Conn, read_response
from conftest import SLOWDOWN, Tidegate, app_manifests
from rawbackend import RawBackend

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n"


def post(fields=b"", body=b"", line=b"POST / HTTP/1.1", host=b"Host: app.test\r\n"):
    return line + b"\r\n" + host + fields + b"\r\n" + body


def R(*statuses):
    return ("reject", statuses or (400,))


def A(body=b"", **checks):
    return ("accept", body, checks)


CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"
TE = b"Transfer-Encoding: chunked\r\n"

CASES = [
    # --- CL.TE, TE.CL, TE.TE ---------------------------------------------
    ("cl_te", post(b"Content-Length: 6\r\n" + TE, b"0\r\n\r\nG"), R()),
    ("te_cl", post(TE + b"Content-Length: 4\r\n",
                   b"5c\r\nGPOST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"), R()),
    ("te_xchunked_cl", post(b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"hello"), R()),
    ("te_leading_space_cl", post(b"Transfer-Encoding:  chunked\r\nContent-Length: 5\r\n", b"hello"), R()),
    ("te_trailing_tab_cl", post(b"Transfer-Encoding: chunked\t\r\nContent-Length: 5\r\n", b"hello"), R()),
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"hello"), R()),
    ("te_tab_before_colon", post(b"Transfer-Encoding\t: chunked\r\n", CHUNKED_HELLO), R()),
    ("te_twice_same", post(TE + TE, CHUNKED_HELLO), R()),
    ("te_chunked_then_identity_fields", post(TE + b"Transfer-Encoding: identity\r\n", CHUNKED_HELLO), R()),
    ("te_chunked_comma_identity", post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_HELLO), R()),
    ("te_identity_comma_chunked", post(b"Transfer-Encoding: identity, chunked\r\n", CHUNKED_HELLO), R(501)),
    ("te_xchunked_alone", post(b"Transfer-Encoding: xchunked\r\n", CHUNKED_HELLO), R()),
    ("te_chunked_then_cow", post(TE + b"Transfer-encoding: cow\r\n", CHUNKED_HELLO), R()),
    ("te_cow_then_chunked", post(b"Transfer-Encoding: cow\r\n" + TE, CHUNKED_HELLO), R(501)),
    ("te_parameter", post(b"Transfer-Encoding: chunked;q=1\r\n", CHUNKED_HELLO), R()),
    ("te_vertical_tab", post(b"Transfer-Encoding:\x0bchunked\r\n", CHUNKED_HELLO), R()),
    ("te_quoted", post(b'Transfer-Encoding: "chunked"\r\n', CHUNKED_HELLO), R()),
    ("te_http10", post(TE, CHUNKED_HELLO, line=b"POST / HTTP/1.0"), R()),
    ("te_with_cl_zero", post(TE + b"Content-Length: 0\r\n", CHUNKED_HELLO), R()),
    ("te_value_folded", post(b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_HELLO), R()),
    ("te_trailing_comma", post(b"Transfer-Encoding: chunked,\r\n", CHUNKED_HELLO), R()),
    ("te_leading_comma", post(b"Transfer-Encoding: , chunked\r\n", CHUNKED_HELLO), R()),
    ("te_uppercase", post(b"Transfer-Encoding: CHUNKED\r\n", CHUNKED_HELLO), A(b"hello")),
    ("te_ows_around", post(b"Transfer-Encoding: \t chunked \t\r\n", CHUNKED_HELLO), A(b"hello")),
    ("te_underscore_name_with_cl", post(b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello"),
     A(b"hello")),
    # --- Content-Length ----------------------------------------------------
    ("cl_twice_same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), R()),
    ("cl_twice_different", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), R()),
    ("cl_list", post(b"Content-Length: 5, 5\r\n", b"hello"), R()),
    ("cl_plus_sign", post(b"Content-Length: +5\r\n", b"hello"), R()),
    ("cl_minus_sign", post(b"Content-Length: -5\r\n", b"hello"), R()),
    ("cl_hex", post(b"Content-Length: 0x5\r\n", b"hello"), R()),
    ("cl_inner_space", post(b"Content-Length: 5 5\r\n", b"hello"), R()),
    ("cl_empty", post(b"Content-Length: \r\n", b"hello"), R()),
    ("cl_overflow", post(b"Content-Length: 99999999999999999999\r\n", b"hello"), R()),
    ("cl_2pow64", post(b"Content-Length: 18446744073709551621\r\n", b"hello"), R()),
    ("cl_space_before_colon", post(b"Content-Length : 5\r\n", b"hello"), R()),
    ("cl_ows_around", post(b"Content-Length: \t 5 \t\r\n", b"hello"), A(b"hello")),
    ("cl_leading_zeros", post(b"Content-Length: 005\r\n", b"hello"), A(b"hello")),
    ("cl_body_holds_a_request", post(b"Content-Length: %d\r\n" % len(SMUGGLED), SMUGGLED), A(SMUGGLED)),
    ("cl_named_in_connection", post(b"Connection: Content-Length\r\nContent-Length: 5\r\n", b"hello"),
     A(b"hello")),
    # --- chunked body --------------------------------------------------------
    ("chunk_size_overflow", post(TE, b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_2pow64", post(TE, b"10000000000000005\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_2pow63", post(TE, b"8000000000000000\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_0x", post(TE, b"0x5\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_negative", post(TE, b"-5\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_leading_space", post(TE, b" 5\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_trailing_space", post(TE, b"5 \r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_size_empty", post(TE, b"\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_ext_empty", post(TE, b"5;\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_ext_control", post(TE, b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_ext_bare_lf", post(TE, b"5;a=b\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_ext_unterminated_quote", post(TE, b'5;a="b\r\nhello\r\n0\r\n\r\n'), R()),
    ("chunk_bare_lf", post(TE, b"5\nhello\n0\n\n"), R()),
    ("chunk_data_without_crlf", post(TE, b"5\r\nhelloX\r\n0\r\n\r\n"), R()),
    ("chunk_size_too_small", post(TE, b"3\r\nhello\r\n0\r\n\r\n"), R()),
    ("chunk_trailer_folded", post(TE, b"0\r\nX-T: 1\r\n folded\r\n\r\n"), R()),
    ("chunk_trailer_bare_lf", post(TE, b"0\r\nX-T: 1\n\r\n"), R()),
    ("chunk_ext_valid", post(TE, b'5;name=value;q="x y"\r\nhello\r\n0\r\n\r\n'), A(b"hello")),
    ("chunk_trailer_valid", post(TE, b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), A(b"hello")),
    ("chunk_size_leading_zeros", post(TE, b"0000000000000000000005\r\nhello\r\n0\r\n\r\n"), A(b"hello")),
    ("chunk_body_holds_a_request",
     post(TE, b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"), A(SMUGGLED)),
    # --- line syntax, whitespace, controls -----------------------------------
    ("request_line_bare_lf", b"GET / HTTP/1.1\nHost: app.test\r\n\r\n", R()),
    ("header_bare_lf", b"GET / HTTP/1.1\r\nHost: app.test\nX: y\r\n\r\n", R()),
    ("header_bare_lf_end", b"GET / HTTP/1.1\r\nHost: app.test\r\n\n", R()),
    ("header_cr_in_value", post(b"X: a\rb\r\n"), R()),
    ("header_nul_in_value", post(b"X: a\x00b\r\n"), R()),
    ("header_obs_fold", post(b"X: a\r\n b\r\n"), R()),
    ("header_space_before_first", b"GET / HTTP/1.1\r\n Host: app.test\r\n\r\n", R()),
    ("header_space_before_colon", b"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", R()),
    ("header_name_non_token", post(b"X(y): z\r\n"), R()),
    ("header_no_colon", post(b"Just text\r\n"), R()),
    ("target_nul", b"GET /a\x00b HTTP/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("target_double_space", b"GET  / HTTP/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("method_non_token", b"GE(T / HTTP/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("leading_empty_lines", b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: app.test\r\n\r\n", A(b"", target="/lead")),
    # --- targets and hosts ---------------------------------------------------
    ("absolute_form_other_host", b"GET http://nowhere.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", R(404)),
    ("absolute_form_wins_over_host", b"GET http://app.test/abs HTTP/1.1\r\nHost: evil.test\r\n\r\n",
     A(b"", target="/abs", host="app.test")),
    ("absolute_form_userinfo", b"GET http://u@app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("absolute_form_ftp", b"GET ftp://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("host_twice", b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: nowhere.test\r\n\r\n", R()),
    ("host_missing", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", R()),
    ("host_with_path", b"GET / HTTP/1.1\r\nHost: app.test/x\r\n\r\n", R()),
    ("connect_method", b"CONNECT app.test:80 HTTP/1.1\r\nHost: app.test:80\r\n\r\n", R(405)),
    # --- versions --------------------------------------------------------------
    ("version_1_2", b"GET / HTTP/1.2\r\nHost: app.test\r\n\r\n", R(505)),
    ("version_2_0", b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", R(505)),
    ("version_lowercase", b"GET / http/1.1\r\nHost: app.test\r\n\r\n", R()),
    ("version_two_digits", b"GET / HTTP/01.1\r\nHost: app.test\r\n\r\n", R()),
    ("version_trailing_space", b"GET / HTTP/1.1 \r\nHost: app.test\r\n\r\n", R()),
    ("http_0_9", b"GET /\r\n\r\n", R()),
    # --- sizes ---------------------------------------------------------------
    ("request_line_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: app.test\r\n\r\n", R(414)),
    ("header_line_too_long", post(b"X: " + b"a" * 9000 + b"\r\n"), R(431)),
    ("header_block_too_large", post(b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(10))), R(431)),
    ("too_many_headers", post(b"".join(b"X-%d: v\r\n" % i for i in range(101))), R(431)),
]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """One tidegate and one raw backend for the whole table."""
    from conftest import TIDEGATE
    import os
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    canned = dict(RESPONSE_CASES)
    b = RawBackend(canned=canned)
    tg = Tidegate(tmp_path_factory.mktemp("smuggling"), app_manifests([b.port]), workers=1)
    results = []
    yield tg, b, results
    b.close()
    print("\nsmuggling table:")
    for line in results:
        print("  " + line)
    tg.stop()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOWDOWN)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, Conn(s)


def next_response(conn):
    """The next response, or None when tidegate closed the connection."""
    try:
        return read_response(conn)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return None


def from_backend(r):
    """True when r was written by the raw backend (not made by tidegate)."""
    if r is None or r.header("Content-Type") != "application/json":
        return False
    return json.loads(r.body).get("backend") == "raw"


def check_no_desync(tg, b, s, conn):
    """The connection is closed, or a legitimate request gets its own answer."""
    before = len(b.snapshot()[0])
    try:
        s.sendall(AFTER)
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    r = next_response(conn)
    if r is None:
        return "closed"
    assert r.status == 200 and from_backend(r), (r.status, r.body[:200])
    assert json.loads(r.body)["path"] == "/after"
    reqs, anomalies, _ = b.snapshot()
    assert not anomalies, anomalies
    assert [q["target"] for q in reqs[before:]] == ["/after"]
    return "next request ok"


@pytest.mark.parametrize("name,raw,expect", CASES, ids=[c[0] for c in CASES])
def test_smuggling(rig, name, raw, expect):
    tg, b, results = rig
    b.reset()
    s, conn = connect(tg.port)
    try:
        s.sendall(raw + SMUGGLED)
        r1 = next_response(conn)
        assert r1 is not None, "connection closed without a response"
        if expect[0] == "reject":
            assert r1.status in expect[1], (r1.status, r1.body[:200])
            assert not from_backend(r1)
            # The trailing request is never forwarded: it is either discarded
            # with the connection or answered by tidegate (no route: 404).
            r2 = next_response(conn)
            if r2 is not None:
                assert r2.status == 404 and not from_backend(r2)
            time.sleep(0.05 * SLOWDOWN)
            reqs, anomalies, got = b.snapshot()
            assert got == b"", f"the backend received {got[:300]!r}"
        else:
            _, body, checks = expect
            assert r1.status == 200 and from_backend(r1), (r1.status, r1.body[:200])
            r2 = next_response(conn)
            assert r2 is not None and r2.status == 404 and not from_backend(r2)
            reqs, anomalies, got = b.snapshot()
            assert not anomalies, anomalies
            assert len(reqs) == 1, [q["target"] for q in reqs]
            q = reqs[0]
            assert q["body"] == body
            assert b"/smuggled" not in got or body == SMUGGLED
            if "target" in checks:
                assert q["target"] == checks["target"]
            if "host" in checks:
                hosts = [v for k, v in q["headers"] if k.lower() == "host"]
                assert hosts == [checks["host"]]
        after = check_no_desync(tg, b, s, conn)
        results.append(f"{name}: {r1.status} {'backend' if from_backend(r1) else 'tidegate'}, {after}")
    finally:
        s.close()


# ------------------------------------------------------------------ responses

RESP_SMUGGLE = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"

RESPONSE_CASES = [
    ("cl_te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
     + RESP_SMUGGLE),
    ("te_cl", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
     + RESP_SMUGGLE),
    ("two_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello" + RESP_SMUGGLE),
    ("cl_list_differs", b"HTTP/1.1 200 OK\r\nContent-Length: 5, 50\r\n\r\nhello" + RESP_SMUGGLE),
    ("cl_signed", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello" + RESP_SMUGGLE),
    ("te_not_chunked_last", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
     + RESP_SMUGGLE),
    ("te_twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n" + RESP_SMUGGLE),
    ("bare_lf", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello" + RESP_SMUGGLE),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("space_before_colon", b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("nul_in_value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("bad_status_line", b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("bad_chunk_size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
     + RESP_SMUGGLE),
]


@pytest.mark.parametrize("name", [c[0] for c in RESPONSE_CASES])
def test_ambiguous_response_gives_502(rig, name):
    tg, b, results = rig
    b.reset()
    s, conn = connect(tg.port)
    try:
        s.sendall(b"GET /resp/%s HTTP/1.1\r\nHost: app.test\r\n\r\n" % name.encode())
        r = next_response(conn)
        assert r is not None and r.status == 502, (r and r.status, r and r.body[:200])
        reqs, _, _ = b.snapshot()
        bad_conn = reqs[0]["conn"]
        # The backend connection that sent it is closed, never reused.
        end = time.time() + 5 * SLOWDOWN
        while bad_conn not in b.closed_conns and time.time() < end:
            time.sleep(0.02)
        assert bad_conn in b.closed_conns
        # The client connection is still in sync: the next answer is its own.
        s.sendall(AFTER)
        r2 = next_response(conn)
        assert r2 is not None and r2.status == 200 and from_backend(r2), r2 and r2.body[:200]
        assert json.loads(r2.body)["path"] == "/after"
        results.append(f"response {name}: 502, backend connection closed, next request ok")
    finally:
        s.close()


def test_identical_repeated_content_length_response_is_accepted(rig):
    """RFC 9110 8.6: identical repeats are one value; the body is not cut."""
    tg, b, _ = rig
    b.canned["dup_same"] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    s, conn = connect(tg.port)
    try:
        s.sendall(b"GET /resp/dup_same HTTP/1.1\r\nHost: app.test\r\n\r\n" + AFTER)
        r = next_response(conn)
        assert r.status == 200 and r.body == b"hello"
        assert json.loads(next_response(conn).body)["path"] == "/after"
    finally:
        s.close()


@pytest.mark.parametrize("method,canned", [
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + RESP_SMUGGLE),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n" + RESP_SMUGGLE),
], ids=["bytes_after_body", "body_after_head_response", "body_after_204"])
def test_bytes_after_a_response_are_never_served(rig, method, canned):
    """A backend writing more than its response frames: the extra bytes are not
    taken as the answer to the next request; that connection is closed."""
    tg, b, results = rig
    b.canned["extra"] = canned
    b.reset()
    s, conn = connect(tg.port)
    try:
        s.sendall(b"%s /resp/extra HTTP/1.1\r\nHost: app.test\r\n\r\n" % method.encode())
        r = read_response(conn, method)
        assert r.status in (200, 204) and b"smuggled" not in r.body
        bad_conn = b.snapshot()[0][0]["conn"]
        end = time.time() + 5 * SLOWDOWN
        while bad_conn not in b.closed_conns and time.time() < end:
            time.sleep(0.02)
        assert bad_conn in b.closed_conns
        for _ in range(3):  # whatever pooled connection serves them, answers are fresh
            s.sendall(AFTER)
            r2 = next_response(conn)
            assert r2.status == 200 and from_backend(r2) and json.loads(r2.body)["path"] == "/after"
        results.append(f"response extra bytes ({method}, {r.status}): not served, backend connection closed")
    finally:
        s.close()
