//! Sending e-mail over SMTP: messages are built with `lettre` and sent by
//! [`smtp`], which pipelines the envelope when the server allows;
//! and telling failures that will never succeed from those worth retrying.
//!
//! Plain SMTP only: the connection is not encrypted (no STARTTLS, no
//! SMTPS), which suits a local sink (Mailpit, aiosmtpd) or a relay on the
//! same host or network. TLS is not supported yet.

#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod smtp;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::Mailbox;
use lettre::{Address, Message};
use tokio::net::TcpStream;

use crate::domain::email::Email;
use smtp::Connection;

/// Where and how to send.
#[derive(Clone)]
pub struct SmtpSettings {
    /// SMTP server host.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// Username and password for `AUTH`, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// `From` of every e-mail.
    pub from: Mailbox,
    /// Budget for sending one e-mail: connecting (when no idle connection
    /// can be reused) up to the server's reply to the message.
    pub timeout: Duration,
}

/// Why an e-mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// It can never be sent as it is (invalid recipient, the server
    /// rejected it with a 5xx reply): record the failure.
    #[error("{0}")]
    Permanent(String),
    /// It may go through later (server unreachable, timeout, 4xx reply,
    /// rejected credentials): try again.
    #[error("{0}")]
    Transient(String),
}

/// Builds the SMTP message for `email`. An invalid recipient address is a
/// permanent failure.
pub fn build_message(from: &Mailbox, email: &Email) -> Result<Message, SendError> {
    let to: Address = email.to.parse().map_err(|e| {
        SendError::Permanent(format!("invalid recipient address {:?}: {e}", email.to))
    })?;
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .header(ContentType::TEXT_PLAIN)
        // 7-bit safe even when a name, reason or SKU is not ASCII, so servers
        // without 8BITMIME take it too.
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(email.body.clone())
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// Whether a failed SMTP exchange is not worth retrying, from the server's
/// reply code (if it answered with one), whether this side refused on its
/// own (`client_error`), and whether the recipient address is not ASCII.
///
/// - 5xx replies are permanent, except the 53x family (authentication
///   required or rejected, encryption required): those mean this service is
///   misconfigured, not that the e-mail is bad, so they are retried until
///   the configuration is fixed instead of failing every e-mail for good.
/// - A non-ASCII address is refused on this side when the server lacks
///   SMTPUTF8: that e-mail can never go through this server, so it is
///   permanent. Other client-side refusals (no common AUTH mechanism) are
///   configuration problems and retried.
/// - Everything else (connection refused, timeouts, 4xx) is transient.
pub fn is_permanent(code: Option<u16>, client_error: bool, non_ascii_recipient: bool) -> bool {
    match code {
        Some(530..=539) => false,
        Some(code) => code >= 500,
        None => client_error && non_ascii_recipient,
    }
}

fn classify(e: &smtp::Error, non_ascii_recipient: bool) -> SendError {
    let code = e.code();
    let client_error = matches!(e, smtp::Error::Client(_));
    if is_permanent(code, client_error, non_ascii_recipient) {
        SendError::Permanent(match code {
            Some(_) => format!("SMTP server rejected the message: {e}"),
            None => format!("the message cannot be sent through this SMTP server: {e}"),
        })
    } else {
        SendError::Transient(format!("SMTP: {e}"))
    }
}

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 32;

/// A connection idle for less than this is reused as it is; one idle for
/// longer is first checked with `NOOP`.
const FRESH: Duration = Duration::from_secs(2);

/// Sends e-mails through one SMTP server, reusing connections: one idle for
/// a while is checked with `NOOP` before reuse, one used moments ago is
/// not (if the server closed it meanwhile, so that it answers nothing, the
/// e-mail goes out once more on a new connection); a connection that failed
/// an exchange is dropped. Sockets are `TCP_NODELAY`, and each write is a
/// whole batch of commands or the whole message, so Nagle's algorithm has
/// nothing to hold back.
pub struct Mailer {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    idle: Mutex<Vec<(Connection, Instant)>>,
    from: Mailbox,
    timeout: Duration,
}

impl Mailer {
    /// A mailer for `settings`. Nothing is connected until the first send.
    pub fn new(settings: &SmtpSettings) -> Self {
        Self {
            host: settings.host.clone(),
            port: settings.port,
            credentials: settings.credentials.clone(),
            idle: Mutex::new(Vec::new()),
            from: settings.from.clone(),
            timeout: settings.timeout,
        }
    }

    /// Sends `email`; `Ok` once the server accepted it.
    pub async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = build_message(&self.from, email)?;
        // Bounds the whole exchange (connecting included), so a server that
        // stops answering cannot stall the partition forever. A connection
        // abandoned here is dropped, never reused.
        match tokio::time::timeout(self.timeout, self.exchange(&message, !email.to.is_ascii()))
            .await
        {
            Err(_) => Err(SendError::Transient(format!(
                "SMTP: no complete exchange with the server within {:?}",
                self.timeout
            ))),
            Ok(result) => result,
        }
    }

    async fn exchange(
        &self,
        message: &Message,
        non_ascii_recipient: bool,
    ) -> Result<(), SendError> {
        let envelope = message.envelope();
        let from = envelope.from().map(Address::as_ref).unwrap_or("");
        let to: Vec<&str> = envelope.to().iter().map(Address::as_ref).collect();
        let body = message.formatted();
        let (mut conn, checked) = match self.idle_connection().await {
            Some(reused) => reused,
            None => (self.connect().await?, true),
        };
        let mut sent = conn.send(from, &to, &body).await;
        if let Err(smtp::Error::Connection {
            answered: false,
            message,
        }) = &sent
        {
            if !checked {
                // No reply at all on a connection reused unchecked: the
                // server most likely closed it while it was idle.
                tracing::debug!(error = %message, "reused SMTP connection failed; once more on a new one");
                conn = self.connect().await?;
                sent = conn.send(from, &to, &body).await;
            }
        }
        match sent {
            Ok(()) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE {
                    idle.push((conn, Instant::now()));
                }
                Ok(())
            }
            Err(e) => Err(classify(&e, non_ascii_recipient)),
        }
    }

    /// The most recently used idle connection, and whether it was checked:
    /// one idle for longer than [`FRESH`] must answer `NOOP` first.
    async fn idle_connection(&self) -> Option<(Connection, bool)> {
        loop {
            let (mut conn, since) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if since.elapsed() < FRESH {
                return Some((conn, false));
            }
            if conn.is_alive().await {
                return Some((conn, true));
            }
        }
    }

    /// A new connection, greeted and authenticated.
    async fn connect(&self) -> Result<Connection, SendError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                SendError::Transient(format!(
                    "SMTP: cannot connect to {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on the SMTP connection");
        }
        let credentials = self
            .credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()));
        Connection::open(stream, credentials)
            .await
            .map_err(|e| classify(&e, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::email::Kind;
    use crate::handlers::mail::fake::{fake_smtp, Fake, Rcpt};
    use std::sync::atomic::Ordering;
    use tokio::net::TcpListener;

    fn email(to: &str) -> Email {
        Email {
            kind: Kind::OrderConfirmation,
            order_id: "o-1".into(),
            to: to.into(),
            subject: "Your order o-1 is on its way".into(),
            body: "Hello,\n\nyour order o-1 is on its way.\n".into(),
            message_id: "<order-confirmation.o-1@orderflow>".into(),
        }
    }

    fn from() -> Mailbox {
        "orderflow <orders@orderflow.local>".parse().expect("from")
    }

    #[test]
    fn message_carries_message_id_subject_and_addresses() {
        let message = build_message(&from(), &email("ann@example.com")).expect("message");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(
            text.contains("Message-ID: <order-confirmation.o-1@orderflow>"),
            "{text}"
        );
        assert!(
            text.contains("Subject: Your order o-1 is on its way"),
            "{text}"
        );
        assert!(text.contains("To: ann@example.com"), "{text}");
        assert!(
            text.contains("From: orderflow <orders@orderflow.local>"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(text.contains("your order o-1 is on its way"), "{text}");
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 1);
        assert_eq!(envelope.to()[0].to_string(), "ann@example.com");
    }

    #[test]
    fn non_ascii_text_is_sent_7_bit_clean() {
        let mut e = email("ann@example.com");
        e.subject = "Grüße".into();
        e.body = "Hallo Jürgen,\n".into();
        let message = build_message(&from(), &e).expect("message");
        let raw = message.formatted();
        assert!(raw.is_ascii(), "{}", String::from_utf8_lossy(&raw));
    }

    #[test]
    fn invalid_recipient_is_permanent() {
        for bad in ["", "not-an-address", "a@b@c"] {
            assert!(
                matches!(
                    build_message(&from(), &email(bad)),
                    Err(SendError::Permanent(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn five_hundreds_are_permanent_except_authentication() {
        assert!(is_permanent(Some(550), false, false));
        assert!(is_permanent(Some(554), false, false));
        assert!(!is_permanent(Some(535), false, false));
        assert!(!is_permanent(Some(530), false, false));
        assert!(!is_permanent(Some(451), false, false));
        // Connection errors, and client-side refusals of ASCII e-mails.
        assert!(!is_permanent(None, false, false));
        assert!(!is_permanent(None, true, false));
        // A non-ASCII address the server cannot take (no SMTPUTF8).
        assert!(is_permanent(None, true, true));
    }

    fn mailer(port: u16, timeout: Duration) -> Mailer {
        mailer_as(port, timeout, None)
    }

    fn mailer_as(port: u16, timeout: Duration, credentials: Option<(&str, &str)>) -> Mailer {
        Mailer::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            from: from(),
            timeout,
        })
    }

    #[tokio::test]
    async fn the_envelope_is_pipelined_when_the_server_offers_it() {
        let (port, mut mail, pipelined) = Fake::new(Rcpt::Accept).start().await;
        let mailer = mailer(port, Duration::from_secs(5));
        for to in ["ann@example.com", "bob@example.com"] {
            mailer.send(&email(to)).await.expect("sent");
            let data = mail.recv().await.expect("data");
            assert!(data.contains(&format!("To: {to}")), "{data}");
        }
        assert_eq!(
            pipelined.load(Ordering::SeqCst),
            2,
            "MAIL, RCPT and DATA in one write"
        );
    }

    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_its_reply() {
        for helo_only in [false, true] {
            let (port, mut mail, pipelined) = Fake {
                pipelining: false,
                helo_only,
                ..Fake::new(Rcpt::Accept)
            }
            .start()
            .await;
            mailer(port, Duration::from_secs(5))
                .send(&email("ann@example.com"))
                .await
                .expect("sent");
            assert!(mail
                .recv()
                .await
                .expect("data")
                .contains("To: ann@example.com"));
            assert_eq!(pipelined.load(Ordering::SeqCst), 0, "helo_only {helo_only}");
        }
    }

    #[tokio::test]
    async fn a_rejected_recipient_is_reported_when_pipelined_and_when_not() {
        for pipelining in [true, false] {
            let (port, mut mail, _) = Fake {
                pipelining,
                ..Fake::new(Rcpt::Reply("550 5.1.1 no such user\r\n"))
            }
            .start()
            .await;
            let err = mailer(port, Duration::from_secs(5))
                .send(&email("nobody@example.com"))
                .await
                .expect_err("rejected");
            assert!(
                matches!(&err, SendError::Permanent(m) if m.contains("RCPT") && m.contains("550")),
                "pipelining {pipelining}: {err:?}"
            );
            assert!(mail.try_recv().is_err(), "nothing delivered");
        }
    }

    #[tokio::test]
    async fn authenticates_with_plain_or_login() {
        for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
            let (port, mut mail, _) = Fake {
                auth: Some(mechanisms),
                ..Fake::new(Rcpt::Accept)
            }
            .start()
            .await;
            mailer_as(port, Duration::from_secs(5), Some(("u", "p")))
                .send(&email("ann@example.com"))
                .await
                .unwrap_or_else(|e| panic!("{mechanisms}: {e}"));
            assert!(mail.recv().await.is_some());
        }
    }

    #[tokio::test]
    async fn credentials_refused_or_missing_are_transient() {
        let start = |auth| async move {
            Fake {
                auth,
                ..Fake::new(Rcpt::Accept)
            }
            .start()
            .await
            .0
        };
        let cases = [
            // Wrong password: 535.
            (start(Some("PLAIN")).await, Some(("u", "wrong")), "535"),
            (start(Some("LOGIN")).await, Some(("u", "wrong")), "535"),
            // No credentials configured: MAIL gets 530.
            (start(Some("PLAIN")).await, None, "530"),
            // Credentials, but no mechanism in common.
            (
                start(Some("CRAM-MD5")).await,
                Some(("u", "p")),
                "AUTH mechanism",
            ),
        ];
        for (port, credentials, expected) in cases {
            let err = mailer_as(port, Duration::from_secs(5), credentials)
                .send(&email("ann@example.com"))
                .await
                .expect_err("refused");
            assert!(
                matches!(&err, SendError::Transient(m) if m.contains(expected)),
                "{expected}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn accepted_message_arrives_with_its_headers() {
        let (port, mut mail) = fake_smtp(Rcpt::Accept).await;
        mailer(port, Duration::from_secs(5))
            .send(&email("ann@example.com"))
            .await
            .expect("sent");
        let data = mail.recv().await.expect("data");
        assert!(
            data.contains("Message-ID: <order-confirmation.o-1@orderflow>"),
            "{data}"
        );
        assert!(
            data.contains("Subject: Your order o-1 is on its way"),
            "{data}"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_is_replaced_without_failing() {
        let (port, mut mail, _) = Fake {
            close_after_message: true,
            ..Fake::new(Rcpt::Accept)
        }
        .start()
        .await;
        let mailer = mailer(port, Duration::from_secs(5));
        for to in ["ann@example.com", "bob@example.com", "cy@example.com"] {
            mailer.send(&email(to)).await.expect("sent");
            let data = mail.recv().await.expect("data");
            assert!(data.contains(&format!("To: {to}")), "{data}");
        }
    }

    #[tokio::test]
    async fn connections_are_reused() {
        let (port, mut mail) = fake_smtp(Rcpt::Accept).await;
        let mailer = mailer(port, Duration::from_secs(5));
        for to in ["ann@example.com", "bob@example.com"] {
            mailer.send(&email(to)).await.expect("sent");
            assert!(mail.recv().await.is_some());
        }
        assert_eq!(
            mailer.idle.lock().expect("idle").len(),
            1,
            "one connection for both"
        );
    }

    #[tokio::test]
    async fn rejected_recipient_is_permanent() {
        let (port, _mail) = fake_smtp(Rcpt::Reply("550 5.1.1 no such user\r\n")).await;
        let err = mailer(port, Duration::from_secs(5))
            .send(&email("nobody@example.com"))
            .await
            .expect_err("rejected");
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("550")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn non_ascii_recipient_without_smtputf8_is_permanent() {
        let (port, _mail) = fake_smtp(Rcpt::Accept).await;
        let err = mailer(port, Duration::from_secs(5))
            .send(&email("jürgen@example.com"))
            .await
            .expect_err("refused");
        assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    }

    #[tokio::test]
    async fn temporary_rejection_is_transient() {
        let (port, _mail) = fake_smtp(Rcpt::Reply("451 4.3.0 try again later\r\n")).await;
        let err = mailer(port, Duration::from_secs(5))
            .send(&email("ann@example.com"))
            .await
            .expect_err("deferred");
        assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_server_is_transient() {
        // Bind and drop to get a port nobody listens on.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let err = mailer(port, Duration::from_secs(5))
            .send(&email("ann@example.com"))
            .await
            .expect_err("refused");
        assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out_as_transient() {
        let (port, _mail) = fake_smtp(Rcpt::Hang).await;
        let err = mailer(port, Duration::from_millis(300))
            .send(&email("ann@example.com"))
            .await
            .expect_err("timed out");
        assert!(
            matches!(&err, SendError::Transient(m) if m.contains("within")),
            "{err:?}"
        );
    }
}
