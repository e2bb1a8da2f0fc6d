//! Fuzzing the PROXY protocol header parser (`scripts/fuzz proxy
//! <seconds>`): arbitrary connection openings fed as the driver feeds them
//! (exactly the bytes asked for). Oracles: no panic or hang; never a
//! request for nothing or for more than `MAX_HEADER` in all; a finished
//! header is exactly what was read; a v1 header the parser takes parses
//! the same again when its line is written out anew.

use emailrelay_proto::proxy::{parse, Header, Parse, MAX_HEADER, V2_SIGNATURE};

use crate::fuzzing::{self, feature, Rng, Target};

const SEEDS: &[&[u8]] = &[
    b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\nEHLO x\r\n",
    b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x02\x7f\x00\x00\x01\x9c\x40\x00\x19",
    b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x13\x7f\x00\x00\x02\x7f\x00\x00\x01\x9c\x40\x00\x19\x01\x00\x04smtp",
    b"EHLO x\r\n",
];

const DICTIONARY: &[&[u8]] = &[
    b"PROXY ",
    b"TCP4 ",
    b"TCP6 ",
    b"UNKNOWN",
    b"\r\n",
    b" ",
    b"127.0.0.1",
    b"::1",
    b"65535",
    b"0",
    &V2_SIGNATURE,
    b"\x21",
    b"\x20",
    b"\x11",
    b"\x21\x11",
    b"\x31",
    b"\xff\xff",
    b"\x00\x0c",
    b"\x00\x24",
];

fn check(data: &[u8], _rng: &mut Rng) -> Vec<u64> {
    let mut taken = 0;
    for _ in 0..=MAX_HEADER + 1 {
        match parse(&data[..taken]) {
            Parse::Need(n) => {
                assert!(n >= 1, "asked for nothing");
                assert!(taken + n <= MAX_HEADER, "asked for {n} after {taken}");
                if taken + n > data.len() {
                    return vec![feature(b"need")];
                }
                taken += n;
            }
            Parse::Done { header, length } => {
                assert_eq!(length, taken);
                if let (
                    Header::Proxy {
                        version: 1,
                        source,
                        destination,
                    },
                    true,
                ) = (header, data.starts_with(b"PROXY"))
                {
                    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                    let line = format!(
                        "PROXY {family} {} {} {} {}\r\n",
                        source.ip(),
                        destination.ip(),
                        source.port(),
                        destination.port()
                    );
                    let again = parse(line.as_bytes());
                    assert_eq!(
                        again,
                        Parse::Done {
                            header,
                            length: line.len()
                        }
                    );
                }
                return vec![feature(
                    format!("{header:?}")
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .as_bytes(),
                )];
            }
            Parse::Invalid(e) => return vec![feature(format!("{e:?}").as_bytes())],
        }
    }
    panic!("no outcome after {MAX_HEADER} steps");
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz proxy <seconds>"]
fn fuzz_proxy_header() {
    let target = Target {
        name: "proxy",
        seeds: SEEDS,
        dictionary: DICTIONARY,
        max_len: 4200,
        check: &check,
    };
    let report = fuzzing::run(&target, fuzzing::budget());
    fuzzing::finish("proxy", &report);
}

#[test]
fn the_seeds_pass_the_oracles() {
    let mut rng = Rng::new(1);
    for seed in SEEDS {
        assert!(!check(seed, &mut rng).is_empty());
    }
}
