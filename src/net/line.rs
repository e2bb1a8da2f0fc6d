//! A kept-open, one-line-request, one-line-answer connection, as `net:`
//! filters and `net:` address verifiers speak. Made on first use and made
//! again after any failure; every exchange is bounded in time and size.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::Stream;

/// The longest answer line taken from a server.
const MAX_LINE: u64 = 8 * 1024;

/// One server address and its connection.
pub struct LineClient {
    address: String,
    conn: tokio::sync::Mutex<Option<BufReader<Box<dyn Stream>>>>,
}

impl LineClient {
    pub fn new(address: String) -> LineClient {
        LineClient {
            address,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` (which must hold no line break) and returns the
    /// answer without its line ending. On any failure the connection is
    /// dropped, to be made again next time.
    pub async fn exchange(&self, request: &str, timeout: Duration) -> std::io::Result<String> {
        if request.contains(['\r', '\n']) {
            return Err(std::io::Error::other("request contains a line break"));
        }
        let mut conn = self.conn.lock().await;
        let result = tokio::time::timeout(timeout, self.exchange_on(&mut conn, request))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", timeout.as_secs()),
                ))
            });
        if result.is_err() {
            *conn = None;
        }
        result
    }

    async fn exchange_on(
        &self,
        conn: &mut Option<BufReader<Box<dyn Stream>>>,
        request: &str,
    ) -> std::io::Result<String> {
        if conn.is_none() {
            let stream = super::connect(&self.address, None, Duration::from_secs(30))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            *conn = Some(BufReader::new(stream));
        }
        let Some(stream) = conn.as_mut() else {
            return Err(std::io::Error::other("not connected"));
        };
        stream
            .get_mut()
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        let mut line = Vec::new();
        (&mut *stream)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if line.last() != Some(&b'\n') {
            return Err(std::io::Error::other(
                "the server closed the connection or sent an overlong line",
            ));
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_with_a_line_break_is_never_sent() {
        // Nothing listens here: refusing must not even try to connect.
        let client = LineClient::new("127.0.0.1:1".into());
        let e = client
            .exchange("/spool/x.content\nrm -rf /", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "request contains a line break");
    }
}
