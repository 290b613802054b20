//! CPython's authkey challenge (`multiprocessing.connection`), as pieces: making a challenge,
//! checking an answer, answering a challenge. The blocking [`deliver_challenge`] and
//! [`answer_challenge`] run them over a [`Connection`] (the client side); the listener runs the
//! same pieces without blocking (`handshake`).
//!
//! A challenge is `#CHALLENGE#` followed by `{sha256}` and 40 random bytes; the answer is
//! `{sha256}` and the HMAC-SHA256 of the whole challenge (Python 3.12's protocol). For CPython ≤
//! 3.11 peers, a 16-byte answer (legacy HMAC-MD5, as those versions send) is accepted and their
//! 20-byte legacy challenges are answered in kind, as CPython 3.12 itself does.

use hmac::{Hmac, Mac};

use crate::{Connection, Error};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
pub(crate) const WELCOME: &[u8] = b"#WELCOME#";
pub(crate) const FAILURE: &[u8] = b"#FAILURE#";
const NONCE_LEN: usize = 40;
/// The longest authentication message either side accepts.
pub(crate) const MAX_AUTH_MESSAGE: u64 = 256;

pub(crate) fn auth_err(msg: impl Into<String>) -> Error {
    Error::Authentication(msg.into())
}

/// Split `{digest}payload`; legacy (unprefixed 16- or 20-byte) messages give `""`.
fn digest_and_payload(msg: &[u8]) -> Result<(&str, &[u8]), Error> {
    if msg.len() == 16 || msg.len() == 20 {
        return Ok(("", msg));
    }
    if msg.first() == Some(&b'{') {
        if let Some(end) = msg.iter().take(22).position(|&b| b == b'}') {
            let name =
                std::str::from_utf8(&msg[1..end]).map_err(|_| auth_err("bad digest name"))?;
            if matches!(name, "md5" | "sha256" | "sha384") {
                return Ok((name, &msg[end + 1..]));
            }
        }
    }
    Err(auth_err(
        "unsupported message length, missing digest prefix, or unsupported digest",
    ))
}

fn hmac_digest(name: &str, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, Error> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    match name {
        "md5" => Ok(run::<Hmac<md5::Md5>>(key, msg)),
        "sha256" => Ok(run::<Hmac<sha2::Sha256>>(key, msg)),
        "sha384" => Ok(run::<Hmac<sha2::Sha384>>(key, msg)),
        other => Err(auth_err(format!("digest {other:?} unsupported"))),
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh challenge: the payload to send, and the message whose HMAC the answer must carry.
pub(crate) fn new_challenge() -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(std::io::Error::from)?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&nonce);
    let mut out = CHALLENGE.to_vec();
    out.extend_from_slice(&message);
    Ok((out, message))
}

/// Check the peer's answer to our challenge `message`.
pub(crate) fn verify_answer(
    message: &[u8],
    response: &[u8],
    key: &[u8],
    modern_only: bool,
) -> Result<(), Error> {
    let (name, mac) = digest_and_payload(response)?;
    let name = if name.is_empty() { "md5" } else { name };
    if modern_only && name == "md5" {
        return Err(auth_err("legacy HMAC-MD5 answer refused"));
    }
    let expected = hmac_digest(name, key, message)?;
    if !ct_eq(&expected, mac) {
        return Err(auth_err("digest received was wrong"));
    }
    Ok(())
}

/// Our answer to the peer's challenge (`payload` is the whole message, `#CHALLENGE#` included).
pub(crate) fn respond(payload: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    let Some(message) = payload.strip_prefix(CHALLENGE) else {
        return Err(auth_err("protocol error: expected a challenge"));
    };
    if message.len() < 20 {
        return Err(auth_err(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    let (name, _) = digest_and_payload(message)?;
    if name.is_empty() {
        return hmac_digest("md5", key, message);
    }
    let mut r = format!("{{{name}}}").into_bytes();
    r.extend_from_slice(&hmac_digest(name, key, message)?);
    Ok(r)
}

/// Check the peer's verdict on our answer.
pub(crate) fn check_verdict(verdict: &[u8]) -> Result<(), Error> {
    if verdict != WELCOME {
        return Err(auth_err("digest sent was rejected"));
    }
    Ok(())
}

/// Challenge the peer over `conn` and tell it the verdict (blocking).
pub(crate) fn deliver_challenge(
    conn: &Connection,
    key: &[u8],
    modern_only: bool,
) -> Result<(), Error> {
    let (challenge, message) = new_challenge()?;
    conn.send_bytes(&challenge)?;
    let response = conn.recv_bytes_max(MAX_AUTH_MESSAGE)?;
    match verify_answer(&message, &response, key, modern_only) {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(e) => {
            let _ = conn.send_bytes(FAILURE);
            Err(e)
        }
    }
}

/// Answer the peer's challenge over `conn` and read its verdict (blocking).
pub(crate) fn answer_challenge(conn: &Connection, key: &[u8]) -> Result<(), Error> {
    let challenge = conn.recv_bytes_max(MAX_AUTH_MESSAGE)?;
    conn.send_bytes(&respond(&challenge, key)?)?;
    check_verdict(&conn.recv_bytes_max(MAX_AUTH_MESSAGE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_prefixed_digests() {
        assert_eq!(digest_and_payload(&[0; 16]).unwrap().0, "");
        let (n, p) =
            digest_and_payload(b"{sha256}0123456789012345678901234567890123456789").unwrap();
        assert_eq!((n, p.len()), ("sha256", 40));
        assert!(digest_and_payload(b"{sha1}01234567890123456789").is_err());
        assert!(digest_and_payload(b"garbage garbage garbage").is_err());
    }

    #[test]
    fn hmac_matches_known_vector() {
        // RFC 4231 test case 2
        let mac = hmac_digest("sha256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(mac[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }

    #[test]
    fn mutual_auth_in_process() {
        let (a, b) = crate::pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            answer_challenge(&b, b"k")?;
            deliver_challenge(&b, b"k", false)
        });
        deliver_challenge(&a, b"k", true).unwrap();
        answer_challenge(&a, b"k").unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn wrong_key_fails_both_sides() {
        let (a, b) = crate::pipe(true).unwrap();
        let t = std::thread::spawn(move || answer_challenge(&b, b"wrong"));
        assert!(matches!(
            deliver_challenge(&a, b"right", false),
            Err(Error::Authentication(_))
        ));
        assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    }
}
