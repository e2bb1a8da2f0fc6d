//! Every v1 and v2 form, fed as a driver feeds them (exactly the bytes
//! asked for), and whole.

use super::*;

/// Feeds `wire` as a driver does: only what `Need` asks for, so that the
/// parser can never have been shown a byte past its header. Returns the
/// outcome and how many bytes were consumed.
fn drive(wire: &[u8]) -> (Parse, usize) {
    let mut taken = 0;
    for _ in 0..=wire.len() + 1 {
        match parse(&wire[..taken]) {
            Parse::Need(n) => {
                assert!(n >= 1);
                if taken + n > wire.len() {
                    return (Parse::Need(n), taken);
                }
                taken += n;
            }
            other => return (other, taken),
        }
    }
    panic!("the parser did not finish");
}

fn done(wire: &[u8]) -> Header {
    match drive(wire) {
        (Parse::Done { header, length }, taken) => {
            assert_eq!(length, taken);
            assert_eq!(length, wire.len(), "the whole header, nothing more");
            header
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(wire)),
    }
}

fn invalid(wire: &[u8]) -> ProxyError {
    match drive(wire) {
        (Parse::Invalid(e), _) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(wire)),
    }
}

fn proxied(version: u8, source: &str, destination: &str) -> Header {
    Header::Proxy {
        version,
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

/// A v2 header: command byte, family byte, the address block and TLVs.
fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut wire = V2_SIGNATURE.to_vec();
    wire.push(ver_cmd);
    wire.push(family);
    wire.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    wire.extend_from_slice(body);
    wire
}

fn v4_block() -> Vec<u8> {
    let mut body = vec![127, 0, 0, 2, 127, 0, 0, 1];
    body.extend_from_slice(&40000u16.to_be_bytes());
    body.extend_from_slice(&25u16.to_be_bytes());
    body
}

fn v6_block() -> Vec<u8> {
    let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&1234u16.to_be_bytes());
    body.extend_from_slice(&587u16.to_be_bytes());
    body
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    t.extend_from_slice(value);
    t
}

#[test]
fn v1_tcp4_and_tcp6() {
    assert_eq!(
        done(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\n"),
        proxied(1, "127.0.0.2:40000", "127.0.0.1:25")
    );
    assert_eq!(
        done(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n"),
        proxied(1, "[2001:db8::7]:65535", "[::1]:0")
    );
}

#[test]
fn v1_unknown_ignores_the_rest_of_its_line() {
    let local = Header::Local {
        version: 1,
        why: Local::Unknown,
    };
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), local);
    assert_eq!(done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), local);
}

#[test]
fn v1_at_the_length_limit() {
    // The specification's worst case: TCP6 with the longest addresses.
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX - 3, "the addresses themselves fit");
    assert!(matches!(done(longest), Header::Proxy { version: 1, .. }));
    let mut padded = b"PROXY UNKNOWN ".to_vec();
    padded.resize(V1_MAX - 2, b'x');
    padded.extend_from_slice(b"\r\n");
    assert_eq!(padded.len(), V1_MAX);
    assert!(matches!(done(&padded), Header::Local { .. }));
    let mut over = b"PROXY UNKNOWN".to_vec();
    over.resize(V1_MAX + 20, b'x');
    assert_eq!(invalid(&over), ProxyError::V1TooLong);
    assert_eq!(drive(&over).1, V1_MAX, "not one byte more is read");
}

#[test]
fn v1_malformed() {
    for wire in [
        &b"PROXY TCP4 127.0.0.2 127.0.0.1 40000\r\n"[..],
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25 x\r\n",
        b"PROXY TCP4 127.0.0.2  127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 40000 25\r\n",
        b"PROXY TCP6 127.0.0.2 ::1 40000 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 65536 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 040000 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 +4 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 -1 25\r\n",
        b"PROXY TCP4 127.0.0.02 127.0.0.1 4 25\r\n",
        b"PROXY UDP4 127.0.0.2 127.0.0.1 4 25\r\n",
        b"PROXY tcp4 127.0.0.2 127.0.0.1 4 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\r\n",
        b"PROXY TCP4 127.0.0.\xff 127.0.0.1 40000 25\r\n",
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25 \r\n",
    ] {
        assert_eq!(
            invalid(wire),
            ProxyError::V1Syntax,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn not_a_header_is_seen_at_the_first_wrong_byte() {
    for (wire, read) in [
        (&b"EHLO client.example\r\n"[..], 1),
        (b"PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 15),
        (b"\x16\x03\x01\x02\x00\x01", 1),
        (b"\r\n\r\n\x00\r\nQUIX\nxxxx", 16),
        (b"PROXY\r\nhello    \r\n", 15),
    ] {
        let (outcome, taken) = drive(wire);
        assert_eq!(outcome, Parse::Invalid(ProxyError::NotProxy));
        assert_eq!(taken, read.min(wire.len()));
    }
    // The v1 prefix is checked as soon as it is in.
    assert_eq!(parse(b"PRX"), Parse::Invalid(ProxyError::NotProxy));
}

#[test]
fn truncated_headers_ask_for_more_never_past_their_end() {
    let whole: [Vec<u8>; 4] = [
        b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\n".to_vec(),
        v2(0x21, 0x11, &v4_block()),
        v2(0x21, 0x21, &[v6_block(), tlv(0x05, b"id-1")].concat()),
        v2(0x20, 0x00, &[]),
    ];
    for wire in whole {
        for cut in 0..wire.len() {
            match drive(&wire[..cut]) {
                (Parse::Need(n), taken) => {
                    assert!(taken <= cut);
                    assert!(taken + n <= wire.len(), "asked past the end at {cut}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        assert!(matches!(drive(&wire).0, Parse::Done { .. }));
    }
}

#[test]
fn v2_proxy_ipv4_and_ipv6() {
    assert_eq!(
        done(&v2(0x21, 0x11, &v4_block())),
        proxied(2, "127.0.0.2:40000", "127.0.0.1:25")
    );
    assert_eq!(
        done(&v2(0x21, 0x21, &v6_block())),
        proxied(2, "[2001:db8::7]:1234", "[::1]:587")
    );
}

#[test]
fn v2_tlvs_are_skipped() {
    let tlvs = [
        tlv(0x01, b"smtp"),          // ALPN
        tlv(0x02, b"relay.example"), // authority
        tlv(0x04, &[]),              // NOOP, empty
        tlv(
            0x20,
            &[
                0x07, 0, 0, 0, 0, 0x21, 0x00, 0x07, b'T', b'L', b'S', b'v', b'1', b'.', b'3',
            ],
        ),
        tlv(0xe0, &[0xab; 300]), // a custom one
    ]
    .concat();
    assert_eq!(
        done(&v2(0x21, 0x11, &[v4_block(), tlvs].concat())),
        proxied(2, "127.0.0.2:40000", "127.0.0.1:25")
    );
}

#[test]
fn v2_malformed_tlvs() {
    for tail in [
        &[0x01][..],
        &[0x01, 0x00],
        &[0x01, 0x00, 0x05, b'a'],
        &[0x04, 0x00, 0x00, 0x01],
    ] {
        let wire = v2(0x21, 0x11, &[&v4_block()[..], tail].concat());
        assert_eq!(invalid(&wire), ProxyError::V2Tlv, "{tail:?}");
    }
}

#[test]
fn v2_local_keeps_the_connections_address() {
    let local = Header::Local {
        version: 2,
        why: Local::Command,
    };
    assert_eq!(done(&v2(0x20, 0x00, &[])), local);
    // LOCAL with an address block (some balancers send one): skipped.
    assert_eq!(done(&v2(0x20, 0x11, &v4_block())), local);
    assert_eq!(done(&v2(0x20, 0xff, &[1, 2, 3])), local);
}

#[test]
fn v2_unspec_and_unix_families_carry_no_address() {
    for family in [0x00, 0x01, 0x02] {
        assert_eq!(
            done(&v2(0x21, family, &[])),
            Header::Local {
                version: 2,
                why: Local::Unspecified
            }
        );
    }
    let mut paths = vec![0u8; 216];
    paths[..9].copy_from_slice(b"/run/sock");
    assert_eq!(
        done(&v2(0x21, 0x31, &paths)),
        Header::Local {
            version: 2,
            why: Local::Unix
        }
    );
    assert_eq!(invalid(&v2(0x21, 0x31, &paths[..100])), ProxyError::V2Short);
}

#[test]
fn v2_refusals() {
    assert_eq!(
        invalid(&v2(0x11, 0x11, &v4_block())),
        ProxyError::V2Version(1)
    );
    assert_eq!(
        invalid(&v2(0x31, 0x11, &v4_block())),
        ProxyError::V2Version(3)
    );
    assert_eq!(
        invalid(&v2(0x22, 0x11, &v4_block())),
        ProxyError::V2Command(2)
    );
    assert_eq!(
        invalid(&v2(0x2f, 0x11, &v4_block())),
        ProxyError::V2Command(15)
    );
    // Datagrams, and unknown families.
    assert_eq!(
        invalid(&v2(0x21, 0x12, &v4_block())),
        ProxyError::V2Family(0x12)
    );
    assert_eq!(
        invalid(&v2(0x21, 0x22, &v6_block())),
        ProxyError::V2Family(0x22)
    );
    assert_eq!(
        invalid(&v2(0x21, 0x41, &v4_block())),
        ProxyError::V2Family(0x41)
    );
    assert_eq!(
        invalid(&v2(0x21, 0x10, &v4_block())),
        ProxyError::V2Family(0x10)
    );
    // Too short for the family.
    assert_eq!(
        invalid(&v2(0x21, 0x11, &v4_block()[..11])),
        ProxyError::V2Short
    );
    assert_eq!(invalid(&v2(0x21, 0x21, &v4_block())), ProxyError::V2Short);
}

#[test]
fn v2_oversized_is_refused_from_its_length_field() {
    let mut head = V2_SIGNATURE.to_vec();
    head.extend_from_slice(&[0x21, 0x11]);
    head.extend_from_slice(&u16::MAX.to_be_bytes());
    let (outcome, taken) = drive(&[head.clone(), vec![0; 100]].concat());
    assert_eq!(outcome, Parse::Invalid(ProxyError::V2TooLong(65535)));
    assert_eq!(taken, 16, "refused before its body is read");
    let at_limit = v2(
        0x21,
        0x11,
        &[v4_block(), tlv(0xe1, &vec![0; V2_MAX_PAYLOAD - 12 - 3])].concat(),
    );
    assert_eq!(at_limit.len(), MAX_HEADER);
    assert!(matches!(done(&at_limit), Header::Proxy { .. }));
}

#[test]
fn v2_bad_signature() {
    let mut wire = v2(0x21, 0x11, &v4_block());
    for at in 0..12 {
        let good = wire[at];
        wire[at] ^= 0x20;
        assert_eq!(invalid(&wire), ProxyError::NotProxy, "byte {at}");
        wire[at] = good;
    }
}

#[test]
fn errors_say_what_was_wrong() {
    assert_eq!(ProxyError::NotProxy.to_string(), "no PROXY protocol header");
    assert_eq!(
        ProxyError::V2TooLong(5000).to_string(),
        "PROXY v2 header of 5000 bytes over the limit of 4096"
    );
    assert_eq!(
        ProxyError::V2Family(0x12).to_string(),
        "PROXY v2 family/transport 0x12 not supported"
    );
}
