//! Property tests of the envelope format: whatever we write we read back
//! as the same envelope, and writing what we read gives the same bytes.

use emailrelay_proto::smtp::Body;
use proptest::prelude::*;

use crate::store::Envelope;

/// Addresses a session could have taken: plain, with a UTF-8 domain or
/// local part, with a quoted local part holding spaces.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._+=-]{1,20}@[a-z0-9.-]{1,20}",
        "[a-z]{1,8}@[a-zé\u{4e2d}.]{1,12}",
        "[a-z\u{e9}\u{4e2d}]{1,8}@[a-z]{1,8}\\.example",
        "\"[a-z ]{1,10}\"@[a-z]{1,8}",
        "postmaster",
    ]
}

/// A field value as the writer puts it on one line: no CR or LF (other
/// controls and leading or trailing spaces included).
fn value() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

/// A line with no control characters (a reason, an extra line).
fn line() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{0,30}"
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::Unknown),
        Just(Body::SevenBit),
        Just(Body::EightBitMime),
        Just(Body::BinaryMime),
    ]
}

/// A PEM-like certificate: lines joined with LF, no line end at the end
/// (the writer drops those: see the second property).
fn certificate() -> impl Strategy<Value = String> {
    proptest::collection::vec("[ A-Za-z0-9+/=-]{0,30}", 0..5)
        .prop_map(|lines| lines.join("\n").trim_end_matches('\n').to_string())
}

/// `MailFromAuthIn`: absent, `<>`, or an xtext value. (`<>` spelled as
/// xtext, `+3C+3E`, would read back as the empty value: SMTP's `AUTH=<>`
/// cannot name a mailbox `<>`, so it is left out.)
fn auth_in() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        ".{1,20}"
            .prop_filter("<> is the empty value", |s| s != "<>")
            .prop_map(Some),
    ]
}

/// Extra lines after the end marker: not empty (an empty line is
/// dropped) and not a `Reason` field (which it would become).
fn extra() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        line().prop_filter("kept as an extra line", |l| {
            !l.is_empty() && !l.starts_with("X-MailRelay-Reason")
        }),
        0..3,
    )
}

prop_compose! {
    fn envelope()(
        body in body(),
        from in prop_oneof![Just(String::new()), address()],
        to_local in proptest::collection::vec("[a-z]{1,8}", 0..3),
        to_remote in proptest::collection::vec(address(), 1..4),
        authentication in ".{0,20}",
        client in value(),
        client_certificate in certificate(),
        mail_from_auth_in in auth_in(),
        mail_from_auth_out in value(),
        forward_to in value(),
        forward_to_address in value(),
        client_account_selector in value(),
        utf8_mailbox_names in any::<bool>(),
        extra in extra(),
        reason in proptest::option::of((line(), proptest::option::of(any::<u16>()))),
    ) -> Envelope {
        let (reason, reason_code) = match reason {
            Some((text, code)) => (Some(text), code),
            None => (None, None),
        };
        Envelope {
            body, from, to_local, to_remote, authentication, client,
            client_certificate, mail_from_auth_in, mail_from_auth_out,
            forward_to, forward_to_address, client_account_selector,
            utf8_mailbox_names, extra, reason, reason_code,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn what_is_written_reads_back_the_same(envelope in envelope()) {
        let bytes = envelope.to_bytes();
        let read = Envelope::parse(&bytes);
        prop_assert_eq!(read.as_ref(), Ok(&envelope), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn writing_what_was_read_changes_no_byte(
        envelope in envelope(),
        certificate in "[\r\n A-Za-z0-9-]{0,40}",
        reason in ".{0,30}",
        extra in proptest::collection::vec("[^\r\n]{1,20}", 0..3),
        lf_only in any::<bool>(),
    ) {
        // Untidy values (line ends around a certificate, controls in a
        // reason or an extra line) are tidied by the first write; after
        // that, reading and writing is a fixed point, in LF files too.
        let envelope = Envelope {
            client_certificate: certificate,
            reason: Some(reason),
            extra,
            ..envelope
        };
        let mut first = envelope.to_bytes();
        if lf_only {
            first = String::from_utf8(first).unwrap().replace("\r\n", "\n").into_bytes();
        }
        let read = Envelope::parse(&first).unwrap();
        let again = Envelope::parse(&read.to_bytes()).unwrap();
        prop_assert_eq!(&again, &read);
        prop_assert_eq!(again.to_bytes(), read.to_bytes());
    }
}
