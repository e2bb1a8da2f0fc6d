//! Arbitrary bytes at the start of a connection, through the PROXY
//! protocol header parser as a driver feeds it (exactly the bytes it asks
//! for). It must never panic or ask for nothing, never ask past
//! `MAX_HEADER`, and a header it completes must be all of what it read.
#![no_main]
use emailrelay_proto::proxy::{parse, Parse, MAX_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut taken = 0;
    loop {
        match parse(&data[..taken]) {
            Parse::Need(n) => {
                assert!(n >= 1 && taken + n <= MAX_HEADER);
                if taken + n > data.len() {
                    return;
                }
                taken += n;
            }
            Parse::Done { length, .. } => {
                assert_eq!(length, taken);
                return;
            }
            Parse::Invalid(_) => return,
        }
    }
});
