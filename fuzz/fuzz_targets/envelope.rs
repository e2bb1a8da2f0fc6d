//! Arbitrary envelope files: parsing must not panic, and what parses must
//! survive a write and a second parse unchanged.
#![no_main]
use emailrelay::store::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        let again = Envelope::parse(&envelope.to_bytes()).expect("our own output parses");
        assert_eq!(envelope.to_bytes(), again.to_bytes());
    }
});
