//! `emailrelay-passwd --check <account-file>`: whether an account file
//! works, step by step, in words an administrator can act on: the token
//! (Microsoft's `AADSTS` and Google's errors explained), for Graph the
//! `Mail.Send` permission in the token's roles, and the mailbox, by a
//! `sendMail` with an empty body that Graph refuses without sending
//! anything (400 when the mailbox is there and the app may send as it).
//!
//! Must not send mail, or print a token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::answer::describe;
use super::{GraphTransport, Mailboxes};
use crate::auth::OAuthAccount;
use crate::forward::doorbell::Doorbell;

/// Checks the account file; `Ok` holds the lines to print, `Err` the
/// lines so far and the failure in words.
pub async fn check_account(path: &Path) -> Result<Vec<String>, (Vec<String>, String)> {
    let mut said = Vec::new();
    // The account's name in messages: its mailbox, else its file's name.
    let name = crate::auth::oauth::AccountFile::load(path)
        .ok()
        .and_then(|f| f.mailbox)
        .unwrap_or_else(|| path.display().to_string());
    let account = match OAuthAccount::load(&name, path) {
        Ok(account) => Arc::new(account),
        Err(e) => return Err((said, e.to_string())),
    };
    let (token, lifetime) = match account.fetch_token().await {
        Ok(token) => token,
        Err(e) => {
            let text = e.to_string();
            let words = explain(&text).map(|w| format!("{w}\n  ({text})"));
            return Err((said, words.unwrap_or(text)));
        }
    };
    said.push(format!(
        "token: obtained from {} (valid for {}s)",
        account.token_url(),
        lifetime.as_secs_f64().round()
    ));
    if let Some((what, when)) = account.credential_expiry() {
        // Days or part of one, as the log's warnings count them.
        let days = ((when - chrono::Utc::now().timestamp()).max(0) + 86399) / 86400;
        said.push(format!(
            "{what}: expires on {} (in {days} day(s))",
            chrono::DateTime::from_timestamp(when, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        ));
    }
    let Some(settings) = account.graph() else {
        said.push(
            "transport: smtp: the mailbox and its SMTP AUTH setting are checked at the first login"
                .into(),
        );
        return Ok(said);
    };
    match roles(&token) {
        Some(roles) if roles.iter().any(|r| r == "Mail.Send") => {
            said.push("permission: Mail.Send (application) is granted".into())
        }
        Some(roles) if roles.iter().any(|r| r == "scp:Mail.Send") => {
            said.push("permission: Mail.Send (delegated) is granted".into())
        }
        Some(roles) => {
            return Err((
                said,
                format!(
                    "the token does not carry the Mail.Send application permission (roles: {}): \
                     add it under API permissions and grant admin consent",
                    if roles.is_empty() {
                        "none".to_string()
                    } else {
                        roles.join(", ")
                    }
                ),
            ))
        }
        None => {
            said.push("permission: not shown in the token (not a JWT): checked by the probe".into())
        }
    }
    // Messages over one request go through drafts, which need more.
    if let Some(roles) = roles(&token) {
        match roles.iter().any(|r| r == "Mail.ReadWrite" || r == "scp:Mail.ReadWrite") {
            true => said.push("permission: Mail.ReadWrite is granted: messages over 3 MB can go by draft".into()),
            false => said.push(
                "permission: Mail.ReadWrite is not granted: messages over 3 MB will fail (add it for drafts and upload sessions)"
                    .into(),
            ),
        }
    }
    if settings.mailbox.is_empty() {
        return Err((
            said,
            "no mailbox: give mailbox = <address> in the account file".into(),
        ));
    }
    let mailbox = settings.mailbox.clone();
    let transport = GraphTransport::new(
        Arc::clone(&account),
        settings,
        &Mailboxes::default(),
        Duration::from_secs(30),
        Duration::from_secs(60),
        // Nothing forwards here: nobody hears it.
        Arc::new(Doorbell::default()),
    )
    .map_err(|e| (said.clone(), e.to_string()))?;
    let (status, body) = transport.probe(&token).await.map_err(|e| {
        (
            said.clone(),
            format!("no answer from {}: {e}", transport.address()),
        )
    })?;
    let text = describe(status, &body);
    match status {
        400 => {
            said.push(format!(
                "mailbox: {mailbox} found, and the app may send as it"
            ));
            Ok(said)
        }
        404 => Err((
            said,
            format!("there is no mailbox {mailbox} in the tenant\n  ({text})"),
        )),
        403 => Err((
            said,
            format!(
                "the app may not send as {mailbox}: an application access policy or RBAC for \
                 Applications scope leaves it out, or Mail.Send lacks admin consent\n  ({text})"
            ),
        )),
        401 => Err((said, format!("Graph refused the token\n  ({text})"))),
        _ => Err((said, format!("unexpected answer from Graph\n  ({text})"))),
    }
}

/// The permissions a JWT access token carries, if it is one: its
/// `roles` (an app's), then its `scp` (a user's, delegated) as `scp:X`.
fn roles(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let mut roles: Vec<String> = json["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let scopes = json["scp"].as_str().unwrap_or("").split_whitespace();
    roles.extend(scopes.map(|s| format!("scp:{s}")));
    Some(roles)
}

/// Microsoft's and Google's token errors in plain words.
pub fn explain(error: &str) -> Option<&'static str> {
    const WORDS: &[(&str, &str)] = &[
        ("AADSTS700016", "the client-id is not an app registered in this tenant: check client-id and tenant"),
        ("AADSTS90002", "there is no such tenant: check tenant"),
        ("AADSTS7000215", "the client secret is wrong: copy the secret's value, not its id"),
        ("AADSTS7000222", "the client secret has expired: make a new one and set client-secret-expires"),
        ("AADSTS700027", "the signature on the client assertion does not verify: upload this certificate to the app registration, or check that the key is the certificate's"),
        ("AADSTS700024", "the client assertion is not within its valid time: check this machine's clock"),
        ("AADSTS7000274", "the certificate has been revoked: upload a new one"),
        ("AADSTS7000112", "the application is disabled in the tenant"),
        ("AADSTS70011", "the scope is not valid for this grant: leave scope out, or use https://graph.microsoft.com/.default"),
        ("AADSTS65001", "admin consent has not been granted for the app's permissions"),
        ("AADSTS50034", "the user account does not exist in the tenant"),
        ("unauthorized_client", "the service account may not act for this mailbox: add its client id with scope https://mail.google.com/ under domain-wide delegation in the Google Admin console"),
        ("Invalid JWT Signature", "the service account key is not valid any more: make a new key"),
        ("invalid_grant", "the grant was refused: for a refresh token, sign in again with emailrelay-passwd --oauth"),
        ("certificate verify failed", "the provider's TLS certificate is not trusted: check ca-file, or the system's CA certificates"),
    ];
    // A code, not the start of a longer one (AADSTS70011 in AADSTS700112).
    let names = |code: &str| {
        error
            .match_indices(code)
            .any(|(at, _)| !error[at + code.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    WORDS
        .iter()
        .find(|(code, _)| names(code))
        .map(|(_, words)| *words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_plain_words() {
        let e = "oauth2: cannot get an access token for x from u: HTTP 401: invalid_client: AADSTS7000274: Key was found, but the certificate has been revoked.";
        assert_eq!(
            explain(e),
            Some("the certificate has been revoked: upload a new one")
        );
        // The longer code wins over its prefix.
        assert!(explain("AADSTS7000215: Invalid client secret")
            .unwrap()
            .contains("secret is wrong"));
        assert!(explain("AADSTS700016: Application not found")
            .unwrap()
            .contains("client-id"));
        assert_eq!(explain("HTTP 500"), None);
    }

    #[test]
    fn roles_come_from_the_tokens_payload() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"roles":["Mail.Send","User.Read.All"]}"#);
        assert_eq!(
            roles(&format!("e30.{payload}.sig")),
            Some(vec!["Mail.Send".to_string(), "User.Read.All".to_string()])
        );
        assert_eq!(
            roles(&format!("e30.{}.s", URL_SAFE_NO_PAD.encode("{}"))),
            Some(vec![])
        );
        assert_eq!(roles("opaque-token"), None);
        let delegated = URL_SAFE_NO_PAD.encode(r#"{"scp":"Mail.Send User.Read"}"#);
        assert_eq!(
            roles(&format!("e30.{delegated}.s")),
            Some(vec![
                "scp:Mail.Send".to_string(),
                "scp:User.Read".to_string()
            ])
        );
    }
}
