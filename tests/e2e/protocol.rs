//! Bad input: malformed RESP, oversized arguments, inline commands and
//! pipelining. Protocol errors must get Redis's exact error and close only
//! that connection; everything else keeps serving.

use kvfleet_harness::{RawClient, encode_cmd, kvfleet_server, redis_server};

/// (input, what follows) pairs that Redis answers with a protocol error and a close.
const MALFORMED: &[&[u8]] = &[
    b"*x\r\n",
    b"*3000000000\r\n",
    b"*1\r\n+PING\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$abc\r\n",
    b"*1\r\n$600000000\r\n",
    b"SET a \"unbalanced\r\n",
    b"SET a 'x'y\r\n",
];

fn reply_then_closed(c: &mut RawClient, input: &[u8]) -> (Vec<u8>, bool) {
    c.send(input);
    let r = c.read_reply().unwrap_or_default();
    (r, c.closed())
}

#[test]
fn malformed_requests_get_redis_errors_and_close_only_that_connection() {
    let redis = redis_server(&[]);
    let ours = kvfleet_server(&[]);
    let mut bystander = ours.client();
    for input in MALFORMED {
        let (want, want_closed) = reply_then_closed(&mut redis.client(), input);
        let (got, got_closed) = reply_then_closed(&mut ours.client(), input);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "reply to {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(
            got.starts_with(b"-ERR Protocol error"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(
            got_closed,
            want_closed,
            "close after {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(got_closed);
        assert_eq!(
            bystander.call(&["PING"]),
            kvfleet_resp::Frame::Simple("PONG".into())
        );
    }
}

#[test]
fn oversized_inline_request_is_refused() {
    let ours = kvfleet_server(&[]);
    let mut c = ours.client();
    let big = vec![b'a'; 70 * 1024];
    let (r, closed) = reply_then_closed(&mut c, &big);
    assert_eq!(r, b"-ERR Protocol error: too big inline request\r\n");
    assert!(closed);
}

#[test]
fn bulk_over_proto_max_bulk_len_is_refused_but_large_values_work() {
    let ours = kvfleet_server(&[]);
    let mut c = ours.client();
    let big = vec![b'x'; 8 * 1024 * 1024];
    assert_eq!(c.cmd(&[b"SET", b"big", &big]), b"+OK\r\n");
    let got = c.cmd(&[b"GET", b"big"]);
    assert_eq!(
        got.len(),
        big.len() + format!("${}\r\n\r\n", big.len()).len()
    );
    assert_eq!(
        c.cmd(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"1mb"]),
        b"+OK\r\n"
    );
    // only the header: the server must refuse before the body arrives
    let (r, closed) = reply_then_closed(&mut c, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n");
    assert_eq!(r, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);
    assert_eq!(ours.client().cmd(&[b"STRLEN", b"big"]), b":8388608\r\n");
}

#[test]
fn unknown_commands_and_wrong_arity_keep_the_connection() {
    let ours = kvfleet_server(&[]);
    let mut c = ours.client();
    assert_eq!(
        c.cmd(&[b"NOPE", b"x"]),
        b"-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n"
    );
    assert_eq!(
        c.cmd(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(c.cmd(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn inline_commands_and_byte_by_byte_input_work() {
    let ours = kvfleet_server(&[]);
    let mut c = ours.client();
    c.send(b"SET greeting \"hello world\"\r\nGET greeting\r\n\r\nPING\n");
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
    assert_eq!(c.read_reply().unwrap(), b"$11\r\nhello world\r\n");
    assert_eq!(c.read_reply().unwrap(), b"+PONG\r\n");
    for b in encode_cmd(&[b"ECHO", b"slow"]) {
        c.send(&[b]);
    }
    assert_eq!(c.read_reply().unwrap(), b"$4\r\nslow\r\n");
}

#[test]
fn deep_pipeline_replies_arrive_in_order() {
    let ours = kvfleet_server(&[]);
    let mut c = ours.client();
    let n = 20_000;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend(encode_cmd(&[b"INCR", b"ctr"]));
        if i % 1000 == 0 {
            batch.extend(encode_cmd(&[b"GET", b"ctr"]));
        }
    }
    c.send(&batch);
    let mut expect = 1;
    for i in 0..n {
        assert_eq!(
            c.read_reply().unwrap(),
            format!(":{expect}\r\n").into_bytes()
        );
        expect += 1;
        if i % 1000 == 0 {
            assert_eq!(
                c.read_reply().unwrap(),
                format!("${}\r\n{}\r\n", (expect - 1).to_string().len(), expect - 1).into_bytes()
            );
        }
    }
}

#[test]
fn unauthenticated_clients_cannot_send_huge_requests() {
    let ours = kvfleet_server(&["--requirepass", "secret"]);
    let mut c = ours.client();
    assert_eq!(
        c.cmd(&[b"GET", b"a"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    let args: Vec<&[u8]> = vec![b"x"; 20];
    let (r, closed) = reply_then_closed(&mut c, &encode_cmd(&args));
    assert_eq!(
        r,
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(closed);
    let mut c = ours.client();
    assert_eq!(
        c.cmd(&[b"AUTH", b"wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd(&[b"AUTH", b"secret"]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"SET", b"a", b"1"]), b"+OK\r\n");
}
